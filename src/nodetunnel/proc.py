"""Running local programs, waiting for readiness, and tracking processes by PID.

* :func:`run` is the one function that runs a program to completion: argv
  list, ``shell=False``, a mandatory timeout, and failures translated into
  :mod:`nodetunnel.errors` (command, exit code and stderr tail).
* :func:`spawn` starts a long-lived background process (a daemon, a tunnel).
* :func:`wait_until` is the one readiness loop: a deadline, exponential backoff.
* :class:`ProcessRef` names a process by PID *and* start time, so a recycled
  PID is never mistaken for ours, and a zombie counts as dead. It reads the
  process table through psutil (``/proc`` on Linux, sysctl on macOS, the Win32
  API on Windows), imported on first use so that ``nodetunnel --help`` stays quick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import CommandError, CommandNotFound, CommandTimeout, PrerequisiteError, WaitTimeout

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
    new_session: bool = False,
) -> Completed:
    """Run ``argv`` (no shell) and return its output.

    ``new_session`` runs it in a session of its own, away from this terminal:
    a Ctrl-C or a closed terminal then cannot end it (for the clean-up), but
    it cannot ask the user anything either.

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
            start_new_session=new_session,
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


#: How much of an attached program's stderr is kept, to tell why it failed.
ATTACHED_STDERR_KEPT = 64 * 1024


def run_attached(argv: Sequence[str]) -> Completed:
    """Run ``argv`` with this terminal's stdin and stdout; return how it ended.

    Only for commands the user watches and ends (``logs -f``): no deadline here,
    Ctrl-C ends both. Its stderr is passed on as it comes, and its end kept in the
    result (``stdout`` is empty: it went to the terminal), so that a failure can be
    told apart from the program's own messages.
    """
    import codecs

    argv = [os.fspath(a) for a in argv]
    log.debug("run (attached): %s", shlex.join(argv))
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise CommandNotFound(argv) from exc
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    kept = ""
    err: Any = proc.stderr  # a pipe (stderr=PIPE)
    with proc:
        try:
            while chunk := err.read1(65536):
                text = decoder.decode(chunk)
                with contextlib.suppress(OSError, ValueError):  # a closed terminal: keep going
                    sys.stderr.write(text)
                    sys.stderr.flush()
                kept = (kept + text)[-ATTACHED_STDERR_KEPT:]
            code = proc.wait()
        except BaseException:  # Ctrl-C reached both; do not leave it behind
            proc.kill()
            raise
    return Completed(argv, code, "", kept + decoder.decode(b"", final=True),
                     time.monotonic() - started)  # fmt: skip


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
    # The log may hold what the program prints about its secrets: private to the user.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = _start_away(argv, out, env=env, cwd=cwd)
    ref = ProcessRef.of(proc.pid)  # a child that already exited is still a zombie here
    if ref is None:
        if proc.poll() is not None:  # exited, and the platform shows no zombie: a dead ref
            return ProcessRef(proc.pid, _EXITED)  # (the caller reads the log to tell why)
        # Running, but it could not be told apart from a later process: never leave it untracked.
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        raise CommandError(
            argv, None, message=f"{argv[0]!r} started but cannot be tracked, so it was stopped"
        )
    # The Popen object is dropped on purpose: the process outlives this one and
    # is tracked by PID + start time. Mark it handled so Python does not warn.
    proc.returncode = 0
    return ref


