"""Scheduler load while a session's job is pending.

The partition is filled with the other test user's jobs (one exclusive ``sleep`` job per
node, submitted through login -> gateway as that user, as the integration tests do), so
that ``nodetunnel jupyter`` waits with its job PENDING (reason Resources). For
``pending_s`` seconds the bench counts the scheduler commands nodetunnel runs (its
``--debug`` output) and slurmctld's RPCs from the user (``sdiag``), in the first minute and
after it; then Ctrl-C (which cancels the job) and the filler jobs are cancelled.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nodetunnel.proc import NotReady, run, wait_until
from nodetunnel.quoting import remote_command
from nodetunnel.sandbox.cluster import as_user_argv

from .common import OTHER_USER, SCHEDULER_COMMANDS, USER, BenchError
from .parsing import parse_commands, scheduler_counts

if TYPE_CHECKING:
    from .bench import Bench

FIRST_MINUTE_S = 60.0


def measure(bench: Bench) -> dict[str, Any]:
    seconds = bench.settings.pending_s
    bench.say(f"pending: the partition filled by {OTHER_USER}; jupyter pends for {seconds:g} s")
    fillers = _fill(bench)
    try:
        cli = bench.start(bench.jupyter_argv(), "nodetunnel jupyter (pending)")
        job = wait_until(lambda: _pending_job(bench), timeout_s=60, what="a pending job of "
                         f"{USER}", interval_s=0.1, max_interval_s=0.5)  # fmt: skip
        bench.track_job(job)
        begin = time.monotonic()
        rpcs = [bench.user_rpcs()]
        marks = [begin]
        split_at = begin + min(FIRST_MINUTE_S, seconds / 2)
        end = begin + seconds
        while (now := time.monotonic()) < end:
            if not cli.running():
                raise BenchError(
                    f"nodetunnel exited while its job was pending: {cli.stderr_tail()}"
                )
            if len(marks) == 1 and now >= split_at:
                rpcs.append(bench.user_rpcs())
                marks.append(now)
            time.sleep(min(0.2, end - now))
        rpcs.append(bench.user_rpcs())
        marks.append(time.monotonic())
        state = _state(bench, job)
        if (code := cli.interrupt()) != 130:
            raise BenchError(f"nodetunnel exited with {code} on Ctrl-C while pending")
        bench.wait_job_gone(job)
    finally:
        _cancel(bench, fillers)
    commands = [c for c in parse_commands(cli.stderr) if c.remote in SCHEDULER_COMMANDS]
    windows = {}
    for i, name in enumerate(("first_minute", "after_first_minute")):
        lo, hi = marks[i], marks[i + 1]
        inside = [c for c in commands if lo <= c.at < hi]
        counts = scheduler_counts(inside)
        r0, r1 = rpcs[i], rpcs[i + 1]
        windows[name] = {
            "duration_s": round(hi - lo, 1),
            **counts,
            "per_minute": round(counts["total"] * 60 / (hi - lo), 2),
            "slurmctld_rpcs": None if r0 is None or r1 is None else r1 - r0,
            "rpcs_per_minute": None
            if r0 is None or r1 is None
            else round((r1 - r0) * 60 / (hi - lo), 2),
        }
    return {"state_seen": state, "fillers": len(fillers), **windows}


def _fill(bench: Bench) -> list[str]:
    """One exclusive job per node as the other user, all running; their ids."""
    home = str(bench.sb.paths.user_home(OTHER_USER))
    jobs: list[str] = []
    bench.on_clean_up(lambda: _cancel(bench, jobs))
    for _ in bench.sb.topo.nodes:
        argv = ["ssh", "-F", str(bench.sb.paths.ssh_config), "-o", "BatchMode=yes", "-J", "login",
                "gateway", "--", remote_command(["sbatch", "--parsable", "--exclusive", "-N1",
                "-D", home, "-o", "/dev/null", "-J", "filler", "--wrap", "sleep 900"])]  # fmt: skip
        done = run(as_user_argv(OTHER_USER, argv), timeout_s=60, check=False, cwd="/")
        if done.returncode != 0:
            raise BenchError(f"sbatch as {OTHER_USER} failed: {done.stderr.strip()[-300:]}")
        jobs.append(done.stdout.strip().split(";")[0])

    def all_running() -> bool:
        out = bench.sb.run_in("gateway", ["squeue", "-h", "-u", OTHER_USER, "-o", "%T"])
        if out.split().count("RUNNING") >= len(jobs):
            return True
        raise NotReady(f"{OTHER_USER}'s jobs: {out.split()}")

    wait_until(all_running, timeout_s=60, what="the filler jobs to run", interval_s=0.1,
               max_interval_s=0.5)  # fmt: skip
    return jobs


def _pending_job(bench: Bench) -> str:
    out = bench.sb.run_in("gateway", ["squeue", "-h", "-u", USER, "-o", "%i %T"]).split()
    if len(out) == 2 and out[1] == "PENDING":
        return out[0]
    raise NotReady(f"{USER}'s jobs: {out}")


def _state(bench: Bench, job: str) -> str:
    return bench.sb.run_in("gateway", ["squeue", "-h", "-j", job, "-o", "%T:%r"]).strip()


def _cancel(bench: Bench, jobs: list[str]) -> None:
    left = [
        j for j in jobs if j in bench.sb.run_in("gateway", ["squeue", "-h", "-o", "%i"]).split()
    ]
    if left:
        bench.sb.run_in("gateway", ["scancel", *left])
        wait_until(
            lambda: not set(left) & set(bench.sb.run_in("gateway", ["squeue", "-h", "-o", "%i"]).split()),
            timeout_s=60, what="the filler jobs to leave the queue", interval_s=0.1,
        )  # fmt: skip
