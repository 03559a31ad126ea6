"""Footprint on the laptop: the CLI's start, the keeper's idle cost, many sessions' memory.

- ``nodetunnel --help`` wall time against ``python -c pass`` (the same interpreter, as the
  test user), medians of ``repetitions`` runs each, alternating;
- the detached keeper's RSS and CPU seconds over the detached hold (idle: nothing uses the
  session), the keeper alone and with its ssh children, from ``/proc``;
- ``sessions`` detached sessions at once: the total RSS of their keepers and ssh children.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import LAPTOP_VENV, BenchError, summary

if TYPE_CHECKING:
    from .bench import Bench

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cli_start(bench: Bench) -> dict[str, Any]:
    py = str(LAPTOP_VENV / "bin" / "python")
    samples: dict[str, list[float]] = {"help": [], "python": []}
    for i in range(max(5, bench.settings.repetitions)):
        for key in ("help", "python") if i % 2 == 0 else ("python", "help"):
            argv = [*bench.nodetunnel, "--help"] if key == "help" else [py, "-c", "pass"]
            started = time.monotonic()
            done = bench.as_user(argv, timeout_s=60)
            samples[key].append(time.monotonic() - started)
            if done.returncode != 0:
                raise BenchError(f"{' '.join(argv[-2:])} failed: {done.stderr.strip()[-300:]}")
    help_s, python_s = (statistics.median(samples[k]) for k in ("help", "python"))
    return {
        "help_s": summary(samples["help"]),
        "python_pass_s": summary(samples["python"]),
        "help_minus_python_s": round(help_s - python_s, 3),
    }


def session_processes(uid: int, session_id: str) -> list[int]:
    """The laptop-side processes of a session: the keeper and its ssh processes (their
    command lines name the session's directory), owned by ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(session_id.encode() in arg for arg in argv):
            found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += parents.get(p, [])
    return found


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total / 1e6


def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total * TICK_S


class IdleMeter:
    """The keeper's CPU seconds between ``start`` and ``stop``; its RSS at the end; the same
    with the session's ssh processes (children or not)."""

    def __init__(self, pid: int, session_id: str) -> None:
        self.pid = pid
        self.session_id = session_id

    def _tree(self) -> list[int]:
        uid = Path(f"/proc/{self.pid}").stat().st_uid
        return sorted(set(children(self.pid)) | set(session_processes(uid, self.session_id)))

    def start(self) -> None:
        self.began = time.monotonic()
        self.cpu0 = cpu_s([self.pid])
        self.tree0 = cpu_s(self._tree())

    def stop(self) -> dict[str, Any]:
        window = time.monotonic() - self.began
        tree = self._tree()
        keeper_cpu = cpu_s([self.pid]) - self.cpu0
        tree_cpu = cpu_s(tree) - self.tree0
        return {
            "window_s": round(window, 1),
            "keeper_rss_mb": round(rss_mb([self.pid]), 1),
            "keeper_cpu_s": round(keeper_cpu, 3),
            "keeper_cpu_pct": round(keeper_cpu / window * 100, 3),
            "with_ssh_rss_mb": round(rss_mb(tree), 1),
            "with_ssh_cpu_s": round(tree_cpu, 3),
            "processes": len(tree),
        }


def many_sessions(bench: Bench) -> dict[str, Any]:
    """``sessions`` detached sessions at once; their laptop-side memory; then stop --all."""
    n = bench.settings.sessions
    bench.say(f"footprint: {n} detached sessions at once")
    infos = []
    for i in range(n):
        cli = bench.start(bench.jupyter_argv("--detach"), f"nodetunnel jupyter --detach {i + 1}")
        info, _ = bench.ready(cli)
        if (code := cli.wait_exit(60)) != 0:
            raise BenchError(f"nodetunnel jupyter --detach exited with {code}: {cli.stderr_tail()}")
        infos.append(info)
    pids: set[int] = set()
    for info in infos:
        record = json.loads((bench.state_dir / f"{info['session_id']}.json").read_text())
        keeper = int(record["pid"])
        uid = Path(f"/proc/{keeper}").stat().st_uid
        pids |= set(children(keeper)) | set(session_processes(uid, str(info["session_id"])))
    total = rss_mb(sorted(pids))
    stopped = bench.as_user(bench.nt("stop", *(str(i["session_id"]) for i in infos)), timeout_s=180)
    if stopped.returncode != 0:
        raise BenchError(f"nodetunnel stop failed: {stopped.stderr.strip()[-500:]}")
    for info in infos:
        bench.wait_job_gone(str(info["job_id"]))
    return {"sessions": n, "processes": len(pids), "total_rss_mb": round(total, 1),
            "per_session_rss_mb": round(total / n, 1)}  # fmt: skip
