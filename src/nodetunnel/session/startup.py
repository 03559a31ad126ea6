"""Starting a session: waiting for the job to run and for its app to say where it listens."""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING

from ..errors import CommandTimeout, JobFailed, SchedulerError
from ..proc import NotReady, wait_until
from ..scheduler.base import JobState, JobStatus
from .model import Endpoint

if TYPE_CHECKING:
    from .lifecycle import Session

RUNNING_CHECK_S = 3.0  # while a running job's app starts: how often the scheduler is asked
TRANSIENT_FAILURES = 5  # scheduler errors in a row during the start before it gives up
EAGER_PENDING_S = 60.0  # a pending job is asked about often for this long (it may start soon)...
PATIENT_QUERY_S = 30.0  # ...then at most this often, while its endpoint file is looked at


def wait_for_endpoint(session: Session, job_id: str) -> tuple[JobStatus, Endpoint]:
    """Wait for the job to run, then for its app to publish where it listens.

    While the job waits in the queue, the scheduler is asked with a backoff
    up to 3 s for the first minute, then only every 30 s (sites limit how
    often users query the controller); in between, the session directory is
    looked at for the endpoint, so a job that starts is still noticed within
    seconds. Once it runs, the endpoint file is read about every 0.2-1 s
    (the app is moments away) and the scheduler is asked only every few
    seconds, to notice a job that died meanwhile. A failed question (a busy
    controller, a slow network) is asked again; only several in a row end
    the start, so a job that queued for hours is not lost to one hiccup.
    """
    last_line = ""
    failures = 0
    deadline = time.monotonic() + session.req.start_timeout_s

    def ask() -> JobStatus:
        """The scheduler's view, as a progress line; a job or app that failed raises JobFailed."""
        nonlocal last_line, failures
        try:
            status = session.scheduler.status_of(job_id)
        except (SchedulerError, CommandTimeout) as exc:
            failures += 1
            if failures >= TRANSIENT_FAILURES:
                raise
            session._notice(f"could not ask about job {job_id} (will retry): {exc.message}")
            raise NotReady(exc.message) from exc
        failures = 0
        line = f"job {job_id}: {status.describe()}"
        if line != last_line:
            last_line = line
            if status.state == JobState.PENDING:  # one estimate per change of reason
                with contextlib.suppress(SchedulerError, CommandTimeout):
                    estimate = session.scheduler.start_estimate(job_id)
                    if estimate:
                        line += f", expected to start {estimate}"
            session._say(line)
        error = session.remote.error() if status.state != JobState.PENDING else None
        if error or status.state.finished:
            tail = session.remote.log_tail()
            reason = (error or "").strip() or f"the job ended ({status.state.value})"
            raise JobFailed(
                job_id,
                status.state.value,
                message=f"job {job_id} failed before the app was ready: {reason}"
                + (f"\n--- end of the job log ---\n{tail}" if tail else ""),
                hint="fix the cause above and run the command again",
            )
        return status

    started = time.monotonic()
    last_query = -math.inf

    def runs() -> JobStatus:
        nonlocal last_query
        now = time.monotonic()
        patient = now - started >= EAGER_PENDING_S
        if patient and now - last_query < PATIENT_QUERY_S and session.remote.endpoint() is None:
            raise NotReady(last_line)
        last_query = now
        status = ask()
        if status.state != JobState.RUNNING:
            raise NotReady(last_line)
        return status

    hint = "the cluster may be busy: raise --timeout, or ask for fewer resources"
    what = f"job {job_id} to start the app"
    status = wait_until(runs, timeout_s=session.req.start_timeout_s, what=what,
                        interval_s=0.3, max_interval_s=3.0, hint=hint)  # fmt: skip
    asked = time.monotonic()

    def published() -> tuple[JobStatus, Endpoint]:
        nonlocal status, asked
        if time.monotonic() - asked >= RUNNING_CHECK_S:
            status, asked = ask(), time.monotonic()
        endpoint = session.remote.endpoint()
        if endpoint is not None:
            return status, endpoint
        raise NotReady(f"job {job_id} runs; its app has not published its endpoint yet")

    return wait_until(published, timeout_s=max(1.0, deadline - time.monotonic()),
                      what=what, interval_s=0.2, max_interval_s=1.0, hint=hint)  # fmt: skip
