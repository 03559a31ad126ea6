"""Test doubles for the scheduler layer, public so every test suite can use them.

* :class:`FakeRunner` is a :class:`~nodetunnel.scheduler.base.CommandRunner`
  that records each call and answers with scripted replies, per program.
* :class:`FakeSlurm` is a CommandRunner that *is* a tiny SLURM: it keeps jobs
  in memory and answers ``sbatch``, ``squeue``, ``scancel`` and ``sinfo`` the
  way the real tools do, so code on top of :class:`~nodetunnel.scheduler.slurm.Slurm`
  can be tested end to end; the test moves jobs along (:meth:`FakeSlurm.start`,
  :meth:`FakeSlurm.finish`, :meth:`FakeSlurm.forget`), from an ``on_call`` hook
  if it likes (called before every command), and makes the controller fail now
  and then (:meth:`FakeSlurm.fail_next`).

Both check what every real runner call must have: a list argv of strings and a
positive, finite ``timeout_s``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections import defaultdict, deque
from collections.abc import Callable, Sequence

from ..errors import CommandError
from ..proc import Completed
from .base import JobState


class UnexpectedCall(AssertionError):
    """The fake was called in a way the test did not script."""


@dataclasses.dataclass(frozen=True)
class Call:
    """One recorded runner call."""

    argv: list[str]
    input: str | None
    timeout_s: float
    check: bool

    @property
    def program(self) -> str:
        return self.argv[0]


@dataclasses.dataclass(frozen=True)
class Reply:
    """A scripted result: output and exit code, or an exception to raise instead."""

    stdout: str = ""
    stderr: str = ""
    returncode: int = 0
    raises: BaseException | None = None


def _record(argv: Sequence[str], input: str | None, timeout_s: float, check: bool) -> Call:
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise UnexpectedCall(f"argv must be a non-empty list of strings, got {argv!r}")
    if not (isinstance(timeout_s, int | float) and timeout_s > 0 and math.isfinite(timeout_s)):
        raise UnexpectedCall(f"every call needs a positive finite timeout_s, got {timeout_s!r}")
    return Call(list(argv), input, float(timeout_s), check)


def _complete(call: Call, reply: Reply) -> Completed:
    if reply.raises is not None:
        raise reply.raises
    done = Completed(call.argv, reply.returncode, reply.stdout, reply.stderr, 0.0)
    if call.check and reply.returncode != 0:
        raise CommandError(call.argv, reply.returncode, reply.stderr or reply.stdout)
    return done


class FakeRunner:
    """A CommandRunner answering from replies queued per program (first in, first out).

    >>> runner = FakeRunner()
    >>> runner.reply("sbatch", stdout="42\\n")
    >>> runner(["sbatch", "--parsable"], input="#!/bin/sh\\n", timeout_s=5).stdout
    '42\\n'
    >>> runner.calls[0].input
    '#!/bin/sh\\n'

    A call with no queued reply goes to ``handler`` if one was given, else
    raises :class:`UnexpectedCall`. As with :func:`nodetunnel.proc.run`, a
    non-zero exit raises ``CommandError`` when the caller passed ``check=True``.
    """

    def __init__(self, handler: Callable[[Call], Reply] | None = None) -> None:
        self.handler = handler
        self.calls: list[Call] = []
        self._replies: defaultdict[str, deque[Reply]] = defaultdict(deque)

    def reply(
        self,
        program: str,
        stdout: str = "",
        stderr: str = "",
        returncode: int = 0,
        *,
        raises: BaseException | None = None,
    ) -> None:
        """Queue the answer to the next call of ``program``."""
        self._replies[program].append(Reply(stdout, stderr, returncode, raises))

    def calls_to(self, program: str) -> list[Call]:
        return [c for c in self.calls if c.program == program]

    def pending(self) -> dict[str, int]:
        """Replies queued but not used yet, per program (a test can assert it is empty)."""
        return {p: len(q) for p, q in self._replies.items() if q}

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float,
        check: bool = True,
    ) -> Completed:
        call = _record(argv, input, timeout_s, check)
        self.calls.append(call)
        queue = self._replies.get(call.program)
        if queue:
            reply = queue.popleft()
        elif self.handler is not None:
            reply = self.handler(call)
        else:
            raise UnexpectedCall(f"no reply scripted for {shlex.join(call.argv)!r}")
        return _complete(call, reply)


@dataclasses.dataclass
class FakeJob:
    """A job inside :class:`FakeSlurm`."""

    job_id: str
    script: str
    directives: dict[str, str]
    state: JobState = JobState.PENDING
    nodelist: str = ""
    reason: str = "Priority"
    time_left: str = "UNLIMITED"
    start: str = "N/A"
    user: str = "alice"
    priority: int = 0  # 0: by age, as SLURM's basic priority (older jobs first)

    @property
    def name(self) -> str:
        return self.directives.get("job-name", "sbatch")


_FORMAT_FIELD = re.compile(r"%[.\-]?[0-9]*([A-Za-z])")


class FakeSlurm:
    """An in-memory SLURM behind the CommandRunner interface.

    ``sbatch`` reads the ``#SBATCH`` lines of the script on stdin (until the
    first command, as sbatch does), refuses an unknown partition or more GPUs
    per node than ``gpus_per_node`` with sbatch's own messages, and queues the
    job as PENDING (or RUNNING on the first node with ``auto_start``).
    ``squeue --jobs``/``--format``/``--start``/``--states``/``--partition``/``--sort=-p,i``,
    ``scancel`` and ``sinfo`` answer from that state; :meth:`queue_job` adds another
    user's pending job (ahead of later ones, or by its ``priority``). Every call is
    recorded in :attr:`calls`.
    """

    def __init__(
        self,
        *,
        partitions: Sequence[str] = ("cpu", "gpu"),
        nodes: Sequence[str] = ("node1", "node2"),
        gpus_per_node: int = 1,
        user: str = "alice",
        auto_start: bool = False,
        first_job_id: int = 1000,
        on_call: Callable[[Call, FakeSlurm], None] | None = None,
    ) -> None:
        self.partitions = list(partitions)
        self.nodes = list(nodes)
        self.gpus_per_node = gpus_per_node
        self.user = user
        self.auto_start = auto_start
        self.jobs: dict[str, FakeJob] = {}
        self.calls: list[Call] = []
        self._next_id = first_job_id
        self.on_call = on_call
        self._failures: defaultdict[str, deque[Reply]] = defaultdict(deque)

    # -- what a test does to the cluster -----------------------------------------
    def start(self, job_id: str, nodelist: str | None = None, time_left: str = "59:58") -> None:
        """The job begins RUNNING on ``nodelist`` (default: the first node)."""
        job = self.jobs[job_id]
        job.state, job.reason, job.time_left = JobState.RUNNING, "None", time_left
        job.nodelist = nodelist or self.nodes[0]
        job.start = "2026-01-01T00:00:00"

    def finish(
        self, job_id: str, state: JobState = JobState.COMPLETED, reason: str = "None"
    ) -> None:
        """The job ends with ``state``; squeue keeps showing it until :meth:`forget`."""
        job = self.jobs[job_id]
        job.state, job.reason = state, reason

    def queue_job(self, *, user: str = "bob", partition: str | None = None, priority: int = 0,
                  reason: str = "Priority", start: str = "N/A") -> str:  # fmt: skip
        """Another job enters the queue, PENDING (e.g. another user's, ahead of ours)."""
        job_id = str(self._next_id)
        self._next_id += 1
        directives = {"partition": partition or self.partitions[0], "job-name": "other"}
        self.jobs[job_id] = FakeJob(job_id, "", directives, reason=reason, start=start,
                                    user=user, priority=priority)  # fmt: skip
        return job_id

    def forget(self, job_id: str) -> None:
        """The controller purges the job: squeue no longer knows it."""
        del self.jobs[job_id]

    def fail_next(self, program: str, times: int = 1, *, raises: BaseException | None = None,
                  stderr: str = "slurm_load_jobs error: Socket timed out on send/recv operation\n",
                  ) -> None:  # fmt: skip
        """The next ``times`` calls of ``program`` fail as a busy controller's do (or raise)."""
        for _ in range(times):
            self._failures[program].append(Reply(stderr=stderr, returncode=1, raises=raises))

    def count(self, program: str) -> int:
        """How many times ``program`` was called."""
        return sum(1 for c in self.calls if c.program == program)

    # -- the CommandRunner interface ---------------------------------------------
    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float,
        check: bool = True,
    ) -> Completed:
        call = _record(argv, input, timeout_s, check)
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call, self)
        failures = self._failures.get(call.program)
        if failures:
            return _complete(call, failures.popleft())
        handlers = {
            "sbatch": self._sbatch,
            "squeue": self._squeue,
            "scancel": self._scancel,
            "sinfo": self._sinfo,
        }
        handler = handlers.get(call.program)
        if handler is None:
            reply = Reply(stderr=f"sh: 1: {call.program}: not found\n", returncode=127)
        else:
            reply = handler(call)
        return _complete(call, reply)

    def _sbatch(self, call: Call) -> Reply:
        script = call.input or ""
        directives: dict[str, str] = {}
        for line in script.splitlines():
            if line.startswith("#SBATCH"):
                for word in shlex.split(line[len("#SBATCH") :], comments=True):
                    name, _, value = word.lstrip("-").partition("=")
                    directives[name] = value
            elif line.strip() and not line.lstrip().startswith("#"):
                break
        partition = directives.get("partition", self.partitions[0])
        if partition not in self.partitions:
            return Reply(
                stderr=f"sbatch: error: invalid partition specified: {partition}\n"
                "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
                returncode=1,
            )
        gres = re.fullmatch(r"gpu(?::[^:]+)?:([0-9]+)", directives.get("gres", "gpu:0"))
        if gres is not None and int(gres[1]) > self.gpus_per_node:
            return Reply(
                stderr="sbatch: error: Batch job submission failed: "
                "Requested node configuration is not available\n",
                returncode=1,
            )
        job_id = str(self._next_id)
        self._next_id += 1
        self.jobs[job_id] = FakeJob(job_id, script, directives, user=self.user)
        if self.auto_start:
            self.start(job_id)
        return Reply(stdout=f"{job_id}\n")

    def _squeue(self, call: Call) -> Reply:
        opts = _options(call.argv[1:])
        wanted = opts.get("jobs", "")
        ids = [j for j in wanted.split(",") if j] if wanted else list(self.jobs)
        fmt = opts.get("format", "%i %T")
        if "start" in opts:
            ids = [j for j in ids if j in self.jobs and self.jobs[j].state is JobState.PENDING]
        if wanted and ids and not any(j in self.jobs for j in ids) and len(ids) == 1:
            return Reply(stderr="slurm_load_jobs error: Invalid job id specified\n", returncode=1)
        visible = [self.jobs[j] for j in ids if j in self.jobs]
        states = opts.get("states", "PENDING" if "start" in opts else None)
        if states is None:
            visible = [j for j in visible if j.state.active]
        elif states.lower() != "all":
            wanted_states = {_STATE_CODES.get(w.upper(), w.upper()) for w in states.split(",")}
            visible = [j for j in visible if j.state.value in wanted_states]
        if opts.get("partition"):
            asked = set(opts["partition"].split(","))
            visible = [j for j in visible if asked & set(self._partition(j).split(","))]
        if opts.get("sort") == "-p,i":  # priority first, then the older job (smaller id)
            visible.sort(key=lambda j: (-self._priority(j), int(j.job_id.split("_")[0])))
        elif opts.get("sort"):
            raise UnexpectedCall(f"FakeSlurm cannot sort by {opts['sort']!r}")
        return Reply(stdout="".join(_format(fmt, job, self._partition(job)) + "\n"
                                    for job in visible))  # fmt: skip

    def _partition(self, job: FakeJob) -> str:
        return job.directives.get("partition") or self.partitions[0]

    @staticmethod
    def _priority(job: FakeJob) -> int:
        # SLURM's basic priority falls with each new job: the older, the higher.
        return job.priority or -int(job.job_id.split("_")[0])

    def _scancel(self, call: Call) -> Reply:
        opts = _options([w for w in call.argv[1:] if w.startswith("-")])
        if "name" in opts:  # scancel --me --name=NAME
            for named in self.jobs.values():
                if named.name == opts["name"] and named.state.active:
                    named.state = JobState.CANCELLED
            return Reply()
        for job_id in call.argv[1:]:
            if not re.fullmatch(r"[0-9]+(_[0-9]+)?", job_id):
                return Reply(stderr=f"scancel: error: Invalid job id {job_id}\n", returncode=1)
            job = self.jobs.get(job_id)
            if job is not None and job.state.active:
                job.state = JobState.CANCELLED
        return Reply()

    def _sinfo(self, call: Call) -> Reply:
        return Reply(stdout="".join(f"{p}\n" for p in self.partitions))


