"""nodetunnel side by side with doing it by hand, measured on the mini-cluster in one run.

Run as root from a checkout: ``scripts/bench`` (``--quick`` for a short smoke run,
``--help`` for the options). It takes the lock the integration tests take (the
machine has one sandbox), uses the mini-cluster if it is up or brings it up (and
then down again at the end), runs every tool as the test user ``ntalice`` the way a
researcher runs it on a laptop, prints one side-by-side table and writes
``artifacts/bench.json``. docs/performance.md explains the figures.

The parts (each in its own module):

1. **startup** (sidebyside.py): command -> first 200 from ``/api/status`` through
   the tunnel, for ``nodetunnel jupyter``, the seed's manual recipe scripted as
   directly as possible, and jupyter-forward, interleaved (the order rotates each
   round); min/median/max, ratios to the manual recipe, nodetunnel's phases (from
   ``--debug``) and the manual recipe's steps; attach, ``--detach`` and Ctrl-C.
2. **logins**: sshd's "Accepted publickey" lines per host, per step, per tool.
3. **scheduler load** (pending.py for the pending part): squeue/sbatch/scancel
   commands (nodetunnel's ``--debug``) and slurmctld's RPCs from the user
   (``sdiag``) per start, per minute while healthy (foreground and detached), per
   minute while pending (the partition filled with the other user's jobs).
4. **data path** (datapath.py): a file download and small requests (new connection
   each, kept-alive) through nodetunnel's tunnel and a plain ``ssh -J ... -L`` to
   the same socket, alternating.
5. **recovery** (recovery.py): link restored -> first 200 after cutting laptop <->
   login and gateway <-> node.
6. **footprint** (footprint.py): ``--help`` against ``python -c pass``; the keeper's
   RSS and CPU over the detached (idle) hold; many detached sessions' RSS.
7. **shared home** (homecache.py): start-up and failure reports with the home seen
   directly and through a 30 s cache.

Every wait has a deadline; processes are ended by PID; the sessions, jobs (also the
other user's filler jobs), tunnels, files and link states are restored also on
failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import pwd
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import nodetunnel
from nodetunnel.errors import NodetunnelError
from nodetunnel.proc import NotReady, run, wait_until
from nodetunnel.sandbox.cluster import Sandbox, check_prerequisites
from nodetunnel.sandbox.topology import USERS, Paths

from .bench import Bench
from .common import (
    CLUSTER_VENV,
    DEFAULT_OUTPUT,
    LAPTOP_VENV,
    QUICK,
    RESULT_VERSION,
    SANDBOX_LOCK,
    BenchError,
    Say,
    Settings,
)
from .parsing import parse_commands, parse_sdiag_user_rpcs, scheduler_counts
from .table import render_table

__all__ = ["QUICK", "RESULT_VERSION", "main", "parse_commands", "parse_sdiag_user_rpcs",
           "scheduler_counts"]  # fmt: skip


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def sandbox_lock(timeout_s: float, say: Say) -> Iterator[None]:
    """The integration tests' lock: one user of the machine's sandbox at a time."""
    fd = os.open(SANDBOX_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:

        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise NotReady(f"another run holds {SANDBOX_LOCK}") from None
            return True

        try:
            take()
        except NotReady:
            say(f"waiting up to {timeout_s:g} s for the sandbox ({SANDBOX_LOCK} is held)")
            wait_until(
                take,
                timeout_s=timeout_s,
                what="the sandbox to be free",
                interval_s=1,
                max_interval_s=5,
            )
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def sandbox_for_bench(say: Say) -> Iterator[Sandbox]:
    """The running sandbox, or one brought up now and taken down at the end."""
    status = Sandbox(Paths()).status()
    if status.up:
        say(f"using the running sandbox ({status.node_count} nodes)")
        yield Sandbox(Paths(), node_count=status.node_count)
        return
    sb = Sandbox(Paths(), node_count=2, progress=lambda msg: say(f"sandbox: {msg}"))
    sb.up()
    try:
        yield sb
    finally:
        say("taking the sandbox down (this run brought it up)")
        uids = []
        for user in USERS:
            with contextlib.suppress(KeyError):
                uids.append(pwd.getpwnam(user).pw_uid)
        sb.down()
        for uid in uids:  # the test users' laptop-side runtime directories
            shutil.rmtree(f"/tmp/nodetunnel-{uid}", ignore_errors=True)


@contextlib.contextmanager
def user_copy_of_nodetunnel() -> Iterator[list[str]]:
    """argv that runs this checkout's nodetunnel as the test user (a world-readable copy)."""
    src = Path(nodetunnel.__file__).resolve().parent
    copy = Path(tempfile.mkdtemp(prefix="nodetunnel-bench-", dir="/var/tmp"))
    try:
        shutil.copytree(src, copy / "nodetunnel", ignore=shutil.ignore_patterns("__pycache__"))
        # Byte-compiled as an installed package is (pip compiles on install): the test user
        # cannot write __pycache__ here, and every start would compile the modules anew.
        python = str(LAPTOP_VENV / "bin" / "python")
        run([python, "-m", "compileall", "-q", str(copy)], timeout_s=120)
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield ["env", f"PYTHONPATH={copy}", python, "-m", "nodetunnel"]
    finally:
        shutil.rmtree(copy)


