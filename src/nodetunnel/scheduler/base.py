"""What nodetunnel needs from a batch scheduler, independent of SLURM.

* :class:`CommandRunner` runs one argv on the *submit host* (the cluster's login
  node): locally that is :func:`run_locally`; over SSH it is a runner that
  wraps the argv with :func:`nodetunnel.quoting.remote_command`. A scheduler
  backend only ever builds argv lists and hands them to its runner.
* :class:`JobRequest` is what the user asked for (partition, GPUs, time, ...),
  as plain strings the way the scheduler takes them.
* :class:`JobState` and :class:`JobStatus` are what the scheduler reports back.
* :class:`Scheduler` is the backend interface; :class:`~nodetunnel.scheduler.slurm.Slurm`
  implements it.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Sequence
from typing import ClassVar, Protocol

from ..errors import JobFailed, UsageError
from ..proc import Completed, NotReady, run, wait_until


class CommandRunner(Protocol):
    """Runs ``argv`` (no shell) on the submit host and returns its output.

    Implementations raise like :func:`nodetunnel.proc.run`: ``CommandNotFound``,
    ``CommandTimeout`` after ``timeout_s``, and ``CommandError`` on a non-zero
    exit if ``check``. ``input`` is sent to the program's stdin.
    """

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float,
        check: bool = True,
    ) -> Completed: ...


def run_locally(
    argv: Sequence[str], *, input: str | None = None, timeout_s: float, check: bool = True
) -> Completed:
    """A :class:`CommandRunner` for when this machine is the submit host."""
    return run(argv, input=input, timeout_s=timeout_s, check=check)


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """The resources and placement of one batch job, as the scheduler takes them.

    Every field is optional; ``None`` leaves the site's default. Values are
    strings in the scheduler's own syntax (``mem="16G"``, ``time="4:00:00"``,
    ``gres="gpu:a100:1"``) and are written into the job script quoted, never
    interpreted by a shell. ``extra_args`` are raw options
    (``"--mail-type=END"``), each one word starting with ``-``; they come last,
    so they override the fields. ``workdir`` is the job's working directory
    on the cluster, ``output`` its log path pattern (``%j`` is the job id).
    """

    partition: str | None = None
    gres: str | None = None
    gpus: str | None = None
    mem: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    reservation: str | None = None
    job_name: str = "nodetunnel"
    extra_args: tuple[str, ...] = ()
    workdir: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        # Accept any sequence (a list from a config file) but store a tuple.
        given: object = self.extra_args
        if isinstance(given, str):
            raise UsageError(
                f"extra scheduler arguments must be a list of options, not the string {given!r}",
                hint="give each option separately, e.g. ['--mail-type=END', '--exclusive']",
            )
        object.__setattr__(self, "extra_args", tuple(self.extra_args))


class JobState(enum.Enum):
    """A job's state as SLURM names it, plus ``ENDED``: no longer known to the scheduler."""

    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    RESIZING = "RESIZING"
    REQUEUED = "REQUEUED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    REVOKED = "REVOKED"
    ENDED = "ENDED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, text: str) -> JobState:
        """The state for SLURM's long state name (``squeue %T``); ``UNKNOWN`` if unrecognised."""
        word = text.strip().split(" ", 1)[0].rstrip("+").upper()
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN

    @property
    def finished(self) -> bool:
        """The job is over: it will not run (again) by itself."""
        return self in _FINISHED

    @property
    def active(self) -> bool:
        """The job is queued, starting, running or winding down: it still exists."""
        return not self.finished and self is not JobState.UNKNOWN


