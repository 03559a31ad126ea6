"""The shared home as sites have it: start-up and failure reports with and without a cache.

Real homes are NFS (or GPFS, Lustre), and the login host caches what it looked
up: a name looked up before a node wrote it stays missing there for up to the
cache time (NFS's ``acdirmin``, 30 s by default). This part of the bench runs
the same start twice over, interleaved, once with every host seeing the home
directly and once with the login and gateway hosts seeing it through a 30 s
cache (``nodetunnel sandbox cache-home``), and reports the ratio.

It also times how soon a job that fails before its app is ready is reported:
the job's ``--setup`` notes the wall time of its last command in the home, then
fails; the figure is from then to nodetunnel's exit with the error (it includes
SLURM noticing the end, so it bounds the delay after SLURM knows from above).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodetunnel.proc import wait_until
from nodetunnel.sandbox.homecache import DEFAULT_HOSTS

if TYPE_CHECKING:
    from .bench import Bench

CACHE_S = 30.0
VIEWS = ("direct", "cached")
FAIL_MARK = "nt-bench-failed-at"


def measure(bench: Bench, runs: int, cache_s: float = CACHE_S) -> dict[str, Any]:
    """``runs`` starts and failures per view, alternating which view goes first."""
    from .common import summary

    ready: dict[str, list[float]] = {v: [] for v in VIEWS}
    failed: dict[str, list[float]] = {v: [] for v in VIEWS}
    for i in range(runs):
        for view in VIEWS if i % 2 == 0 else VIEWS[::-1]:
            bench.say(f"shared home {view} {i + 1}/{runs}: start, Ctrl-C; a failing start")
            if view == "cached":
                bench.sb.cache_home(cache_s, DEFAULT_HOSTS)
            try:
                ready[view].append(_start(bench))
                failed[view].append(_failure(bench))
            finally:
                if view == "cached":
                    bench.sb.uncache_home()
    direct, cached = (statistics.median(ready[v]) for v in VIEWS)
    return {
        "cache_s": cache_s,
        "cached_hosts": list(DEFAULT_HOSTS),
        "ready_s": {v: summary(ready[v]) for v in VIEWS},
        "ratio": round(cached / direct, 3),
        "failure_reported_s": {v: summary(failed[v]) for v in VIEWS},
    }


def _start(bench: Bench) -> float:
    cli = bench.start(bench.jupyter_argv(), "nodetunnel jupyter (shared home)")
    info, ok_at = bench.ready(cli)
    code = cli.interrupt()
    if code != 130:
        from .common import BenchError

        raise BenchError(f"nodetunnel jupyter exited with {code} on Ctrl-C: {cli.stderr_tail()}")
    bench.wait_job_gone(str(info["job_id"]))
    return ok_at - cli.started


def _failure(bench: Bench) -> float:
    """Seconds from the job's last command to nodetunnel's exit with the error."""
    from .common import BenchError

    mark: Path = bench.home / FAIL_MARK
    mark.unlink(missing_ok=True)
    setup = f'sleep 1; date +%s.%N > "$HOME/{FAIL_MARK}"; exit 3'
    cli = bench.start(bench.jupyter_argv("--setup", setup), "nodetunnel jupyter (failing)")
    code = cli.wait_exit(timeout_s=120)
    exited = time.time()
    try:
        failed_at = float(mark.read_text().strip())
    except (OSError, ValueError) as exc:
        raise BenchError(f"the failing job left no time mark ({exc}): {cli.stderr_tail()}") from exc
    finally:
        mark.unlink(missing_ok=True)
    said = "".join(line for _, line in cli.stderr)
    if code in (0, 130) or "failed before the app was ready" not in said:
        raise BenchError(f"the failing start was not reported as failed: {cli.stderr_tail()}")
    # It is reported while SLURM still cleans up after the job: the next step waits for that.
    wait_until(
        lambda: not bench.user_jobs(), timeout_s=60, what="the failed job to leave the queue"
    )
    return exited - failed_at


def render(section: dict[str, Any]) -> list[str]:
    """The table's lines for this part."""
    r, f = section["ready_s"], section["failure_reported_s"]
    hosts = " and ".join(section["cached_hosts"])
    return [
        "",
        f"{'shared home (cache on ' + hosts + ')':44}{'min':>8}{'median':>8}{'max':>8}{'n':>4}",
        *(
            f"{'  ' + label:44}{v['min']:>8.2f}{v['median']:>8.2f}{v['max']:>8.2f}{v['n']:>4}"
            for label, v in (
                ("jupyter, home seen directly (s)", r["direct"]),
                (f"jupyter, home cached {section['cache_s']:g} s (s)", r["cached"]),
                ("failure reported, direct (s)", f["direct"]),
                ("failure reported, cached (s)", f["cached"]),
            )
        ),
        f"  cached / direct (medians)              {section['ratio']:>8.2f}",
    ]
