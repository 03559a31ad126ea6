"""A pending job's place in the queue: parsing squeue, the Slurm backend, FakeSlurm."""

from __future__ import annotations

import pytest

from nodetunnel.errors import SchedulerError, UsageError
from nodetunnel.scheduler import JobRequest, JobState, PendingInfo, Slurm
from nodetunnel.scheduler.base import Scheduler
from nodetunnel.scheduler.slurm import PENDING_FORMAT, parse_pending, parse_start
from nodetunnel.scheduler.testing import FakeRunner, FakeSlurm

QUEUE = """\
7|gpu|2026-12-02T14:05:00|Priority
9|gpu|N/A|Resources
12|gpu|2026-12-02T15:00:00|Priority
"""


def test_parse_pending_counts_the_partition_in_squeue_order() -> None:
    assert parse_pending(QUEUE, "9") == PendingInfo("Resources", None, 2, 3, "gpu")
    assert parse_pending(QUEUE, "12") == PendingInfo("Priority", "2026-12-02T15:00:00", 3, 3, "gpu")
    assert parse_pending(QUEUE, "7") is not None
    assert parse_pending(QUEUE, "7").position == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("stdout", ["", "\n\n", "   \n", QUEUE.replace("12|", "13|")])
def test_parse_pending_without_the_job_is_none(stdout: str) -> None:
    assert parse_pending(stdout, "12") is None


def test_parse_pending_only_counts_jobs_sharing_a_partition() -> None:
    out = "1|cpu|N/A|Priority\n2|gpu|N/A|Priority\n3|cpu,gpu|N/A|Resources\n4|gpu|N/A|Priority\n"
    assert parse_pending(out, "4") == PendingInfo("Priority", None, 3, 3, "gpu")
    # A job pending in two partitions waits behind the jobs of both.
    assert parse_pending(out, "3") == PendingInfo("Resources", None, 3, 4, "cpu,gpu")
    assert parse_pending(out, "1") == PendingInfo("Priority", None, 1, 2, "cpu")


def test_parse_pending_with_many_jobs() -> None:
    out = "".join(f"{n}|gpu|N/A|Priority\n" for n in range(100_000, 105_000))
    info = parse_pending(out, "104999")
    assert info is not None
    assert (info.position, info.pending_in_partition) == (5000, 5000)


def test_parse_pending_skips_odd_lines_and_keeps_a_free_text_reason_whole() -> None:
    out = (
        "squeue: error: something\n"  # not a job line
        "JOBID|PARTITION|START_TIME|REASON\n"  # a header, despite --noheader
        "5_[3-9%2]|gpu|N/A|JobArrayTaskLimit\n"  # an array's pending tasks: one line
        "5_1|gpu|N/A|Priority\n"
        "6||N/A|Priority\n"  # no partition
        "x7|gpu|N/A|Priority\n"
        "8|gpu|N/A\n"  # a field short
        "8|gpu|N/A|Priority\n"
        "8|gpu|N/A|Priority\n"  # twice: counted once
        "10|gpu|Unknown|AssocGrpGRES|with|bars (admin note)\n"
    )
    assert parse_pending(out, "10") == PendingInfo(
        "AssocGrpGRES|with|bars (admin note)", None, 4, 4, "gpu"
    )
    assert parse_pending(out, "6") is None


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("2026-12-02T14:05:00", "2026-12-02T14:05:00"),
        (" 2026-12-02T14:05:00\n", "2026-12-02T14:05:00"),
        ("N/A", None),
        ("Unknown", None),
        ("", None),
        ("None", None),
        ("2026-12-02 14:05", None),
        ("tomorrow", None),
    ],
)
def test_parse_start(text: str, start: str | None) -> None:
    assert parse_start(text) == start


def test_parse_pending_reason_none_is_none() -> None:
    assert parse_pending("3|cpu|N/A|None\n", "3") == PendingInfo(None, None, 1, 1, "cpu")


