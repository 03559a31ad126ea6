"""Notifications: which events notify, once each, the fake backend, the desktop backend's
fallbacks, and the CLI's handlers (JSON lines, bell, log)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from pathlib import Path

import pytest

from nodetunnel import events as ev
from nodetunnel.cli import live
from nodetunnel.events import Event
from nodetunnel.notify import (
    NOTIFIER_ENV,
    NOTIFY_AFTER_PENDING_S,
    Notification,
    Notifications,
    NullNotifier,
    desktop,
    make_notifier,
    notify_setting,
)
from nodetunnel.notify.desktop import DesktopNotifier, no_service_reason
from nodetunnel.notify.testing import RecordingNotifier, read_records

SID = "nt-0123abcd"


def event(kind: str, **data: object) -> Event:
    return Event(kind, SID, "42", data)


def a_session(waited_s: float, *, expected_end: bool = False) -> list[Event]:
    return [
        event(ev.SUBMITTED, elapsed_s=0.0),
        event(ev.PENDING, state="PENDING", reason="Resources", elapsed_s=1.0),
        event(ev.RUNNING, node="node1", elapsed_s=waited_s),
        event(
            ev.READY,
            app="jupyter",
            url="http://127.0.0.1:8888/lab",
            node="node1",
            local_port=8888,
            elapsed_s=waited_s + 3,
        ),
        event(ev.WALLTIME_WARNING, time_left_s=600, message="job 42 reaches its time limit"),
        event(
            ev.ENDED,
            state="CANCELLED" if expected_end else "TIMEOUT",
            expected=expected_end,
            message="job 42 reached its time limit",
        ),
    ]


def test_a_job_that_waited_notifies_started_ready_warning_and_the_unexpected_end() -> None:
    fake = RecordingNotifier()
    bells: list[int] = []
    notes = Notifications(fake, bell=lambda: bells.append(1))
    for e in a_session(125.0):
        notes(e)
    assert [n.kind for n in fake.sent] == [ev.RUNNING, ev.READY, ev.WALLTIME_WARNING, ev.ENDED]
    started, ready, warning, ended = fake.sent
    assert started.title == "Job 42 started"
    assert started.message == "on node1 after 2 min in the queue; the app is starting"
    assert ready.title == "jupyter is ready"
    assert "http://127.0.0.1:8888/lab" in ready.message
    assert warning.urgent
    assert ended.urgent
    assert ended.title == f"Session {SID} ended"
    assert len(bells) == 4


def test_a_job_that_started_at_once_notifies_only_the_warning() -> None:
    fake = RecordingNotifier()
    notes = Notifications(fake)
    for e in a_session(NOTIFY_AFTER_PENDING_S - 0.1, expected_end=True):
        notes(e)
    assert [n.kind for n in fake.sent] == [ev.WALLTIME_WARNING]


def test_attach_has_no_start_but_notifies_the_end() -> None:
    fake = RecordingNotifier()
    notes = Notifications(fake)
    notes(event(ev.RUNNING, node="node1", elapsed_s=None))  # attach: no wait to speak of
    notes(event(ev.READY, app="jupyter", url="u", node="node1", local_port=1, elapsed_s=None))
    notes(event(ev.ENDED, state=None, expected=False, message="the tunnel did not come back"))
    assert [n.kind for n in fake.sent] == [ev.ENDED]


def test_each_kind_is_notified_once_per_session() -> None:
    fake = RecordingNotifier()
    notes = Notifications(fake)
    for _ in range(3):
        notes(event(ev.RUNNING, node="node1", elapsed_s=60.0))
        notes(event(ev.WALLTIME_WARNING, time_left_s=60, message="soon"))
    notes(Event(ev.RUNNING, "nt-other000", "43", {"node": "node2", "elapsed_s": 60.0}))
    assert [(n.session_id, n.kind) for n in fake.sent] == [
        (SID, ev.RUNNING), (SID, ev.WALLTIME_WARNING), ("nt-other000", ev.RUNNING)
    ]  # fmt: skip


def test_without_a_notification_service_it_goes_to_the_log_and_still_rings_the_bell() -> None:
    logged: list[str] = []
    bells: list[int] = []
    notes = Notifications(RecordingNotifier(available=False), bell=lambda: bells.append(1),
                          log=logged.append)  # fmt: skip
    notes(event(ev.WALLTIME_WARNING, time_left_s=60, message="job 42 reaches its time limit"))
    assert logged == ["notification (no notification service here): Job 42 nears its time "
                      "limit: job 42 reaches its time limit"]  # fmt: skip
    assert bells == [1]  # the terminal bell in the foreground needs no notification service
    Notifications(RecordingNotifier(available=False))(event(ev.ENDED, expected=False, message="x"))


def test_notifications_off_do_nothing_at_all() -> None:
    bells: list[int] = []
    notes = Notifications(NullNotifier(), bell=lambda: bells.append(1), log=bells.append)  # type: ignore[arg-type]
    for e in a_session(600.0):
        notes(e)
    assert not bells


def test_the_recording_backend_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    fake = RecordingNotifier(path)
    fake.send(Notification(ev.RUNNING, "Job 1 started", "on node1", SID))
    RecordingNotifier(path).send(Notification(ev.READY, "jupyter is ready", "url", SID))
    records = read_records(path)
    assert [r["kind"] for r in records] == [ev.RUNNING, ev.READY]
    assert records[0]["session_id"] == SID
    assert (path.stat().st_mode & 0o777) == 0o600
    assert read_records(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("value", "kind"),
    [("", DesktopNotifier), ("desktop", DesktopNotifier), ("none", NullNotifier),
     ("record:/tmp/x.jsonl", RecordingNotifier), ("record:", DesktopNotifier),
     ("bogus", DesktopNotifier)],
)  # fmt: skip
def test_make_notifier_from_the_environment(value: str, kind: type) -> None:
    notifier = make_notifier({NOTIFIER_ENV: value})
    assert type(notifier) is kind
    if isinstance(notifier, RecordingNotifier):
        assert notifier.path == Path("/tmp/x.jsonl")


def test_no_service_reason(tmp_path: Path) -> None:
    assert no_service_reason({}, "linux") is not None
    assert no_service_reason({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}, "linux") is None
    assert no_service_reason({"XDG_RUNTIME_DIR": str(tmp_path)}, "linux") is not None
    with socket.socket(socket.AF_UNIX) as bus:
        bus.bind(str(tmp_path / "bus"))
        assert no_service_reason({"XDG_RUNTIME_DIR": str(tmp_path)}, "linux") is None
    assert no_service_reason({}, "darwin") is None
    assert no_service_reason({}, "win32") is None


def test_the_desktop_backend_without_a_bus_degrades_silently(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    monkeypatch.setattr(sys, "platform", "linux")
    notifier = DesktopNotifier()
    assert notifier.send(Notification(ev.ENDED, "t", "m", SID)) is False
    assert notifier.unavailable is not None
    assert "D-Bus" in notifier.unavailable
    assert capfd.readouterr() == ("", "")


def test_the_desktop_backend_with_a_bus_that_does_not_answer_gives_up_quietly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("desktop_notifier")
    with socket.socket(socket.AF_UNIX) as bus:  # a bus socket that never speaks D-Bus
        bus.bind(str(tmp_path / "bus"))
        bus.listen()
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'bus'}")
        monkeypatch.setattr(sys, "platform", "linux")
        notifier = DesktopNotifier(timeout_s=1.0)
        started = time.monotonic()
        assert notifier.send(Notification(ev.ENDED, "t", "m", SID)) is False
        assert time.monotonic() - started < 5
        assert notifier.unavailable is not None
        started = time.monotonic()
        assert notifier.send(Notification(ev.ENDED, "t", "m", SID)) is False  # not asked again
        assert time.monotonic() - started < 0.1
    assert capfd.readouterr() == ("", "")


def test_the_desktop_backend_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
    monkeypatch.setitem(sys.modules, "desktop_notifier", None)  # import fails
    notifier = DesktopNotifier()
    assert notifier.send(Notification(ev.ENDED, "t", "m", SID)) is False
    assert notifier.unavailable == "the desktop-notifier package is not installed"
    assert desktop.SEND_TIMEOUT_S > 0


# ------------------------------------------------------------------- the CLI's handlers
class _Session:
    on_event = None


def test_json_events_print_one_line_each_until_ready(capsys: pytest.CaptureFixture[str]) -> None:
    session = _Session()
    live.follow_events(session, as_json=True, notify=False, foreground=True)
    assert session.on_event is not None
    for e in a_session(1.0):
        session.on_event(e)
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event"] for line in out] == ["submitted", "pending", "running",
                                                           "ready"]  # fmt: skip


def test_follow_events_notifies_through_the_env_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.jsonl"
    monkeypatch.setenv(NOTIFIER_ENV, f"record:{path}")
    session = _Session()
    live.follow_events(session, as_json=False, notify=True, foreground=False)
    for e in a_session(30.0):
        session.on_event(e)  # type: ignore[misc]
    assert [r["kind"] for r in read_records(path)] == ["running", "ready", "walltime_warning",
                                                       "ended"]  # fmt: skip
    assert capsys.readouterr().out == ""


def test_follow_events_with_nothing_to_do_sets_no_handler() -> None:
    session = _Session()
    live.follow_events(session, as_json=False, notify=False, foreground=True)
    assert session.on_event is None


def test_a_failing_handler_never_breaks_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exploding(RecordingNotifier):
        def send(self, note: Notification) -> bool:
            raise RuntimeError("boom")

    monkeypatch.setattr("nodetunnel.notify.make_notifier", lambda: Exploding())
    session = _Session()
    live.follow_events(session, as_json=False, notify=True, foreground=False)
    session.on_event(event(ev.ENDED, expected=False, message="x"))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("foreground", "as_json", "stderr_tty", "stdout_tty", "rings"),
    [
        (True, False, True, True, True),
        (True, False, True, False, True),  # output redirected, the terminal still there
        (True, True, True, True, True),  # --json shown on the terminal
        (True, True, True, False, False),  # --json read by a program
        (True, False, False, True, False),  # no terminal for the bell
        (False, False, True, True, False),  # the detached keeper
    ],
)
def test_the_bell_rings_in_the_foreground_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
    foreground: bool,
    as_json: bool,
    stderr_tty: bool,
    stdout_tty: bool,
    rings: bool,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: stderr_tty)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: stdout_tty)
    assert live.rings_bell(foreground=foreground, as_json=as_json) is rings


def test_follow_events_rings_the_bell_without_a_notification_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bells: list[int] = []
    monkeypatch.setattr("nodetunnel.notify.make_notifier",
                        lambda: RecordingNotifier(available=False))  # fmt: skip
    monkeypatch.setattr(live, "rings_bell", lambda **kw: True)
    monkeypatch.setattr(live, "_bell", lambda: bells.append(1))
    session = _Session()
    live.follow_events(session, as_json=False, notify=True, foreground=True)
    for e in a_session(30.0):
        session.on_event(e)  # type: ignore[misc]
    assert len(bells) == 4  # started, ready, the warning, the unexpected end


def test_notify_setting_prefers_the_option_then_the_profile(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[clusters.lab]\njump = ["login"]\nnotify = false\n')
    assert notify_setting(True, "lab", config) is True
    assert notify_setting(None, "lab", config) is False
    assert notify_setting(None, "gone", config) is True  # a profile removed since


def test_a_library_without_a_real_backend_counts_as_no_service(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    library = pytest.importorskip("desktop_notifier")

    class Dummy:  # what the library gives a macOS Python outside an app bundle
        def __init__(self, app_name: str) -> None:
            logging.getLogger("desktop_notifier.main").warning("only from an app bundle")

    monkeypatch.setattr(library, "DesktopNotifier", Dummy)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
    notifier = DesktopNotifier()
    assert notifier.send(Notification(ev.ENDED, "t", "m", SID)) is False
    assert notifier.unavailable == "no notification centre for this program"
    assert capfd.readouterr() == ("", "")
