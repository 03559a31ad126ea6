"""The SLURM backend against the mini-cluster's real sbatch/squeue/scancel, as user ntalice.

The runner runs each argv on the gateway (the submit host) as ntalice, the way
the SSH runner will on a real login node: no shell, the script on stdin.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from nodetunnel import proc
from nodetunnel.errors import SchedulerError
from nodetunnel.proc import Completed, NotReady, wait_until
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv
from nodetunnel.scheduler import JobRequest, JobState, JobStatus, Slurm

from .helpers import ALICE

# Every job asks for little memory so several fit on a node at once (the nodes
# would otherwise hand a job all their memory).
SMALL = {"mem": "100M", "time": "10:00"}


class AliceRunner:
    """A CommandRunner: argv on the gateway as ntalice, every call recorded."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.calls: list[list[str]] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float,
        check: bool = True,
    ) -> Completed:
        self.calls.append(list(argv))
        wrapped = as_user_argv(ALICE, list(argv))
        return proc.run(
            self.sandbox.host_argv("gateway", wrapped),
            input=input,
            timeout_s=timeout_s,
            check=check,
        )


@pytest.fixture
def runner(sandbox: Sandbox) -> AliceRunner:
    return AliceRunner(sandbox)


@pytest.fixture
def slurm(runner: AliceRunner) -> Slurm:
    return Slurm(runner, timeout_s=30)


@pytest.fixture
def home(sandbox: Sandbox) -> str:
    return str(sandbox.paths.user_home(ALICE))


def _wait_finished(slurm: Slurm, job_ids: list[str], timeout_s: float = 30) -> dict[str, JobStatus]:
    def probe() -> dict[str, JobStatus] | None:
        got = slurm.status(job_ids)
        busy = [f"{j} {s.describe()}" for j, s in got.items() if not s.state.finished]
        if busy:
            raise NotReady(", ".join(busy))
        return got

    return wait_until(probe, timeout_s=timeout_s, what=f"jobs {job_ids} to end", interval_s=0.2)


def _squeue_field(runner: AliceRunner, job_id: str, field: str) -> str:
    out = runner(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", f"--format={field}"],
        timeout_s=30,
    ).stdout
    return out.removesuffix("\n")


def test_gpu_job_runs_reports_its_node_and_cancel_ends_it(
    slurm: Slurm, runner: AliceRunner, home: str
) -> None:
    req = JobRequest(
        partition="gpu",
        gres="gpu:1",
        workdir=home,
        job_name="nt-backend-gpu",
        output=f"{home}/nt-backend-%j.log",
        **SMALL,
    )
    job = slurm.submit_job(req, 'echo "gpu=$CUDA_VISIBLE_DEVICES host=$(hostname)"\nsleep 300\n')
    assert job.isdigit()

    st = slurm.wait_started(job, timeout_s=30)
    assert st.state is JobState.RUNNING
    assert st.node in ("node1", "node2")
    assert st.nodes == (st.node,)
    assert st.nodelist == st.node
    assert st.user == ALICE
    assert st.reason in (None, "Prolog")  # RUNNING while PrologFlags=contain sets the job up
    assert st.time_left_s is not None
    assert 0 < st.time_left_s <= 600
    assert st.start_estimate is not None  # the actual start time, for a running job
    assert slurm.start_estimate(job) is None  # nothing to estimate: it runs

    log = Path(home) / f"nt-backend-{job}.log"
    wait_until(
        lambda: log.exists() and "gpu=" in log.read_text(),
        timeout_s=20,
        what=f"{log} to show the job's first line",
    )
    assert log.read_text().strip() == f"gpu=0 host={st.node}"

    slurm.cancel(job)
    done = _wait_finished(slurm, [job])
    assert done[job].state in (JobState.CANCELLED, JobState.ENDED)
    slurm.cancel(job)  # cancelling an ended job is not an error
    log.unlink()


