"""Starting a session: waiting for the job to run, then for its app to be ready.

Two ways, by where the app listens:

* **On the private socket** (the usual case): the socket's directory is named
  on the laptop (unguessable to other users) and written into the job script,
  so the tunnel can be opened as soon as the scheduler says the job runs on
  node N, while the app is still starting; readiness is the app answering
  through it. Nothing the node writes is read through the login host on this
  path, so a cached shared home (NFS) cannot delay it.
* **On a loopback port** (``--tcp``, an app that fell back to one): the port is
  chosen on the node, so its ``endpoint`` file is read from the session
  directory first.

A job that ends before its app is ready is reported with its reason and the
end of its log, read only once the scheduler says it ended (a name looked up
before it exists would be cached as missing).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import CommandTimeout, JobFailed, SchedulerError
from ..events import PENDING, RUNNING, SUBMITTED
from ..proc import NotReady, wait_until
from ..scheduler.base import JobState, JobStatus, PendingInfo
from .model import Endpoint

if TYPE_CHECKING:
    from .lifecycle import Session

RUNNING_CHECK_S = 2.0  # while a running job's app starts: how often the scheduler is asked
ENDPOINT_FIRST_S = 8.0  # the endpoint file (a fallback to a port) is first read after this...
ENDPOINT_CHECK_S = 3.0  # ... then this often (never sooner: a missing name may get cached)
TRANSIENT_FAILURES = 5  # scheduler errors in a row during the start before it gives up
# Most jobs on a free partition start within a second or two of sbatch, and the tunnel is
# opened the moment the job is seen running: for this long it is asked this often...
FIRST_POLLS_S = 2.0
FIRST_POLL_EVERY_S = 0.15
UNSHARED_POLL_EVERY_S = 0.3  # ...where connections are not shared, from this, growing at once
EAGER_PENDING_S = 60.0  # a pending job is asked about often for this long (it may start soon)...
PATIENT_QUERY_S = 30.0  # ...then at most this often, while its endpoint file is looked at
# The queue (the partition's pending jobs: position, estimate) is asked only with a pending
# poll: first once the job has waited this long (most jobs start before), then again when the
# reason changes or this long has passed (SLURM's estimate is N/A until its backfill pass).
QUEUE_FIRST_S = 2.0
QUEUE_EVERY_S = 15.0
_HINT = "the cluster may be busy: raise --timeout, or ask for fewer resources"


class Fallback(Exception):
    """The app fell back from the socket to a loopback port: re-open the tunnel there."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint.remote)
        self.endpoint = endpoint


