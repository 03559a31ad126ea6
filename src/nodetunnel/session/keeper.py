"""Keeping a started session: the watch loop, reconnects, the walltime warning, the lease.

:func:`watch` runs in whichever process keeps the session (the foreground
command or the detached keeper) until the job ends, and returns why it ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import TYPE_CHECKING

from ..errors import NodetunnelError, PortInUse, SshError, WaitTimeout
from ..events import ENDED, WALLTIME_WARNING
from ..proc import NotReady, wait_until
from ..scheduler.base import JobState
from ..transport.terminal import has_terminal
from .tunnel import choose_local_port

if TYPE_CHECKING:
    from .lifecycle import Session
    from .model import SessionInfo

FAST_RECONNECT_S = 300.0  # retried about every second for this long, then less often
SLOW_RECONNECT_INTERVAL_S = 15.0
RECONNECT_ATTEMPT_S = 4.0
HEARTBEAT_RETRY_S = 5.0
HEALTH_PROBE_S = 10.0  # an HTTP request through the tunnel this often
HEALTH_PROBE_TIMEOUT_S = 5.0
HEALTH_PROBE_FAILURES = 2  # unanswered in a row: the tunnel is re-opened
# The loop sleeps until its next task (a health probe, a lease check-in, the job check, the
# time-limit warning) or the tunnel's ssh exits, whichever comes first, and at most this long.
POLL_S = 5.0
# A job that ran and is back in the queue (requeued): its app is lost.
_REQUEUED = frozenset(
    {JobState.PENDING, JobState.REQUEUED, JobState.REQUEUE_HOLD, JobState.REQUEUE_FED}
)
_END_WORDS = {
    JobState.TIMEOUT: "reached its time limit",
    JobState.CANCELLED: "was cancelled",
    JobState.NODE_FAIL: "ended because its node failed",
    JobState.PREEMPTED: "was preempted",
    JobState.OUT_OF_MEMORY: "ran out of memory",
    JobState.COMPLETED: "ended (the app exited)",
    JobState.FAILED: "failed (the app exited with an error)",
}


def heartbeat_interval_s(lease_s: float) -> float:
    """How often a keeper checks in: three times per lease, at most every 5 minutes."""
    return min(300.0, max(2.0, lease_s / 3))


def _duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def walltime_warning(job_id: str, walltime_end: float) -> str:
    at = time.strftime("%H:%M", time.localtime(walltime_end))
    left = _duration_text(walltime_end - time.time())
    return (
        f"job {job_id} reaches its time limit in {left} (at {at}): SLURM will end it "
        "then, so save your work"
    )


def job_end_message(job_id: str, state: JobState) -> str:
    words = _END_WORDS.get(state, "ended")
    return f"job {job_id} {words} ({state.value}); the session is over"


class NeedsYou(NodetunnelError):
    """A new login asks for something (an MFA code) that no terminal here can answer."""


def needs_you(session: Session, exc: NodetunnelError) -> None:
    """Raise :class:`NeedsYou` if ``exc`` is a refused login a keeper cannot redo alone."""
    if isinstance(exc, SshError) and exc.message.startswith("authentication") \
            and session.req.keep and not has_terminal():  # fmt: skip
        raise NeedsYou(exc.message, hint=f"run 'nodetunnel attach {session.session_id}'") from exc


#: A job that ends in these states ended the way its user meant (stopped, or the app quit);
#: any other end (the time limit, a node failure, the lease, a lost tunnel) is unexpected.
EXPECTED_ENDS = frozenset({JobState.CANCELLED, JobState.COMPLETED})


def watch(session: Session, *, poll_s: float = POLL_S) -> str:
    """:func:`keep_up`; return why the session ended (an ``ended`` event says it too, with
    whether it was expected). Ctrl-C propagates; an error ends the session with an
    unexpected ``ended`` event, then propagates.

    A keeper that needs a login it cannot do stops, and the job runs on: the record
    then says so ('needs you' in ``nodetunnel list``); ``nodetunnel attach`` logs in
    from a terminal and hands the session to a keeper again.
    """
    try:
        why, state, lease_end = keep_up(session, poll_s=poll_s)
    except NeedsYou as exc:
        if session.store is not None and session.record is not None:
            session.record = dataclasses.replace(session.record, needs="attach")
            session.store.save(session.record)
        return (f"session {session.session_id} needs you: {exc.message}; the job keeps "
                f"running: run `nodetunnel attach {session.session_id}` in a terminal")  # fmt: skip
    except NodetunnelError as exc:
        session._emit(ENDED, state=None, expected=False, message=exc.message)
        raise
    expected = state in EXPECTED_ENDS and not lease_end
    session._emit(ENDED, state=state.value, expected=expected, message=why)
    return why


def keep_up(session: Session, *, poll_s: float = POLL_S) -> tuple[str, JobState, bool]:
    """Keep the tunnel up until the job ends; return why it ended, the job's last state and
    whether its lease ended it. Ctrl-C propagates.

    The tunnel's own failure is the main signal: keepalives end it when the
    path dies, and where pam_slurm_adopt is used the job's end ends it too.
    The scheduler is asked then, and otherwise every ``job_check_interval_s`` (a
    minute by default). An HTTP probe through the tunnel every few seconds
    catches a tunnel whose ssh lives on but forwards nothing. A dropped
    tunnel is re-opened on the same local port, so the browser tab keeps
    working. Along the way: the warning before the time limit, and the lease
    check-ins.
    """
    info, tunnel = session.info, session.tunnel
    if info is None or session.job_id is None or tunnel is None:
        raise RuntimeError("watch() needs a started session")
    req = session.req
    job_id = session.job_id
    next_check = time.monotonic() + req.job_check_interval_s
    if session.record is not None:
        end = session.record.walltime_end
    else:
        end = time.time() + info.time_left_s if info.time_left_s else None
    warn_at = end - req.warn_before_s if end and req.warn_before_s else None
    session.next_beat = time.monotonic() if req.lease_s else math.inf
    next_probe, unanswered = time.monotonic() + HEALTH_PROBE_S, 0
    while True:
        if tunnel.alive() and time.monotonic() >= next_probe:
            # A live ssh is not proof of a working tunnel (a frozen process, a half-dead path).
            next_probe = time.monotonic() + HEALTH_PROBE_S
            unanswered = 0 if tunnel.answers(HEALTH_PROBE_TIMEOUT_S) else unanswered + 1
            if unanswered >= HEALTH_PROBE_FAILURES:
                session._notice("the tunnel stopped answering; re-opening it")
                tunnel.stop_quietly()
                unanswered = 0
        if tunnel.alive():
            if warn_at is not None and end is not None and time.time() >= warn_at:
                warn_at = None
                session._notice(walltime_warning(job_id, end))
                session._emit(WALLTIME_WARNING, time_left_s=max(0, round(end - time.time())),
                              message=walltime_warning(job_id, end))  # fmt: skip
            beat_if_due(session)
            now = time.monotonic()
            if now < next_check:
                wake = min(next_check, next_probe, session.next_beat)
                if warn_at is not None:
                    wake = min(wake, now + warn_at - time.time())
                tunnel.wait_gone(min(poll_s, max(0.0, wake - now)))
                continue
            next_check = time.monotonic() + req.job_check_interval_s
        finished = job_end(session, job_id)
        if finished:
            session.job_ended = True
            return finished
        if tunnel.alive():
            continue
        reconnect(session, info)


def beat_if_due(session: Session, *, timeout_s: float = 30) -> None:
    """Check in for the lease when it is time (the job ends itself without check-ins)."""
    lease_s = session.req.lease_s
    if lease_s is None or time.monotonic() < session.next_beat:
        return
    try:
        session.remote.beat(timeout_s=timeout_s)
    except NodetunnelError as exc:
        session._notice(f"could not check in for the lease (will retry): {exc.message}")
        session.next_beat = time.monotonic() + HEARTBEAT_RETRY_S
        return
    session.next_beat = time.monotonic() + heartbeat_interval_s(lease_s)


def job_finished(session: Session, job_id: str) -> str | None:
    """Why the job has ended, or None if it runs or the scheduler cannot be asked now."""
    end = job_end(session, job_id)
    return end[0] if end else None


def job_end(session: Session, job_id: str) -> tuple[str, JobState, bool] | None:
    """Why the job has ended, its state, and whether its lease ended it; or None if it runs
    or the scheduler cannot be asked now."""
    try:
        status = session.scheduler.status_of(job_id)
    except NodetunnelError as exc:  # no network, a busy controller: ask again later
        needs_you(session, exc)
        if not isinstance(exc, SshError):
            session._notice(f"could not ask SLURM about job {job_id} (will retry): {exc.message}")
        return None
    if status.state in _REQUEUED:  # watch() runs only after the job ran
        session.requeued = True
        return (f"job {job_id} was requeued by SLURM ({status.state.value}); its app is "
                "gone, so nodetunnel cancels it", status.state, False)  # fmt: skip
    if not status.state.finished:
        return None
    why = job_end_message(job_id, status.state)
    if status.state == JobState.CANCELLED and session.req.lease_s:
        with contextlib.suppress(NodetunnelError):
            ended = session.ended_reason()  # written by the job when its lease expired
            if ended:
                return f"job {job_id} ended: {ended}", status.state, True
    return why, status.state, False


def reconnect(session: Session, info: SessionInfo) -> None:
    """Re-open the dropped tunnel on the same local port (or a free one if it was taken)."""
    tunnel = session.tunnel
    if tunnel is None:
        raise RuntimeError("reconnect() needs a session with a tunnel")
    session._notice("the tunnel dropped; reconnecting")
    started = time.monotonic()
    tunnel.stop_quietly()
    job_ended = False

    def attempt() -> bool:
        nonlocal job_ended
        beat_if_due(session, timeout_s=10)  # the login node may answer while the node does not
        try:
            # A short attempt: one started while the path was down may wait on TCP
            # retransmissions long after it is back; a fresh one connects at once.
            tunnel.open(info.local_port, reach_timeout_s=RECONNECT_ATTEMPT_S)
        except PortInUse as exc:
            tunnel.proc = None  # its ssh could not bind the port, and has exited
            old_port = info.local_port
            info.local_port = choose_local_port(None, avoid=[old_port])
            info.url = session.app.url(info.local_port, session.token)
            session._notice(f"port {old_port} was taken by another program meanwhile; the "
                            f"session moves to port {info.local_port}")  # fmt: skip
            raise NotReady(exc.message) from exc
        except NodetunnelError as exc:
            tunnel.stop_quietly()
            needs_you(session, exc)  # its login asks for a code: no try here can give one
            if job_finished(session, info.job_id):
                job_ended = True
                return True  # nothing to reconnect to; watch() reports the end
            raise NotReady(exc.message) from exc
        return True

    if session.req.keep:
        hint = "check your network; the job keeps running ('nodetunnel attach' comes back)"
    else:
        hint = "check your network; the job is cancelled now (start with --keep to keep it)"
    fast_s = min(session.reconnect_timeout_s, FAST_RECONNECT_S)
    try:
        # Short and jittered: the tab should work again within seconds of the network.
        wait_until(attempt, timeout_s=fast_s, what="the tunnel to come back",
                   interval_s=0.2, max_interval_s=1.0, jitter_s=0.3, hint=hint)  # fmt: skip
    except WaitTimeout:
        if session.reconnect_timeout_s <= fast_s:
            raise
        # A long outage (a laptop asleep, offline): keep trying, less often.
        session._notice(f"no tunnel for {fast_s / 60:.0f} min; trying every "
                        f"{SLOW_RECONNECT_INTERVAL_S:.0f} s until the job ends")  # fmt: skip
        wait_until(attempt, timeout_s=session.reconnect_timeout_s - fast_s,
                   what="the tunnel to come back", interval_s=SLOW_RECONNECT_INTERVAL_S,
                   max_interval_s=SLOW_RECONNECT_INTERVAL_S, jitter_s=2.0, hint=hint)  # fmt: skip
    if job_ended:
        return
    session.reconnects += 1
    session._notice(f"tunnel back after {time.monotonic() - started:.1f} s")
    proc = tunnel.proc
    if session.store is not None and session.record is not None and proc is not None:
        session.record = dataclasses.replace(
            session.record, tunnel_pid=proc.pid, tunnel_start=proc.start_ticks,
            reconnects=session.reconnects, local_port=info.local_port, url=info.url,
        )  # fmt: skip
        session.store.save(session.record)