def test_describe() -> None:
    assert PendingInfo("Resources", None, 3, 7, "gpu").describe() == "position 3 of 7 in gpu"
    assert (
        PendingInfo("Priority", "2026-12-02T14:05:00", 1, 1, None).describe()
        == "position 1 of 1, expected to start 2026-12-02T14:05:00"
    )
    assert PendingInfo("Priority", None, None, None).describe() == ""


def test_pending_info_is_one_squeue_of_the_partition_by_priority() -> None:
    runner = FakeRunner()
    runner.reply("sbatch", "42\n")
    runner.reply("squeue", "40|gpu|N/A|Priority\n42|gpu|2026-12-02T14:05:00|Resources\n")
    slurm = Slurm(runner)
    job_id = slurm.submit("#!/bin/sh\n", request=JobRequest(partition="gpu"))
    info = slurm.pending_info(job_id)
    assert info == PendingInfo("Resources", "2026-12-02T14:05:00", 2, 2, "gpu")
    (call,) = runner.calls_to("squeue")
    assert call.argv == ["squeue", "--noheader", "--start", "--states=PD", "--sort=-p,i",
                         f"--format={PENDING_FORMAT}", "--partition=gpu"]  # fmt: skip


def test_pending_info_learns_the_default_partition_from_the_first_answer() -> None:
    runner = FakeRunner()
    for _ in range(2):
        runner.reply("squeue", "1|cpu|N/A|Priority\n2|gpu|N/A|Priority\n3|gpu|N/A|Priority\n")
    slurm = Slurm(runner)
    assert slurm.pending_info("3") == PendingInfo("Priority", None, 2, 2, "gpu")
    assert slurm.pending_info("3") is not None
    first, second = runner.calls_to("squeue")
    assert not any(a.startswith("--partition") for a in first.argv)
    assert second.argv[-1] == "--partition=gpu"


def test_pending_info_of_a_job_no_longer_pending_is_none() -> None:
    runner = FakeRunner()
    runner.reply("squeue", "")
    assert Slurm(runner).pending_info("5") is None


def test_pending_info_failures_name_the_job() -> None:
    runner = FakeRunner()
    runner.reply("squeue", stderr="squeue: error: Invalid partition name specified\n", returncode=1)
    with pytest.raises(SchedulerError, match="could not read the queue of job 5"):
        Slurm(runner).pending_info("5")
    with pytest.raises(UsageError):
        Slurm(runner).pending_info("5; rm -rf ~")


def test_fake_slurm_queues_by_priority_then_age() -> None:
    fake = FakeSlurm()
    slurm = Slurm(fake)
    blocker = fake.queue_job(partition="gpu")
    fake.start(blocker)
    ahead = [fake.queue_job(partition="gpu") for _ in range(2)]
    fake.queue_job(partition="cpu")  # another partition: not counted
    mine = slurm.submit_job(JobRequest(partition="gpu"), "sleep 1\n")
    later = fake.queue_job(partition="gpu")
    assert slurm.pending_info(mine) == PendingInfo("Priority", None, 3, 4, "gpu")
    fake.jobs[later].priority = 10**9  # an urgent job jumps the queue
    fake.jobs[mine].start = "2026-12-02T14:05:00"
    fake.jobs[mine].reason = "Resources"
    assert slurm.pending_info(mine) == PendingInfo("Resources", "2026-12-02T14:05:00", 4, 4, "gpu")
    for job_id in ahead:
        fake.finish(job_id, JobState.CANCELLED)
    assert slurm.pending_info(mine) == PendingInfo("Resources", "2026-12-02T14:05:00", 2, 2, "gpu")
    fake.start(mine)
    assert slurm.pending_info(mine) is None
    assert slurm.pending_info(blocker) is None


