"""Every error nodetunnel raises, and the exit code the CLI turns each into.

The library never prints and never exits: it raises one of these, and
``nodetunnel.cli`` is the only place that turns them into a message and an
exit code. Each error carries a one-line ``message`` (what went wrong, naming
the value) and a ``hint`` (what to do next)::

    NodetunnelError                      exit 1  (ExitCode.FAILURE)
    ├── UsageError                       exit 2  bad option or value given by the user
    │   └── PortInUse                            the local port is taken (by another program)
    ├── PrerequisiteError                exit 3  not root, package missing, unsupported OS
    ├── CommandError                     exit 4  a program failed: argv, exit code, stderr tail
    │   ├── CommandNotFound                      the program is not installed / not on PATH
    │   ├── CommandTimeout               exit 5  the program did not finish within its deadline
    │   └── SshError                     exit 8  ssh could not connect: unreachable, refused, host key
    ├── TunnelError                      exit 8  the forward to the app on the node failed
    ├── WaitTimeout                      exit 5  a readiness wait reached its deadline
    ├── SandboxError                     exit 6  the mini-cluster could not be built or inspected
    └── SchedulerError                   exit 7  SLURM refused, lost or could not report a job
        └── JobFailed                            the job ended (failed, cancelled, timed out) early

Ctrl-C is not an error class: the CLI maps ``KeyboardInterrupt`` to exit 130.
Low-level ``OSError``/``subprocess`` exceptions are translated into this tree
in exactly one place, :func:`nodetunnel.proc.run`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``nodetunnel`` command."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    PREREQUISITE = 3
    COMMAND = 4
    TIMEOUT = 5
    SANDBOX = 6
    SCHEDULER = 7
    CONNECTION = 8
    INTERRUPTED = 130


class NodetunnelError(Exception):
    """Base of every error nodetunnel raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(NodetunnelError):
    """A value given by the user cannot be used."""

    exit_code = ExitCode.USAGE


class PortInUse(UsageError):
    """A local port is taken; without ``--port``, nodetunnel just picks another one."""


class PrerequisiteError(NodetunnelError):
    """Something nodetunnel needs on this machine is missing (root, a package, the OS)."""

    exit_code = ExitCode.PREREQUISITE


def _tail(text: str, max_lines: int = 12, max_chars: int = 2000) -> str:
    lines = text.strip().splitlines()[-max_lines:]
    return "\n".join(lines)[-max_chars:]


class CommandError(NodetunnelError):
    """A program nodetunnel ran failed; carries its argv, exit code and stderr tail."""

    exit_code = ExitCode.COMMAND

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stderr: str = "",
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = _tail(stderr)
        if message is None:
            message = f"command {self.command_line!r} failed with exit code {returncode}"
            if self.stderr_tail:
                message += f": {self.stderr_tail}"
        super().__init__(message, hint)

    @property
    def command_line(self) -> str:
        import shlex

        return shlex.join(self.argv)


class CommandNotFound(CommandError):
    """The program to run does not exist on this machine."""

    def __init__(self, argv: Sequence[str], hint: str | None = None) -> None:
        super().__init__(
            argv,
            None,
            message=f"program {argv[0]!r} was not found",
            hint=hint or f"install the package that provides {argv[0]!r}, or fix PATH",
        )


class CommandTimeout(CommandError):
    """The program did not finish within its deadline and was killed."""

    exit_code = ExitCode.TIMEOUT

    def __init__(self, argv: Sequence[str], timeout_s: float, stderr: str = "") -> None:
        self.timeout_s = timeout_s
        super().__init__(
            argv,
            None,
            stderr,
            message=f"command {_short(argv)!r} did not finish within {timeout_s:g} s"
            + (f": {_tail(stderr)}" if stderr.strip() else ""),
        )


def _short(argv: Sequence[str]) -> str:
    import shlex

    line = shlex.join(argv)
    return line if len(line) <= 200 else line[:197] + "..."


class SshError(CommandError):
    """An SSH connection failed (unreachable host, authentication refused, host key)."""

    exit_code = ExitCode.CONNECTION


class TunnelError(NodetunnelError):
    """The SSH forward to the app on the node failed."""

    exit_code = ExitCode.CONNECTION


class WaitTimeout(NodetunnelError):
    """A readiness check did not succeed before its deadline."""

    exit_code = ExitCode.TIMEOUT

    def __init__(
        self, what: str, timeout_s: float, last: str | None = None, hint: str | None = None
    ):
        self.what = what
        self.timeout_s = timeout_s
        self.last = last
        message = f"timed out after {timeout_s:g} s waiting for {what}"
        if last:
            message += f" (last check: {last})"
        super().__init__(message, hint)


class SandboxError(NodetunnelError):
    """The mini-cluster could not be built, inspected or removed."""

    exit_code = ExitCode.SANDBOX


class SchedulerError(NodetunnelError):
    """The batch scheduler refused a job, lost it, or answered something unexpected."""

    exit_code = ExitCode.SCHEDULER


class JobFailed(SchedulerError):
    """A job ended (failed, was cancelled, timed out, ...) before it did its work."""

    def __init__(
        self,
        job_id: str,
        state: str,
        reason: str | None = None,
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.state = state
        self.reason = reason
        if message is None:
            message = f"job {job_id} ended with state {state}"
            if reason:
                message += f" (reason: {reason})"
        super().__init__(message, hint)
