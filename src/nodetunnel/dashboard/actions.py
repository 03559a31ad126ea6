"""The dashboard's buttons, each the library call the CLI makes for the same command.

Start is ``nodetunnel APP --detach`` (:class:`~nodetunnel.session.Session`, then
:meth:`~nodetunnel.session.Session.detach` to a background keeper), notifying as it
does: this process while the job waits and starts, the keeper (``--notify`` or
``--no-notify``, from the form) afterwards; Stop is
``nodetunnel stop``; Open is ``nodetunnel open``; Copy ssh-config entry is
``nodetunnel ssh-config``; Logs is ``nodetunnel logs -f``. Blocking calls: the
web layer runs them in worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator

from ..apps import APPS
from ..apps.base import LoginForm
from ..errors import NodetunnelError, UsageError
from ..events import Event
from ..notify import Notifier, notify_setting, on_event, session_notifications
from ..proc import ProcessRef, spawn_reading
from ..session import LaunchRequest, Session, sshhosts
from ..session.fleet import (
    Connector,
    cluster_link,
    keeper_command,
    prepare_attach,
    stop_sessions,
)
from ..session.remote import job_log_argv
from ..state import SessionRecord, SessionStore
from ..transport.base import ClusterRef
from .board import Board

LOG_LINES = 200
log = logging.getLogger(__name__)
Keeper = Callable[..., tuple[list[str], dict[str, str]]]

_starting: dict[str, Session] = {}  # sessions being started or attached in worker threads
_starting_lock = threading.Lock()


def _run_session(board: Board, session: Session, sid: str,
                 steps: Callable[[Session], None]) -> None:  # fmt: skip
    """Run ``steps`` on ``session`` in a worker thread; the card shows how it went."""

    def run() -> None:
        try:
            with session:
                steps(session)
        except NodetunnelError as exc:
            board.start_failed(sid, one_line(exc))
        except Exception as exc:  # a worker thread must report, never vanish
            board.start_failed(sid, f"unexpected error: {exc!r}")
        else:
            board.start_done(sid)
        finally:
            with _starting_lock:
                _starting.pop(sid, None)

    with _starting_lock:
        _starting[sid] = session
    threading.Thread(target=run, name=f"session-{sid}", daemon=True).start()


def abandon_starts() -> list[str]:
    """When the dashboard exits: clean up after every start still under way (the job is
    cancelled, as Ctrl-C during 'nodetunnel jupyter' does); returns their ids."""
    with _starting_lock:
        left = dict(_starting)
    for session in left.values():
        with contextlib.suppress(Exception):
            session.close()
    return list(left)


def one_line(exc: NodetunnelError) -> str:
    """An error as the CLI shows it, on one line: the message, then the fix."""
    return exc.message + (f" — fix: {exc.hint}" if exc.hint else "")


def start_detached(
    board: Board,
    store: SessionStore,
    req: LaunchRequest,
    *,
    session_factory: Callable[..., Session] = Session,
    keeper: Keeper = keeper_command,
    notify: bool = True,
    notifier: Notifier | None = None,
) -> str:
    """Start a session in a worker thread, as ``--detach`` does; return its id at once.

    The card shows its progress lines; a failure shows the CLI's message (the
    job is cancelled by the usual clean-up). With ``notify`` (the form's, else the
    profile's ``notify``) a job that waited notifies when it starts and its app is
    ready (through ``notifier``, the dashboard's one backend, else a new one), and the
    keeper notifies from then on.
    """
    sid = "nt-" + secrets.token_hex(4)

    def say(line: str) -> None:
        board.start_progress(sid, line)

    session = session_factory(req, progress=say, notice=say, store=store, session_id=sid)
    if notify:
        session.on_event = notifications(notifier)
    board.begin_start(sid, req.app.name, req.cluster.name)

    def steps(session: Session) -> None:
        session.start()
        command, env = keeper(notify=notify)
        session.detach(command, env=env)

    _run_session(board, session, sid, steps)
    return sid


def notifications(notifier: Notifier | None = None) -> Callable[[Event], None] | None:
    """A started session's notifications, as ``nodetunnel APP --detach`` sends them while
    it starts (no terminal here, so no bell; one no service took goes to this log)."""

    def failed(exc: Exception) -> None:
        log.warning("a notification failed: %r", exc)

    return on_event([session_notifications(log=log.warning, notifier=notifier)], on_error=failed)


def attach_detached(
    board: Board,
    store: SessionStore,
    key: str,
    *,
    connect: Connector = cluster_link,
    resume: Callable[..., Session] = Session.resume,
    keeper: Keeper = keeper_command,
    config_file: str | None = None,
) -> str:
    """``nodetunnel attach ID --detach`` (``--cluster`` for a session from elsewhere).

    Finding (or claiming) the session happens here and may raise; re-opening
    the tunnel and handing it to a background keeper run in a worker thread.
    The keeper notifies as the profile in ``config_file`` says, as ``attach`` does.
    """
    clusters = [ref for ref in board.clusters if not store.matching(key)]
    found = prepare_attach(store, key, clusters[:1], connect=connect)
    record = found.record
    sid = record.session_id

    def say(line: str) -> None:
        board.start_progress(sid, line)

    session = resume(record, progress=say, notice=say, store=store)
    board.begin_start(sid, record.app, record.cluster)
    notify = notify_setting(None, record.cluster, config_file)

    def steps(session: Session) -> None:
        session.reattach()
        command, env = keeper(notify=notify)
        session.detach(command, env=env)

    _run_session(board, session, sid, steps)
    return sid


def stop(board: Board, store: SessionStore, session_id: str, *,
         connect: Connector = cluster_link) -> str:  # fmt: skip
    """``nodetunnel stop ID``: returns what was done, raises NodetunnelError."""
    record = store.find(session_id)
    report = stop_sessions(store, [record], connect=connect)
    if report.failed:
        _ref, _group, why = report.failed[0]
        raise NodetunnelError(
            f"could not cancel job {record.job_id} of {record.session_id}: {why}",
            hint="its tunnel is closed; press Stop again once the cluster can be reached",
        )
    board.stopped([record.session_id])
    return f"stopped {record.session_id} (job {record.job_id} cancelled)"


def ssh_entry(store: SessionStore, session_id: str) -> dict[str, str]:
    """``nodetunnel ssh-config ID``: the Host entry, its file and the Include line."""
    record = store.find(session_id)
    path, name = sshhosts.add(store, record)
    entry = sshhosts.render([record]).split("\n\n", 1)[1]  # without the file's header
    return {"name": name, "path": str(path), "include": sshhosts.include_line(path),
            "entry": entry.split("\nMatch ", 1)[0].strip() + "\n"}  # fmt: skip


def open_target(
    store: SessionStore, session_id: str, app: str | None = None
) -> tuple[str, str, LoginForm | None]:
    """``nodetunnel open ID APP``'s checks, then the name and URL (with its secret) of the
    session's main app, or of ``app`` (a name, or a number: 1 is the main app, 2 the first
    ``--with``), and the login form to post for an app that logs in by one (else None)."""
    from ..session.fleet import app_url, process_alive

    record = store.find(session_id)
    if not process_alive(record.tunnel_pid, record.tunnel_start):
        raise UsageError(
            f"session {record.session_id} has no tunnel on this machine now",
            hint=f"run 'nodetunnel attach {record.session_id}' to bring it back",
        )
    name, url = app_url(record, app)
    recipe = APPS.get(name)
    return name, url, recipe.login_form(url, record.token) if recipe is not None else None


@contextlib.contextmanager
def follow_log(
    record: SessionRecord, *, connect: Connector = cluster_link, lines: int = LOG_LINES
) -> Iterator[subprocess.Popen[bytes]]:
    """``nodetunnel logs ID -f``: the log-following process (ended when the block ends)."""
    with connect(ClusterRef.of(record)) as link:
        argv = link.transport.attached_argv(
            job_log_argv(record.session_dir, follow=True, lines=lines)
        )
        proc = spawn_reading(argv)
        try:
            yield proc
        finally:
            ref = ProcessRef.of(proc.pid)
            if proc.poll() is None and ref is not None:
                with contextlib.suppress(NodetunnelError):
                    ref.stop(timeout_s=5)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


__all__ = [
    "abandon_starts",
    "attach_detached",
    "follow_log",
    "notifications",
    "one_line",
    "open_target",
    "ssh_entry",
    "start_detached",
    "stop",
]