def spawn_reading(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (away from the terminal's Ctrl-C), its output
    (stdout and stderr) a pipe to read while it runs; the caller ends and waits for it."""
    argv = [os.fspath(a) for a in argv]
    log.debug("spawn (reading): %s", shlex.join(argv))
    return _start_away(argv, subprocess.PIPE)


def _start_away(
    argv: list[str],
    out: Any,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """``argv`` in a session of its own, stdout and stderr to ``out``; a program that cannot
    be started is a CommandNotFound or CommandError."""
    # Windows has no sessions: a process group of its own keeps the console's Ctrl-C away.
    group = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if sys.platform == "win32" else 0
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            creationflags=group,
        )
    except FileNotFoundError as exc:
        raise CommandNotFound(argv) from exc
    except OSError as exc:  # not executable, a bad working directory, no resources ...
        raise CommandError(
            argv, None, message=f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        ) from exc


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
    eager_s: float = 0.0,
) -> T:
    """Call ``probe`` until it returns a truthy value; backoff between tries.

    For the first ``eager_s`` seconds the pause stays ``interval_s`` (what is waited
    for usually comes then), after that it grows 1.6-fold each try up to
    ``max_interval_s``.

    A probe may raise :class:`NotReady` to say why it is not ready yet (reported
    if the deadline passes); any other exception ends the wait at once, so a
    probe that sees a fatal condition (a daemon that died) fails fast.
    """
    begin = time.monotonic()
    deadline = begin + timeout_s
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
        if now - begin >= eager_s:
            interval_s = min(interval_s * 1.6, max_interval_s)


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (so it does not linger as a zombie)."""
    wnohang = getattr(os, "WNOHANG", None)
    if wnohang is None:  # Windows: an exited process is gone, there is nothing to collect
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, wnohang)


#: ``start_ticks`` counts hundredths of a second: the resolution of a process's
#: start time on Linux, whose kernel counts USER_HZ = 100 ticks a second.
_TICKS_PER_S = 100
#: The start time of a process that had exited before it could be read: never alive.
_EXITED = -1


def _psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise PrerequisiteError(
            "the Python package psutil, which nodetunnel needs to track processes, is missing",
            hint="reinstall nodetunnel (pip install nodetunnel), or: pip install 'psutil>=5.9'",
        ) from exc
    return psutil


def _probe(pid: int) -> tuple[int, bool] | None:
    """``pid``'s start time in ticks and whether it is a zombie; None if there is no such process.

    The start time is the same number whichever process asks, whenever it asks:

    * on Linux, ticks since boot (as in ``/proc/PID/stat``, so records written when
      nodetunnel read that file stay valid). psutil's ``create_time()`` there is boot
      time + ticks, and the boot time it reads moves with the clock (NTP, a manual
      change); it is read before and after, and only a steady one is subtracted.
    * elsewhere, ``create_time()`` itself: macOS and Windows record the start time
      once, when the process is created.
    """
    if pid <= 0:  # 0 and negative numbers name process groups for os.kill, never a process
        return None
    psutil = _psutil()
    try:
        for _attempt in range(3):
            boot = float(psutil.boot_time()) if psutil.LINUX else 0.0
            proc = psutil.Process(pid)
            with proc.oneshot():
                created = float(proc.create_time())
                status = proc.status()
            if not psutil.LINUX or float(psutil.boot_time()) == boot:
                break
    except psutil.Error:  # gone, a zombie psutil cannot read, or not ours to see
        return None
    return round((created - boot) * _TICKS_PER_S), status in (
        psutil.STATUS_ZOMBIE,
        psutil.STATUS_DEAD,
    )


@dataclasses.dataclass(frozen=True)
class ProcessRef:
    """A process identified by PID and start time (immune to PID reuse).

    ``start_ticks`` is an integer (hundredths of a second, see :func:`_probe`), so a
    reference survives a JSON round trip and compares equal from any process.
    """

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        seen = _probe(pid)
        if seen is None:
            return None
        return cls(pid, seen[0])

    def alive(self) -> bool:
        """True if this very process exists and is not a zombie."""
        reap(self.pid)
        seen = _probe(self.pid)
        if seen is None or seen[1]:
            return False
        return seen[0] == self.start_ticks

    def wait_gone(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for this process to end; True if it has ended.

        On Linux a pidfd wakes the caller once, when the process ends (it need not
        be a child of ours); elsewhere this looks every half second.
        """
        timeout_s = max(0.0, timeout_s)
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                fd = pidfd_open(self.pid)
            except OSError:  # gone already (or pidfds unsupported): one look tells
                return not self.alive()
            try:
                if self.alive():  # the pidfd is of this very process, not of a reused PID
                    select.select([fd], [], [], timeout_s)
            finally:
                os.close(fd)
            return not self.alive()
        deadline = time.monotonic() + timeout_s
        while self.alive():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.5, left))
        return True

    def listens_on(self, host: str, port: int) -> bool | None:
        """Whether this very process holds the TCP listener on ``host:port``.

        ``None`` when the system does not tell (a process we may not inspect).
        """
        psutil = _psutil()
        try:
            proc = psutil.Process(self.pid)
            get = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6
            conns = get(kind="tcp")
        except psutil.AccessDenied:
            return None
        except psutil.Error:
            return False
        if not self.alive():
            return False
        return any(
            c.status == psutil.CONN_LISTEN and tuple(c.laddr[:2]) == (host, port) for c in conns
        )

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if the process is still ours; return whether it was sent."""
        if not self.alive():
            return False
        if sig == 0 and sys.platform == "win32":
            return True  # Windows' os.kill ends the process for any "signal" but Ctrl-C/Break
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        reap(self.pid)
        return True

    def stop(self, *, timeout_s: float = 5.0, signalled: bool = False) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL and wait again.

        With ``signalled`` the SIGTERM was sent already (to many processes at
        once) and is not sent again. A stopped (frozen) process is continued,
        so that it sees the SIGTERM.
        Raises :class:`WaitTimeout` if the process survives even SIGKILL.
        On Windows, where SIGTERM already ends a process at once, there is no
        SIGCONT or SIGKILL: SIGTERM is sent again.
        """
        if not (self.alive() if signalled else self.signal(signal.SIGTERM)):
            return
        sigcont = getattr(signal, "SIGCONT", None)
        if sigcont is not None:
            self.signal(sigcont)
        what = f"PID {self.pid} to exit"
        try:
            wait_until(lambda: not self.alive(), timeout_s=timeout_s, what=what)
        except WaitTimeout:
            if self.signal(getattr(signal, "SIGKILL", signal.SIGTERM)):
                wait_until(lambda: not self.alive(), timeout_s=timeout_s, what=what)