# ------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure nodetunnel side by side with the manual recipe and "
        "jupyter-forward on the mini-cluster (as root): startup, logins, scheduler load, data "
        "path, recovery, footprint. Prints one table and writes JSON.",
    )
    d = Settings()
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: one repetition, {QUICK.hold_s:g} s holds, a {QUICK.file_mb} MB "
        f"file, {QUICK.small_requests} small requests, {QUICK.outage_s:g} s cuts, "
        f"{QUICK.sessions} sessions (options given explicitly still apply)",
    )
    p.add_argument("-n", "--repetitions", type=int, help=f"timed starts [{d.repetitions}]")
    p.add_argument(
        "--hold",
        type=float,
        metavar="SECONDS",
        help=f"how long a healthy session is kept while its scheduler queries are "
        f"counted, foreground and detached [{d.hold_s:g}]",
    )
    p.add_argument("--file-mb", type=int, help=f"size of the downloaded file in MB [{d.file_mb}]")
    p.add_argument("--rounds", type=int, help=f"downloads per tunnel [{d.rounds}]")
    p.add_argument(
        "--small-requests",
        type=int,
        help=f"small requests per tunnel and connection mode [{d.small_requests}]",
    )
    p.add_argument(
        "--pending",
        type=float,
        metavar="SECONDS",
        help=f"how long a pending session is watched [{d.pending_s:g}]",
    )
    p.add_argument(
        "--outage",
        type=float,
        metavar="SECONDS",
        help=f"how long each link is cut [{d.outage_s:g}]",
    )
    p.add_argument(
        "--sessions", type=int, help=f"detached sessions at once, for their RSS [{d.sessions}]"
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the JSON [artifacts/bench.json]",
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="how long to wait for the sandbox if another run holds it [3600]",
    )
    args = p.parse_args(argv)
    for name in ("repetitions", "file_mb", "rounds", "small_requests", "sessions"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("hold", "pending", "outage"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    given = {
        "repetitions": args.repetitions,
        "hold_s": args.hold,
        "file_mb": args.file_mb,
        "rounds": args.rounds,
        "small_requests": args.small_requests,
        "pending_s": args.pending,
        "outage_s": args.outage,
        "sessions": args.sessions,
    }
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def main(argv: Sequence[str] | None = None, *, lock_held: bool = False) -> int:
    """Run the benchmarks; 0 on success. ``lock_held``: the caller holds the sandbox lock
    (the integration tests' fixture does), so it is not taken again."""
    args = parse_args(argv)
    settings = settings_of(args)
    begin = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - begin:6.1f} s] {msg}", file=sys.stderr, flush=True)

    try:
        check_prerequisites()
        missing = [str(p) for p in (CLUSTER_VENV, LAPTOP_VENV) if not (p / "bin/python").exists()]
        if missing:
            raise BenchError(f"{', '.join(missing)} missing: run ./scripts/setup")
        lock = contextlib.nullcontext() if lock_held else sandbox_lock(args.lock_timeout, say)
        with lock, sandbox_for_bench(say) as sb, user_copy_of_nodetunnel() as nt:
            results = Bench(sb, nt, settings, say).run()
            write_json(results, args.output)  # kept even if taking the sandbox down fails
    except (BenchError, NodetunnelError) as exc:
        hint = getattr(exc, "hint", None)
        print(f"bench: error: {exc}" + (f"\n  fix: {hint}" if hint else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted (sessions, jobs and tunnels were cleaned up)", file=sys.stderr)
        return 130
    print(render_table(results))
    say(f"wrote {args.output}")
    return 0


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