_FINISHED = frozenset(
    {
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.OUT_OF_MEMORY,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.SPECIAL_EXIT,
        JobState.REVOKED,
        JobState.ENDED,
    }
)


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """One job as the scheduler reports it.

    ``nodelist`` is the scheduler's compact form (``node[1-3,5]``), ``nodes`` the
    expanded host names in the same order (empty while pending). ``reason`` is
    why a job waits (``Resources``, ``Priority``) or ``None``. ``time_left_s`` is
    ``None`` for no limit or when unknown. ``start_estimate`` is the scheduler's
    start time as it prints it: an estimate for a pending job, the real start
    for a running one, ``None`` when it has none. ``state_raw`` is the state
    word as printed (useful when ``state`` is ``UNKNOWN``).
    """

    job_id: str
    state: JobState
    nodelist: str = ""
    nodes: tuple[str, ...] = ()
    reason: str | None = None
    time_left_s: int | None = None
    start_estimate: str | None = None
    user: str | None = None
    state_raw: str = ""

    @classmethod
    def ended(cls, job_id: str) -> JobStatus:
        """The status of a job the scheduler no longer knows about."""
        return cls(job_id, JobState.ENDED, state_raw="")

    @property
    def node(self) -> str | None:
        """The first allocated node (where the batch script runs), or ``None``."""
        return self.nodes[0] if self.nodes else None

    def describe(self) -> str:
        """A short human description, e.g. ``PENDING (Resources)`` or ``RUNNING on node1``."""
        text = self.state.value if self.state is not JobState.UNKNOWN else self.state_raw
        if self.reason:
            text += f" ({self.reason})"
        if self.nodelist and self.state.active:
            text += f" on {self.nodelist}"
        return text


class Scheduler(abc.ABC):
    """A batch scheduler backend (submit, watch, cancel), driven through a :class:`CommandRunner`.

    ``job_script`` renders the full batch script without submitting it (to show
    the user, or to compare against a golden file); ``submit_job`` renders and
    submits in one step.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def job_script(self, request: JobRequest, body: str) -> str:
        """The complete batch script for ``request`` running ``body`` (pure; nothing is run)."""

    @abc.abstractmethod
    def submit(self, script: str, *, request: JobRequest | None = None) -> str:
        """Submit ``script`` and return the job id.

        ``request`` (the one the script was rendered from) only serves error
        messages, which can then name the value the scheduler refused.
        """

    @abc.abstractmethod
    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of every job in ``job_ids`` (one scheduler query for all of them).

        A job the scheduler no longer knows is reported as :attr:`JobState.ENDED`.
        """

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id``; a job that has already ended is not an error."""

    @abc.abstractmethod
    def cancel_named(self, job_name: str) -> None:
        """Cancel this user's jobs named ``job_name`` (for a submit whose answer was lost)."""

    def submit_job(self, request: JobRequest, body: str) -> str:
        """Render the script for ``request`` + ``body`` and submit it; return the job id."""
        return self.submit(self.job_script(request, body), request=request)

    def status_of(self, job_id: str) -> JobStatus:
        """The status of one job."""
        return self.status([job_id])[job_id]

    def wait_started(
        self,
        job_id: str,
        *,
        timeout_s: float,
        interval_s: float = 0.25,
        max_interval_s: float = 5.0,
    ) -> JobStatus:
        """Poll until ``job_id`` is RUNNING on a node; return that status.

        Raises :class:`~nodetunnel.errors.JobFailed` as soon as the job has ended
        and :class:`~nodetunnel.errors.WaitTimeout` (naming the job's state and
        pending reason) at the deadline. The job is left alone either way.
        """

        def probe() -> JobStatus | None:
            st = self.status_of(job_id)
            if st.state is JobState.RUNNING and st.nodes:
                return st
            if st.state.finished:
                raise JobFailed(
                    job_id,
                    st.state.value,
                    st.reason,
                    message=f"job {job_id} ended ({st.describe()}) before it started running"
                    if st.state is not JobState.ENDED
                    else f"job {job_id} is no longer in the queue: it ended before it was seen "
                    "running",
                    hint="read the job's log file on the cluster for the cause",
                )
            raise NotReady(f"job {job_id} is {st.describe()}")

        return wait_until(
            probe,
            timeout_s=timeout_s,
            what=f"job {job_id} to start",
            interval_s=interval_s,
            max_interval_s=max_interval_s,
            hint=f"the job is still in the queue: wait longer, or cancel it with 'scancel {job_id}'",
        )
