"""Desktop notifications on Linux (D-Bus), macOS and Windows, through desktop-notifier.

The library (and asyncio under it) is imported on the first notification
only, so commands that notify nothing start as fast as before. Where there is
no notification service (no D-Bus session bus: CI, a server, an SSH login; a
macOS Python outside an app bundle, where the library has no backend) the
notification is not shown and :meth:`DesktopNotifier.send` says so; nothing
is raised or printed. The library's own warnings are kept out of the output.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from . import Notification, Notifier

SEND_TIMEOUT_S = 5.0  # one notification; after a timeout the service counts as absent
_LIBRARY_LOGGER = "desktop_notifier"


def no_service_reason(env: dict[str, str] | None = None, platform: str | None = None) -> str | None:
    """Why this machine has no notification service for us, or None if it may have one.

    On Linux and the BSDs that is the D-Bus session bus: ``$DBUS_SESSION_BUS_ADDRESS``,
    or the ``bus`` socket in ``$XDG_RUNTIME_DIR``. macOS and Windows always have one
    (whether it shows anything is the user's setting).
    """
    env = dict(os.environ) if env is None else env
    platform = sys.platform if platform is None else platform
    if platform in ("darwin", "win32"):
        return None
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime, "bus").is_socket():
        return None
    return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"


class _Failures(logging.Handler):
    """Counts the library's warnings: it logs a failed send instead of raising."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class DesktopNotifier(Notifier):
    """The platform's notification centre; :attr:`unavailable` says why not, once known."""

    name: ClassVar[str] = "desktop"

    def __init__(self, app_name: str = "nodetunnel", *, timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.app_name = app_name
        self.timeout_s = timeout_s
        self.unavailable: str | None = None
        self._library: Any = None
        self._loop: Any = None  # an asyncio loop of its own, made with the library
        self._failures = _Failures()

    def _start(self) -> Any:
        reason = no_service_reason()
        if reason is not None:
            self.unavailable = reason
            return None
        try:
            import desktop_notifier
        except ImportError:  # an install without it: notifications are an extra
            self.unavailable = "the desktop-notifier package is not installed"
            return None
        logger = logging.getLogger(_LIBRARY_LOGGER)
        logger.addHandler(self._failures)
        logger.propagate = False  # its warnings (with tracebacks) stay out of the terminal
        import asyncio
        import threading

        # The library's own loop, in a thread of its own: a caller may run an event loop
        # of its own in this thread (a web server, a browser driver), which would forbid
        # running another one here.
        self._loop = asyncio.new_event_loop()
        # What the library's background tasks raise later (a bus that went away) is logged
        # quietly, not printed by asyncio.
        self._loop.set_exception_handler(
            lambda _loop, context: logging.getLogger(__name__).debug("%s", context.get("message"))
        )
        threading.Thread(target=self._loop.run_forever, name="nodetunnel-notify",
                         daemon=True).start()  # fmt: skip
        warned = self._failures.count
        library = desktop_notifier.DesktopNotifier(app_name=self.app_name)
        if self._failures.count != warned:  # e.g. macOS outside an app bundle: a dummy backend
            self.unavailable = "no notification centre for this program"
            return None
        return library

    def send(self, note: Notification) -> bool:
        if self.unavailable is not None:
            return False
        if self._library is None:
            self._library = self._start()
            if self._library is None:
                return False
        import asyncio

        from desktop_notifier import Urgency

        urgency = Urgency.Critical if note.urgent else Urgency.Normal
        failures = self._failures.count
        sending = asyncio.run_coroutine_threadsafe(
            self._library.send(note.title, note.message, urgency=urgency), self._loop
        )
        try:
            sending.result(timeout=self.timeout_s)
        except Exception as exc:  # a service that hangs or breaks: stop asking it
            sending.cancel()
            self.unavailable = f"the notification service failed: {exc!r}"
            return False
        if self._failures.count != failures:
            self.unavailable = "the notification service refused the notification"
            return False
        return True