def _options(args: Sequence[str]) -> dict[str, str]:
    """``--name=value`` / ``--flag`` / ``-x value`` words as a dict (squeue's short forms too)."""
    short = {"-j": "jobs", "-o": "format", "-t": "states", "-h": "noheader", "-p": "partition",
             "-S": "sort"}  # fmt: skip
    opts: dict[str, str] = {}
    words = list(args)
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            opts[name] = value
        elif word in short:
            takes_value = word != "-h"
            opts[short[word]] = words.pop(0) if takes_value and words else ""
    return opts


#: squeue's short state names (``--states=PD``), as far as the fake needs them.
_STATE_CODES = {"PD": "PENDING", "R": "RUNNING", "CG": "COMPLETING", "CD": "COMPLETED",
                "CA": "CANCELLED", "F": "FAILED", "TO": "TIMEOUT"}  # fmt: skip


def _format(fmt: str, job: FakeJob, partition: str = "") -> str:
    fields = {
        "i": job.job_id,
        "T": job.state.value,
        "N": job.nodelist,
        "r": job.reason,
        "L": job.time_left,
        "S": job.start,
        "u": job.user,
        "j": job.name,
        "P": partition or job.directives.get("partition", ""),
        "Q": str(job.priority),
    }
    return _FORMAT_FIELD.sub(lambda m: fields.get(m[1], m[0]), fmt)