def test_status_asks_once_for_many_jobs_and_unknown_ones_are_ended(
    slurm: Slurm, runner: AliceRunner, home: str
) -> None:
    req = JobRequest(workdir=home, output="/dev/null", job_name="nt-backend-many", **SMALL)
    jobs = [slurm.submit_job(req, "sleep 300\n") for _ in range(3)]
    squeues = [c for c in runner.calls if c[0] == "squeue"]
    before = len(runner.calls)
    got = slurm.status([*jobs, "999999"])
    assert len([c for c in runner.calls if c[0] == "squeue"]) == len(squeues) + 1
    # The one it no longer knows is asked of accounting, once (the mini-cluster has none).
    assert [c[0] for c in runner.calls[before:]] == ["squeue", "sacct"]
    assert list(got) == [*jobs, "999999"]
    assert all(got[j].state.active for j in jobs), got
    assert all(got[j].user == ALICE for j in jobs)
    assert got["999999"].state is JobState.ENDED
    # squeue fails outright when it knows none of the ids: still just ENDED.
    assert slurm.status(["999998"])["999998"].state is JobState.ENDED
    for job in jobs:
        slurm.cancel(job)
    assert all(s.state.finished for s in _wait_finished(slurm, jobs).values())
    slurm.cancel("999999")  # unknown to SLURM: fine


def test_unknown_partition_is_a_clear_error(slurm: Slurm, home: str) -> None:
    with pytest.raises(SchedulerError) as info:
        slurm.submit_job(JobRequest(partition="nope", workdir=home, **SMALL), "true\n")
    assert info.value.message.startswith("partition 'nope' does not exist on this cluster")
    assert info.value.hint == "choose one of: cpu, gpu ('sinfo -s' lists them with their nodes)"
    assert info.value.exit_code == 7


def test_impossible_gpu_count_is_a_clear_error(slurm: Slurm, home: str) -> None:
    with pytest.raises(SchedulerError) as info:
        slurm.submit_job(JobRequest(partition="gpu", gres="gpu:9", workdir=home, **SMALL), "true\n")
    assert info.value.message.startswith("no node in partition 'gpu' has ")
    assert "gres gpu:9" in info.value.message
    assert "Requested node configuration is not available" in info.value.message
    assert "sinfo" in (info.value.hint or "")


def test_partitions(slurm: Slurm) -> None:
    assert slurm.partitions() == ["cpu", "gpu"]


HOSTILE_NAMES = [
    "a'; touch CANARY; echo '",
    "$(touch CANARY)",
    "`touch CANARY`",
    'x"; touch CANARY #',
    "back\\slash \\' and \\\\ # not a comment",
    "héllo wörld ✓ 🚀 | pipe",
    "--partition=evil",
]


def test_hostile_values_reach_slurm_literally_and_run_nothing(
    slurm: Slurm, runner: AliceRunner, home: str
) -> None:
    canary = f"{home}/canary"
    workdir = f"{home}/work dir 'q' $(touch {canary})"
    runner(["mkdir", "-p", "--", workdir], timeout_s=10)
    jobs: dict[str, str] = {}
    for i, raw in enumerate(HOSTILE_NAMES):
        name = raw.replace("CANARY", canary)
        req = JobRequest(
            job_name=name,
            workdir=workdir,
            # no '/' in the output's file name part: touch a relative "canary" there
            output=f"{workdir}/out {i} `touch canary` $(touch canary) %j.log",
            extra_args=(f"--comment={name}",),
            **SMALL,
        )
        jobs[slurm.submit_job(req, 'echo "ran in $(pwd)"\n')] = name

    for job, name in jobs.items():
        assert _squeue_field(runner, job, "%j") == name
        assert _squeue_field(runner, job, "%k") == name
    finished = _wait_finished(slurm, list(jobs))
    assert {s.state for s in finished.values()} <= {JobState.COMPLETED, JobState.ENDED}

    for i, job in enumerate(jobs):
        log = Path(workdir) / f"out {i} `touch canary` $(touch canary) {job}.log"
        assert log.read_text() == f"ran in {workdir}\n"
    assert not Path(canary).exists()
    assert not (Path(workdir) / "canary").exists()
    runner(["rm", "-rf", "--", workdir], timeout_s=10)
