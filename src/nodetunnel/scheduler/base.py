"""What nodetunnel needs from a batch scheduler, independent of any one scheduler.

* :class:`CommandRunner` runs one argv on the *submit host* (the cluster's login
  node): locally that is :func:`run_locally`; over SSH it is the transport,
  which wraps the argv with :func:`nodetunnel.quoting.remote_command`. A
  scheduler backend only ever builds argv lists and hands them to its runner.
* :class:`JobRequest` is what the user asked for (partition, GPUs, time, ...),
  as plain strings the way the scheduler takes them. Its resource fields are
  also the profile keys and command-line options (each carries its
  :class:`~nodetunnel.fields.Field`): a new resource is one line here.
* :class:`JobState` and :class:`JobStatus` are what the scheduler reports back;
  :class:`PendingInfo` is where a pending job stands in its partition's queue.
* :class:`Scheduler` is the whole backend interface the session core uses;
  :class:`~nodetunnel.scheduler.slurm.Slurm` implements it. A backend also owns
  the shell its jobs need (:attr:`Scheduler.NODE_NAME_SHELL`,
  :attr:`Scheduler.CANCEL_SELF_SHELL`): the job script asks for them.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import re
from collections.abc import Sequence
from typing import ClassVar, Protocol

from ..errors import JobFailed, UsageError
from ..fields import resource
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

    # Each resource field is a profile key and a command-line option too (see fields.resource).
    # fmt: off
    partition: str | None = resource("str", "SLURM partition (--partition)", '"gpu"',
                                     flags=("-p", "--partition"),
                                     flag_help="SLURM partition, e.g. gpu.")
    gres: str | None = resource("str", "generic resources (--gres)", '"gpu:1"', flags=("--gres",),
                                flag_help="Generic resources, e.g. gpu:1.")
    gpus: str | None = resource("str_or_int",
                                "GPUs for the job (--gpus), a number or TYPE:NUMBER", "1",
                                flags=("--gpus",), flag_help="GPUs for the job, e.g. 1 or a100:2.")
    mem: str | None = resource("str_or_int",
                               'memory per node (--mem), e.g. "16G" or megabytes as a number',
                               '"16G"', flags=("--mem",), flag_help="Memory per node, e.g. 16G.")
    time: str | None = resource("str_or_int",
                                'time limit (--time): minutes, "H:MM:SS" or "D-HH:MM:SS"',
                                '"8:00:00"', flags=("-t", "--time"),
                                flag_help="Time limit, e.g. 4:00:00.")
    cpus_per_task: int | None = resource("pos_int", "CPUs (--cpus-per-task)", "4",
                                         flags=("-c", "--cpus-per-task"),
                                         flag_help="CPUs for the app.")
    account: str | None = resource("str", "account to charge (--account)", '"mylab"',
                                   flags=("-A", "--account"), flag_help="SLURM account to charge.")
    qos: str | None = resource("str", "quality of service (--qos)", '"normal"',
                               flags=("-q", "--qos"), flag_help="Quality of service.")
    constraint: str | None = resource("str", "node features (--constraint)", '"a100"',
                                      flags=("-C", "--constraint"),
                                      flag_help="Node features, e.g. a100.")
    reservation: str | None = resource("str", "reservation (--reservation)", '"course"',
                                       flags=("--reservation",), flag_help="Reservation name.")
    job_name: str = "nodetunnel"
    extra_args: tuple[str, ...] = resource(
        "str_list", "any other batch options, one per item", '["--exclude=gpu-01"]',
        flags=("--sbatch-arg",), metavar="ARG", key="sbatch_args", default=(),
        flag_help="Any other sbatch option, e.g. --sbatch-arg=--exclusive (repeatable).",
    )
    # fmt: on
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
    """A job's state (the batch schedulers' common names), plus ``ENDED``: no longer known."""

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
        """The state for a long state name (e.g. ``RUNNING``); ``UNKNOWN`` if unrecognised."""
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


@dataclasses.dataclass(frozen=True)
class PendingInfo:
    """Where a pending job stands: why it waits, when it may start, its place in the queue.

    ``estimated_start`` is the scheduler's estimate in ISO 8601 (``2026-12-02T14:05:00``,
    the cluster's local time), or ``None`` while it has none (SLURM prints ``N/A`` until
    its backfill pass has looked at the job). ``position`` is 1-based among the pending
    jobs of the job's partition (those the user may see) in the scheduler's priority
    order, ``pending_in_partition`` how many there are; ``None`` where the backend cannot
    tell. ``partition`` is the job's partition as the scheduler prints it (``gpu``, or
    ``cpu,gpu`` for a job submitted to several).
    """

    reason: str | None
    estimated_start: str | None
    position: int | None
    pending_in_partition: int | None
    partition: str | None = None

    def describe(self) -> str:
        """``position 3 of 7 in gpu, expected to start 2026-12-02T14:05:00`` (parts as known)."""
        parts = []
        if self.position is not None and self.pending_in_partition is not None:
            where = f" in {self.partition}" if self.partition else ""
            parts.append(f"position {self.position} of {self.pending_in_partition}{where}")
        if self.estimated_start:
            parts.append(f"expected to start {self.estimated_start}")
        return ", ".join(parts)


class Scheduler(abc.ABC):
    """A batch scheduler backend (submit, watch, cancel), driven through a :class:`CommandRunner`.

    ``job_script`` renders the full batch script without submitting it (to show
    the user, or to compare against a golden file); ``submit_job`` renders and
    submits in one step. A backend is one subclass plus one line in
    :data:`nodetunnel.scheduler.SCHEDULERS`; it is built as ``Backend(runner)``.
    """

    name: ClassVar[str]
    #: The whole submit command (the script goes on stdin), for --dry-run plans.
    SUBMIT_ARGV: ClassVar[tuple[str, ...]]
    #: Shell (in a job script) that expands to the scheduler's name for this node.
    NODE_NAME_SHELL: ClassVar[str]
    #: Shell (in a job script) that cancels the job it runs in.
    CANCEL_SELF_SHELL: ClassVar[str]

    def __init__(self, runner: CommandRunner, *, timeout_s: float = 60.0) -> None:
        self.runner = runner
        self.timeout_s = timeout_s

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

    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id``; a job that has already ended is not an error."""
        self.cancel_jobs([job_id])

    @abc.abstractmethod
    def cancel_jobs(self, job_ids: Sequence[str]) -> None:
        """Cancel all of ``job_ids`` with one command; jobs already ended are no error."""

    @abc.abstractmethod
    def cancel_named(self, job_name: str) -> None:
        """Cancel this user's jobs named ``job_name`` (for a submit whose answer was lost)."""

    @abc.abstractmethod
    def named_jobs(self, name_pattern: re.Pattern[str]) -> dict[str, tuple[str, JobStatus]]:
        """The user's jobs whose name matches ``name_pattern``, recently ended ones included
        (``{job id: (name, status)}``), with one query."""

    @abc.abstractmethod
    def start_estimate(self, job_id: str) -> str | None:
        """The scheduler's estimated start time of a pending job, or ``None``."""

    def pending_info(self, job_id: str) -> PendingInfo | None:
        """Where ``job_id`` stands in the queue, or ``None`` when it is not pending.

        A backend that can see the queue answers with one query; this default
        (two queries, no position) serves backends that cannot.
        """
        status = self.status_of(job_id)
        if status.state is not JobState.PENDING:
            return None
        return PendingInfo(status.reason, self.start_estimate(job_id), None, None)

    def pending_infos(self, job_ids: Sequence[str]) -> dict[str, PendingInfo]:
        """Where each of ``job_ids`` that is still pending stands in the queue (a job not
        pending is left out).

        A backend that can see the queue answers with one query for all of them; this
        default asks :meth:`pending_info` for each.
        """
        found = {job_id: self.pending_info(job_id) for job_id in dict.fromkeys(job_ids)}
        return {job_id: info for job_id, info in found.items() if info is not None}

    @abc.abstractmethod
    def cancel_command(self, job_ids: Sequence[str]) -> str:
        """The command a user runs on the cluster to cancel ``job_ids`` by hand."""

    @abc.abstractmethod
    def leftover_hint(self) -> str:
        """How a user finds, on the cluster, jobs of theirs that may still run."""

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
            hint="the job is still in the queue: wait longer, or cancel it with "
            f"'{self.cancel_command([job_id])}'",
        )
