"""Running local programs, waiting for readiness, and tracking processes by PID.

* :func:`run` is the one function that runs a program to completion: argv
  list, ``shell=False``, a mandatory timeout, and failures translated into
  :mod:`nodetunnel.errors` (command, exit code and stderr tail).
* :func:`spawn` starts a long-lived background process (a daemon, a tunnel).
* :func:`wait_until` is the one readiness loop: a deadline, exponential backoff.
* :class:`ProcessRef` names a process by PID *and* start time, so a recycled
  PID is never mistaken for ours, and a zombie counts as dead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from .errors import CommandError, CommandNotFound, CommandTimeout, WaitTimeout

T = TypeVar("T")
log = logging.getLogger("nodetunnel")


@dataclasses.dataclass(frozen=True)
class Completed:
    """The outcome of a finished program."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    input: str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    not_found_hint: str | None = None,
) -> Completed:
    """Run ``argv`` (no shell) and return its output.

    Raises :class:`CommandNotFound` if the program does not exist,
    :class:`CommandTimeout` if it runs longer than ``timeout_s`` (it is killed),
    and :class:`CommandError` if ``check`` and it exits non-zero.
    """
    argv = [os.fspath(a) for a in argv]
    if not argv:
        raise ValueError("empty argv")
    log.debug("run: %s", shlex.join(argv))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise CommandError(
                argv, None, message=f"working directory {os.fspath(cwd)!r} does not exist"
            ) from exc
        raise CommandNotFound(argv, hint=not_found_hint) from exc
    except PermissionError as exc:
        raise CommandError(
            argv, None, message=f"program {argv[0]!r} cannot be executed: {exc.strerror}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        stderr = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else (exc.stderr or "")
        )
        raise CommandTimeout(argv, timeout_s, stderr) from exc
    done = Completed(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    log.debug("  exit %d after %.3f s", done.returncode, done.duration_s)
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr or proc.stdout)
    return done


def run_attached(argv: Sequence[str]) -> int:
    """Run ``argv`` with this terminal's stdin/stdout/stderr; return its exit code.

    Only for commands the user watches and ends (``logs -f``): no deadline here,
    Ctrl-C ends both.
    """
    argv = [os.fspath(a) for a in argv]
    log.debug("run (attached): %s", shlex.join(argv))
    try:
        return subprocess.run(argv, check=False).returncode
    except FileNotFoundError as exc:
        raise CommandNotFound(argv) from exc


def spawn(
    argv: Sequence[str],
    *,
    log_path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> ProcessRef:
    """Start ``argv`` in the background in its own session, output appended to ``log_path``."""
    argv = [os.fspath(a) for a in argv]
    log.debug("spawn: %s", shlex.join(argv))
    with open(log_path, "ab") as out:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise CommandNotFound(argv) from exc
    ref = ProcessRef.of(proc.pid)  # a child that already exited is still a zombie here
    if ref is None:
        raise CommandError(argv, None, message=f"{argv[0]!r} vanished right after it started")
    # The Popen object is dropped on purpose: the process outlives this one and
    # is tracked by PID + start time. Mark it handled so Python does not warn.
    proc.returncode = 0
    return ref


class NotReady(Exception):
    """Raised by a :func:`wait_until` probe: not ready yet, and here is why."""


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.02,
    max_interval_s: float = 0.5,
    jitter_s: float = 0.0,
    hint: str | None = None,
) -> T:
    """Call ``probe`` until it returns a truthy value; backoff between tries.

    A probe may raise :class:`NotReady` to say why it is not ready yet (reported
    if the deadline passes); any other exception ends the wait at once, so a
    probe that sees a fatal condition (a daemon that died) fails fast.
    """
    deadline = time.monotonic() + timeout_s
    last: str | None = None
    while True:
        try:
            result = probe()
        except NotReady as exc:
            result = None
            last = str(exc)
        if result:
            return result
        now = time.monotonic()
        if now >= deadline:
            raise WaitTimeout(what, timeout_s, last, hint)
        pause = interval_s + (random.uniform(0, jitter_s) if jitter_s else 0.0)  # noqa: S311
        time.sleep(min(pause, deadline - now))
        interval_s = min(interval_s * 1.6, max_interval_s)


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (so it does not linger as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest  # rest[0] is field 3 (state), rest[19] is field 22 (start time)


@dataclasses.dataclass(frozen=True)
class ProcessRef:
    """A process identified by PID and kernel start time (immune to PID reuse)."""

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        fields = _stat_fields(pid)
        if fields is None:
            return None
        return cls(pid, int(fields[19]))

    def alive(self) -> bool:
        """True if this very process exists and is not a zombie."""
        reap(self.pid)
        fields = _stat_fields(self.pid)
        if fields is None or fields[0] in ("Z", "X"):
            return False
        return int(fields[19]) == self.start_ticks

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if the process is still ours; return whether it was sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        reap(self.pid)
        return True

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL and wait again.

        A stopped (frozen) process is continued, so that it sees the SIGTERM.
        Raises :class:`WaitTimeout` if the process survives even SIGKILL.
        """
        if not self.signal(signal.SIGTERM):
            return
        self.signal(signal.SIGCONT)
        what = f"PID {self.pid} to exit"
        try:
            wait_until(lambda: not self.alive(), timeout_s=timeout_s, what=what)
        except WaitTimeout:
            if self.signal(signal.SIGKILL):
                wait_until(lambda: not self.alive(), timeout_s=timeout_s, what=what)