class _NoQueue(Scheduler):
    """A backend with only the basic queries: the default pending_info."""

    name = "noqueue"

    def __init__(self, fake: FakeSlurm) -> None:
        super().__init__(fake)
        self.slurm = Slurm(fake)

    def job_script(self, request, body):  # type: ignore[no-untyped-def]
        return self.slurm.job_script(request, body)

    def submit(self, script, *, request=None):  # type: ignore[no-untyped-def]
        return self.slurm.submit(script, request=request)

    def status(self, job_ids):  # type: ignore[no-untyped-def]
        return self.slurm.status(job_ids)

    def cancel_jobs(self, job_ids):  # type: ignore[no-untyped-def]
        self.slurm.cancel_jobs(job_ids)

    def cancel_named(self, job_name):  # type: ignore[no-untyped-def]
        self.slurm.cancel_named(job_name)

    def named_jobs(self, name_pattern):  # type: ignore[no-untyped-def]
        return self.slurm.named_jobs(name_pattern)

    def start_estimate(self, job_id):  # type: ignore[no-untyped-def]
        return self.slurm.start_estimate(job_id)

    def cancel_command(self, job_ids):  # type: ignore[no-untyped-def]
        return self.slurm.cancel_command(job_ids)

    def leftover_hint(self):  # type: ignore[no-untyped-def]
        return self.slurm.leftover_hint()


def test_the_default_pending_info_has_reason_and_estimate_but_no_position() -> None:
    fake = FakeSlurm()
    backend = _NoQueue(fake)
    job_id = backend.submit_job(JobRequest(), "sleep 1\n")
    fake.jobs[job_id].start = "2026-12-02T14:05:00"
    assert backend.pending_info(job_id) == PendingInfo(
        "Priority", "2026-12-02T14:05:00", None, None
    )
    fake.start(job_id)
    assert backend.pending_info(job_id) is None


def test_pending_infos_is_one_squeue_for_every_job() -> None:
    fake = FakeSlurm()
    slurm = Slurm(fake)
    other = fake.queue_job(partition="gpu")  # another user's, ahead in the queue
    gpu = [slurm.submit_job(JobRequest(partition="gpu"), "sleep 1\n") for _ in range(2)]
    cpu = slurm.submit_job(JobRequest(partition="cpu"), "sleep 1\n")
    running = slurm.submit_job(JobRequest(partition="gpu"), "sleep 1\n")
    fake.start(running)
    before = fake.count("squeue")
    infos = slurm.pending_infos([*gpu, cpu, running, gpu[0]])
    assert fake.count("squeue") == before + 1
    assert infos == {
        gpu[0]: PendingInfo("Priority", None, 2, 3, "gpu"),
        gpu[1]: PendingInfo("Priority", None, 3, 3, "gpu"),
        cpu: PendingInfo("Priority", None, 1, 1, "cpu"),
    }  # the running job is left out
    assert other not in infos
    assert slurm.pending_infos([]) == {}
    assert fake.count("squeue") == before + 1  # nothing to ask: no query


def test_pending_infos_asks_only_the_partitions_of_the_jobs_once_known() -> None:
    runner = FakeRunner()
    runner.reply("squeue", "1|cpu|N/A|Priority\n2|gpu|N/A|Resources\n3|gpu|N/A|Priority\n")
    runner.reply("squeue", "1|cpu|N/A|Priority\n3|gpu|N/A|Priority\n")
    runner.reply("squeue", "")
    slurm = Slurm(runner)
    assert slurm.pending_infos(["1", "3"]) == {
        "1": PendingInfo("Priority", None, 1, 1, "cpu"),
        "3": PendingInfo("Priority", None, 2, 2, "gpu"),
    }
    assert slurm.pending_infos(["1", "3"])["3"].position == 1
    assert slurm.pending_infos(["3", "9"]) == {}  # 9's partition is not known: all are asked
    first, second, third = runner.calls_to("squeue")
    assert not any(a.startswith("--partition") for a in first.argv)
    assert second.argv[-1] == "--partition=cpu,gpu"
    assert not any(a.startswith("--partition") for a in third.argv)


def test_the_default_pending_infos_asks_for_each_job() -> None:
    fake = FakeSlurm()
    backend = _NoQueue(fake)
    waiting = backend.submit_job(JobRequest(), "sleep 1\n")
    started = backend.submit_job(JobRequest(), "sleep 1\n")
    fake.start(started)
    assert backend.pending_infos([waiting, started]) == {
        waiting: PendingInfo("Priority", None, None, None)
    }
