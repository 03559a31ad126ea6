"""The desktop backend against a real D-Bus: a private dbus-daemon and a small notification
server on it (what a Linux desktop's notification daemon is), no desktop needed.

(No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures
from the annotations of the server's methods.)
"""

import asyncio
import contextlib
import os
import select
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nodetunnel.notify import Notification
from nodetunnel.notify.desktop import DesktopNotifier

pytest.importorskip("desktop_notifier")
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method

DBUS_DAEMON = shutil.which("dbus-daemon")
pytestmark = pytest.mark.skipif(DBUS_DAEMON is None, reason="dbus-daemon is not installed")


class _Server(ServiceInterface):  # type: ignore[misc]
    """org.freedesktop.Notifications, recording what it is asked to show."""

    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.shown: list[dict[str, Any]] = []

    @method()  # type: ignore[misc]
    def Notify(
        self, app_name: "s", replaces_id: "u", app_icon: "s", summary: "s", body: "s",  # noqa: F821
        actions: "as", hints: "a{sv}", expire_timeout: "i",  # noqa: F821, F722
    ) -> "u":  # noqa: F821  # fmt: skip
        self.shown.append({"app": app_name, "summary": summary, "body": body,
                           "urgency": hints["urgency"].value if "urgency" in hints else None})  # fmt: skip
        return len(self.shown)

    @method()  # type: ignore[misc]
    def GetCapabilities(self) -> "as":  # noqa: F722
        return ["body"]

    @method()  # type: ignore[misc]
    def GetServerInformation(self) -> "ssss":  # noqa: F821
        return ["test", "nodetunnel", "1", "1.2"]

    @method()  # type: ignore[misc]
    def CloseNotification(self, notification_id: "u") -> None:  # noqa: F821
        return None


@contextlib.contextmanager
def _session_bus() -> Iterator[str]:
    """A private session bus (its address), ended by PID afterwards."""
    assert DBUS_DAEMON is not None
    daemon = subprocess.Popen([DBUS_DAEMON, "--session", "--nofork", "--nopidfile",
                               "--print-address=1"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert daemon.stdout is not None
        ready, _, _ = select.select([daemon.stdout], [], [], 10)
        assert ready, "dbus-daemon printed no address within 10 s"
        yield daemon.stdout.readline().strip()
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@contextlib.contextmanager
def _notification_server(address: str) -> Iterator[_Server]:
    """The server, on its own thread and event loop, until the block ends."""
    server = _Server()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        bus = await MessageBus(bus_address=address).connect()
        bus.export("/org/freedesktop/Notifications", server)
        await bus.request_name("org.freedesktop.Notifications")
        started.set()
        await stop.wait()
        bus.disconnect()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(10), "the notification server did not start within 10 s"
        yield server
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


def test_a_notification_reaches_the_desktop_notification_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _session_bus() as address, _notification_server(address) as server:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        notifier = DesktopNotifier()
        sent = notifier.send(Notification("running", "Job 42 started", "on node1", "nt-1"))
        assert sent, notifier.unavailable
        sent = notifier.send(Notification("ended", "Session nt-1 ended", "TIMEOUT", "nt-1",
                                          urgent=True))  # fmt: skip
        assert sent, notifier.unavailable
    assert server.shown == [
        {"app": "nodetunnel", "summary": "Job 42 started", "body": "on node1", "urgency": 1},
        {"app": "nodetunnel", "summary": "Session nt-1 ended", "body": "TIMEOUT", "urgency": 2},
    ]
    assert "DBUS_SESSION_BUS_ADDRESS" in os.environ


def test_a_notification_is_sent_while_the_caller_runs_an_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A caller with an event loop running in its thread (a web server, a browser driver)."""
    import asyncio

    with _session_bus() as address, _notification_server(address) as server:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        notifier = DesktopNotifier()

        async def in_a_loop() -> bool:
            return notifier.send(Notification("running", "Job 7 started", "on node2", "nt-2"))

        # In a thread of its own: the test process may run a loop in this one already.
        sent: list[bool] = []
        caller = threading.Thread(target=lambda: sent.append(asyncio.run(in_a_loop())))
        caller.start()
        caller.join(timeout=30)
        assert sent == [True], notifier.unavailable
    assert [n["summary"] for n in server.shown] == ["Job 7 started"]