class Watch:
    """The scheduler's view of a starting job, asked politely; failures become JobFailed."""

    def __init__(self, session: Session, job_id: str) -> None:
        self.session = session
        self.job_id = job_id
        self.last_line = ""
        self.failures = 0
        self.submitted = time.monotonic()
        self.deadline = self.submitted + session.req.start_timeout_s
        self._shown: tuple[str, PendingInfo | None] | None = None  # what the last line said
        self._place: PendingInfo | None = None  # the job's place in the queue, when last asked
        self._place_asked = (-math.inf, "")  # when, and the reason then
        self._running_told = False
        session._emit(SUBMITTED, elapsed_s=0.0)

    def left_s(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def elapsed_s(self) -> float:
        """Seconds since the job was submitted (tenths)."""
        return round(time.monotonic() - self.submitted, 1)

    def place(self, status: JobStatus) -> PendingInfo | None:
        """The pending job's place in the queue, asked at a bounded rate (see QUEUE_EVERY_S)."""
        now, reason = time.monotonic(), status.reason or ""
        if now - self.submitted < QUEUE_FIRST_S:
            return None
        asked_at, asked_reason = self._place_asked
        if now - asked_at >= QUEUE_EVERY_S or reason != asked_reason:
            self._place_asked = (now, reason)
            with contextlib.suppress(SchedulerError, CommandTimeout):  # informational only
                self._place = self.session.scheduler.pending_info(self.job_id)
        return self._place

    def show(self, status: JobStatus) -> None:
        """A progress line and an event, only when what they say has changed."""
        session = self.session
        waiting = status.state.active and status.state not in _STARTED and not self._running_told
        place = self.place(status) if status.state is JobState.PENDING else None
        shown = (status.describe(), place)
        if shown == self._shown:
            return
        self._shown = shown
        self.last_line = f"job {self.job_id}: {status.describe()}"
        if place is not None and place.describe():
            self.last_line += f", {place.describe()}"
        if waiting:
            self.last_line += f" (waiting {self.elapsed_s():.0f} s)"
        session._say(self.last_line)
        if waiting:
            session._emit(PENDING, state=status.state.value, reason=status.reason,
                          estimated_start=place.estimated_start if place else None,
                          position=place.position if place else None,
                          pending_in_partition=place.pending_in_partition if place else None,
                          partition=place.partition if place else None,
                          elapsed_s=self.elapsed_s())  # fmt: skip
        elif status.state is JobState.RUNNING and status.node and not self._running_told:
            self._running_told = True
            session._emit(RUNNING, node=status.node, elapsed_s=self.elapsed_s())

    def ask(self) -> JobStatus:
        """The scheduler's view, as a progress line; a job that ended raises JobFailed."""
        session, job_id = self.session, self.job_id
        try:
            status = session.scheduler.status_of(job_id)
        except (SchedulerError, CommandTimeout) as exc:
            self.failures += 1
            if self.failures >= TRANSIENT_FAILURES:
                raise
            session._notice(f"could not ask about job {job_id} (will retry): {exc.message}")
            raise NotReady(exc.message) from exc
        self.failures = 0
        self.show(status)
        # COMPLETING: the job's script has ended and SLURM is cleaning up, which can take
        # seconds; the app will not start, so that is reported at once.
        if status.state.finished or status.state is JobState.COMPLETING:
            raise self.failed(status)
        return status

    def ask_patiently(self) -> JobStatus:
        """One query while the job has waited long: the partition's pending jobs (its place,
        SLURM's estimate) show that it still waits; only a job no longer among them is
        asked about (it started or ended), so the scheduler is asked once, not twice."""
        try:
            place = self.session.scheduler.pending_info(self.job_id)
        except (SchedulerError, CommandTimeout):
            place = None  # the job's own state is asked instead (a failure counted there)
        if place is None:
            return self.ask()
        self.failures = 0
        self._place, self._place_asked = place, (time.monotonic(), place.reason or "")
        status = JobStatus(self.job_id, JobState.PENDING, reason=place.reason,
                           state_raw=JobState.PENDING.value)  # fmt: skip
        self.show(status)
        return status

    def failed(self, status: JobStatus) -> JobFailed:
        """The job ended before its app was ready: why (its ``error`` file), and its log."""
        remote = self.session.remote
        error = remote.error()  # looked up only now that it exists, if ever
        tail = remote.log_tail()
        reason = (error or "").strip() or f"the job ended ({status.state.value})"
        return JobFailed(
            self.job_id,
            status.state.value,
            message=f"job {self.job_id} failed before the app was ready: {reason}"
            + (f"\n--- end of the job log ---\n{tail}" if tail else ""),
            hint="fix the cause above and run the command again",
        )


def wait_running(watch: Watch) -> JobStatus:
    """Until the job runs. Polite while it waits in the queue: the scheduler is asked every
    0.15 s for the first 2 s (when most jobs start; with connection sharing only), then
    with a backoff up to 3 s for the first minute, then only every 30 s (sites limit how
    often users ask), with one query (see :meth:`Watch.ask_patiently`); in between, the
    endpoint file is looked at, so a start is still seen within seconds.
    A failed question is asked again; only several in a row end the start."""
    started = time.monotonic()
    last_query = -math.inf
    session = watch.session

    def runs() -> JobStatus:
        nonlocal last_query
        now = time.monotonic()
        patient = now - started >= EAGER_PENDING_S
        if patient and now - last_query < PATIENT_QUERY_S and session.remote.endpoint() is None:
            raise NotReady(watch.last_line)
        last_query = now
        status = watch.ask_patiently() if patient else watch.ask()
        if status.state != JobState.RUNNING:
            raise NotReady(watch.last_line)
        return status

    # Eager only where each question rides the shared connection; without sharing, each
    # is a login at every hop (and a prompt where a hop asks for a code).
    eager = session.req.cluster.multiplex
    return wait_until(runs, timeout_s=session.req.start_timeout_s, what=_what(watch),
                      interval_s=FIRST_POLL_EVERY_S if eager else UNSHARED_POLL_EVERY_S,
                      eager_s=FIRST_POLLS_S if eager else 0.0,
                      max_interval_s=3.0, hint=_HINT)  # fmt: skip


def wait_published(watch: Watch, status: JobStatus) -> tuple[JobStatus, Endpoint]:
    """Until the running job's app publishes its endpoint (read about every 0.2-1 s; the
    scheduler is asked every few seconds, to notice a job that died meanwhile)."""
    asked = time.monotonic()

    def published() -> tuple[JobStatus, Endpoint]:
        nonlocal status, asked
        if time.monotonic() - asked >= RUNNING_CHECK_S:
            status, asked = watch.ask(), time.monotonic()
        endpoint = watch.session.remote.endpoint()
        if endpoint is not None:
            return status, endpoint
        raise NotReady(f"job {watch.job_id} runs; its app has not published its endpoint yet")

    return wait_until(published, timeout_s=watch.left_s(), what=_what(watch),
                      interval_s=0.2, max_interval_s=1.0, hint=_HINT)  # fmt: skip


def while_starting(watch: Watch) -> Callable[[], None]:
    """A check for the tunnel's readiness loop: the job still runs, the app did not fall back.

    Raises JobFailed (the job ended) or :class:`Fallback` (the endpoint says a port).
    """
    asked = time.monotonic()
    looked = asked + ENDPOINT_FIRST_S - ENDPOINT_CHECK_S

    def check() -> None:
        nonlocal asked, looked
        now = time.monotonic()
        if now - asked >= RUNNING_CHECK_S:
            asked = now
            with contextlib.suppress(NotReady):  # a failed question: asked again later
                watch.ask()
        if now - looked >= ENDPOINT_CHECK_S:
            looked = now
            endpoint = watch.session.remote.endpoint()
            if endpoint is not None and endpoint.socket is None:
                raise Fallback(endpoint)

    return check


# Past the queue: once seen in these states, a job is no longer "waiting" (pending events end).
_STARTED = frozenset({JobState.RUNNING, JobState.COMPLETING})


def _what(watch: Watch) -> str:
    return f"job {watch.job_id} to start the app"
