"""Notifications: a pending job has started, its app is ready, the time limit nears, a session
ended unexpectedly.

* :class:`Notifier` is the backend interface: :meth:`Notifier.send` shows one
  :class:`Notification` and says whether a notification service took it; it never raises.
  :class:`~.desktop.DesktopNotifier` (Linux, macOS, Windows, through the
  desktop-notifier library, imported only when a notification is sent) is the real one;
  :class:`~.testing.RecordingNotifier` records what was sent (for tests, also into a
  file); :class:`NullNotifier` drops everything.
* :class:`Notifications` is a session's ``on_event`` handler: it decides which
  :class:`~nodetunnel.events.Event` deserves a notification, at most once each per
  session, and where no notification service exists it falls back to a log line.
* :func:`make_notifier` picks the backend: ``$NODETUNNEL_NOTIFIER`` (``desktop``,
  ``none``, or ``record:PATH``, the hook the tests use) or the desktop.
* :func:`on_event` makes a session's one ``on_event`` handler from several (the
  notifications, the CLI's JSON lines), so that one that fails never breaks the session:
  every starter (an app command, ``attach``, the dashboard's form) builds it the same way.

Which events notify: **started** and **ready** only when the job waited in the queue for
:data:`NOTIFY_AFTER_PENDING_S` or more (a job that starts at once is watched in the
terminal: no pop-up), the **walltime warning** always, and **ended** only when the end
was unexpected (not a stop, a cancel or the app quitting).
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..events import ENDED, READY, RUNNING, WALLTIME_WARNING, Event

NOTIFIER_ENV = "NODETUNNEL_NOTIFIER"
#: A job that waited at least this long before it ran gets "started" and "ready" notifications.
NOTIFY_AFTER_PENDING_S = 10.0


@dataclasses.dataclass(frozen=True)
class Notification:
    """One notification: from event ``kind`` of session ``session_id``."""

    kind: str
    title: str
    message: str
    session_id: str
    urgent: bool = False


class Notifier(abc.ABC):
    """Where notifications go."""

    name: ClassVar[str]

    @abc.abstractmethod
    def send(self, note: Notification) -> bool:
        """Show ``note``; False where no notification service took it. Never raises."""


class NullNotifier(Notifier):
    """Notifications off: nothing is shown (and nothing is logged for them)."""

    name: ClassVar[str] = "none"

    def send(self, note: Notification) -> bool:
        return True


def make_notifier(env: Mapping[str, str] | None = None) -> Notifier:
    """The backend ``$NODETUNNEL_NOTIFIER`` names (``desktop`` when unset).

    ``record:PATH`` appends each notification to PATH as a JSON line: a test hook.
    An unknown value gives the desktop backend (a typo must not fail a session).
    """
    spec = (os.environ if env is None else env).get(NOTIFIER_ENV, "").strip()
    if spec == "none":
        return NullNotifier()
    if spec.startswith("record:") and len(spec) > len("record:"):
        from .testing import RecordingNotifier

        return RecordingNotifier(Path(spec.removeprefix("record:")).expanduser())
    from .desktop import DesktopNotifier

    return DesktopNotifier()


def _minutes_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


class Notifications:
    """A session's ``on_event`` handler that turns events into notifications.

    ``bell`` (the terminal bell, in the foreground) is called with each one, whether or
    not a notification service took it; ``log`` gets a line for each one no notification
    service took. Each kind is notified at most once per session.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        bell: Callable[[], None] | None = None,
        log: Callable[[str], None] | None = None,
        after_pending_s: float = NOTIFY_AFTER_PENDING_S,
    ) -> None:
        self.notifier = notifier
        self.bell = bell
        self.log = log
        self.after_pending_s = after_pending_s
        self._waited: dict[str, bool] = {}  # session id -> its job waited long enough
        self._sent: set[tuple[str, str]] = set()  # (session id, kind)

    def __call__(self, event: Event) -> None:
        if isinstance(self.notifier, NullNotifier):
            return
        note = self.note_for(event)
        if note is None or (note.session_id, note.kind) in self._sent:
            return
        self._sent.add((note.session_id, note.kind))
        shown = self.notifier.send(note)
        if self.bell is not None:
            self.bell()
        if not shown and self.log is not None:
            self.log(f"notification (no notification service here): {note.title}: "
                     f"{note.message}")  # fmt: skip

    def note_for(self, event: Event) -> Notification | None:
        """The notification ``event`` deserves, or None."""
        sid, job = event.session_id, event.job_id or "?"
        if event.kind == RUNNING:
            waited = event.get("elapsed_s")
            self._waited[sid] = waited is not None and waited >= self.after_pending_s
            if self._waited[sid]:
                return Notification(RUNNING, f"Job {job} started",
                                    f"on {event.get('node')} after {_minutes_text(waited)} in "
                                    "the queue; the app is starting", sid)  # fmt: skip
        elif event.kind == READY and self._waited.get(sid):
            app = event.get("app") or "the app"
            return Notification(READY, f"{app} is ready", f"{event.get('url')} (job {job} on "
                                f"{event.get('node')})", sid)  # fmt: skip
        elif event.kind == WALLTIME_WARNING:
            return Notification(WALLTIME_WARNING, f"Job {job} nears its time limit",
                                str(event.get("message")), sid, urgent=True)  # fmt: skip
        elif event.kind == ENDED and not event.get("expected"):
            return Notification(ENDED, f"Session {sid} ended", str(event.get("message")), sid,
                                urgent=True)  # fmt: skip
        return None


def on_event(
    handlers: Sequence[Callable[[Event], None]],
    *,
    on_error: Callable[[Exception], None] | None = None,
) -> Callable[[Event], None] | None:
    """A session's ``on_event``: each event to every one of ``handlers`` in turn (None when
    there are none). A handler that raises is reported to ``on_error`` and the others still
    run: showing an event must never break the session."""
    if not handlers:
        return None
    chain = tuple(handlers)

    def handle(event: Event) -> None:
        for handler in chain:
            try:
                handler(event)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)

    return handle


def session_notifications(
    *,
    bell: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
    notifier: Notifier | None = None,
) -> Notifications:
    """The notifications of a session, through ``notifier`` (a process that starts many
    sessions shares one), else the backend :func:`make_notifier` picks."""
    return Notifications(notifier or make_notifier(), bell=bell, log=log)


def notify_setting(given: bool | None, cluster: str | None, config_file: Any = None) -> bool:
    """``--notify/--no-notify`` if ``given``, else the ``notify`` key of the cluster's
    profile (a profile that went away since the session started: on)."""
    if given is not None:
        return given
    from ..config import resolve
    from ..errors import UsageError

    try:
        return bool(resolve(cluster, {}, config_file).notify)
    except UsageError:
        return True


__all__ = [
    "NOTIFIER_ENV",
    "NOTIFY_AFTER_PENDING_S",
    "Notification",
    "Notifications",
    "Notifier",
    "NullNotifier",
    "make_notifier",
    "notify_setting",
    "on_event",
    "session_notifications",
]
