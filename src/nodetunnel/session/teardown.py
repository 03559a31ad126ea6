"""A session's clean-up: tunnel, job, remote and local directories, connections, record.

Every step runs even if an earlier one fails, and a second Ctrl-C cannot cut it
short; what could not be done is raised at the end, in one error that says
what may be left (a job that may still run is named, with the command to end it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from typing import TYPE_CHECKING

from ..errors import NodetunnelError
from . import sshhosts
from .remote import remove_dirs
from .tunnel import sigint_deferred

if TYPE_CHECKING:
    from .lifecycle import Session


def close_session(session: Session) -> None:
    """Tear ``session`` down in reverse order (see :meth:`Session.close`)."""
    problems: list[str] = []
    # --keep keeps a session whose app was ready; a start that failed, timed out or was
    # interrupted has nothing to come back to, so its job is cancelled all the same.
    keep = session.req.keep and not session.job_ended and session.info is not None
    with sigint_deferred(), session.transport.shielded():
        if session.req.keep and session.info is None and session._submitted:
            session._notice("the app never became ready, so its job is cancelled (--keep "
                            "keeps only a session that started)")  # fmt: skip
        if session.tunnel is not None:
            proc = session.tunnel.proc
            try:
                session.tunnel.stop(timeout_s=3)
            except NodetunnelError as exc:
                pid = proc.pid if proc else "?"
                problems.append(f"the tunnel (PID {pid}): {exc.message}")
            session.tunnel = None
        if session.requeued and session.job_id is not None:
            try:
                session.scheduler.cancel(session.job_id)
            except NodetunnelError as exc:
                problems.append(f"requeued job {session.job_id} may run again: {exc.message}")
        elif session._submitted and not keep and not session.job_ended:
            try:
                if session.job_id is not None:
                    session._say(f"cancelling job {session.job_id}")
                    session.scheduler.cancel(session.job_id)
                else:
                    session.scheduler.cancel_named(session.job_name)
            except NodetunnelError as exc:
                what = session.job_id or f"named {session.job_name}"
                problems.append(f"job {what} may still be running: {exc.message}")
        if session.session_dir and not keep:
            with contextlib.suppress(NodetunnelError):
                remove_dirs(session.transport, [session.session_dir])
        if session._connected:
            session.transport.close()
        shutil.rmtree(session.local_dir, ignore_errors=True)
        if session.store is not None and session.record is not None:
            try:
                if keep:  # the job runs on, detached: 'nodetunnel attach' resumes it
                    session.store.save(dataclasses.replace(
                        session.record, pid=None, pid_start=None, tunnel_pid=None,
                        tunnel_start=None))  # fmt: skip
                else:
                    session.store.remove(session.session_id)
                    sshhosts.sync(session.store)
            except (NodetunnelError, OSError) as exc:
                problems.append(f"the session record: {exc}")
    if problems:
        raise NodetunnelError(
            "clean-up incomplete: " + "; ".join(problems),
            hint=session.scheduler.leftover_hint(),
        )
