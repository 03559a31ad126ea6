"""The dashboard's starts notify as ``--detach`` does; the form's ``notify`` field; every
app of a job (``--with``) on its card, each opened on its own."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

pytest.importorskip("starlette")  # the dashboard is an optional extra
pytest.importorskip("httpx2")

from nodetunnel import events as ev
from nodetunnel.events import Event
from nodetunnel.notify.testing import RecordingNotifier

from nodetunnel.dashboard import actions, forms  # isort: skip
from .test_dashboard import csrf_headers, logged_in, record, submit
from .test_dashboard import world as world  # the fixture

REQ = SimpleNamespace(app=SimpleNamespace(name="jupyter"), cluster=SimpleNamespace(name="fake"))


class EventfulSession:
    """A session whose start reports a job that waited a minute, then becomes ready."""

    made: ClassVar[list[EventfulSession]] = []

    def __init__(self, req: Any, *, session_id: str, **kw: Any) -> None:
        self.session_id = session_id
        self.on_event: Callable[[Event], None] | None = None
        self.kept: list[str] = []
        self.closed = False
        EventfulSession.made.append(self)

    def __enter__(self) -> EventfulSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def start(self) -> None:
        for kind, data in [
            (ev.SUBMITTED, {"elapsed_s": 0.0}),
            (ev.PENDING, {"state": "PENDING", "reason": "Resources", "elapsed_s": 1.0}),
            (ev.RUNNING, {"node": "node1", "elapsed_s": 60.0}),
            (ev.READY, {"app": "jupyter", "url": "http://127.0.0.1:8888/lab", "node": "node1",
                        "local_port": 8888, "elapsed_s": 62.0}),
        ]:  # fmt: skip
            if self.on_event is not None:
                self.on_event(Event(kind, self.session_id, "42", data))

    def detach(self, command: list[str], *, env: dict[str, str]) -> None:
        self.kept = command


def started(world: dict[str, Any], notify: bool) -> EventfulSession:
    EventfulSession.made.clear()
    actions.start_detached(world["board"], world["store"], REQ,  # type: ignore[arg-type]
                           session_factory=EventfulSession,  # type: ignore[arg-type]
                           notify=notify)  # fmt: skip
    (session,) = EventfulSession.made
    deadline = time.monotonic() + 5
    while not session.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.closed
    return session


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> RecordingNotifier:
    notifier = RecordingNotifier()
    monkeypatch.setattr("nodetunnel.notify.make_notifier", lambda: notifier)
    return notifier


def test_a_start_from_the_form_notifies_started_and_ready_and_the_keeper_goes_on(
    world: dict[str, Any], recorder: RecordingNotifier
) -> None:
    session = started(world, notify=True)
    assert [n.kind for n in recorder.sent] == [ev.RUNNING, ev.READY]
    assert recorder.sent[0].title == "Job 42 started"
    assert recorder.sent[1].title == "jupyter is ready"
    assert session.kept[-1] == "--notify"  # the background keeper notifies from then on
    assert "--take-over" in session.kept


def test_a_start_with_notify_off_is_quiet_and_so_is_its_keeper(
    world: dict[str, Any], recorder: RecordingNotifier
) -> None:
    session = started(world, notify=False)
    assert recorder.sent == []
    assert session.on_event is None
    assert session.kept[-1] == "--no-notify"


def test_without_a_notification_service_the_dashboard_logs_it(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("nodetunnel.notify.make_notifier",
                        lambda: RecordingNotifier(available=False))  # fmt: skip
    with caplog.at_level("WARNING", logger=actions.__name__):
        started(world, notify=True)
    assert "no notification service here): Job 42 started" in caplog.text


def test_the_form_notify_field_takes_true_or_false(world: dict[str, Any]) -> None:
    base = {"cluster": "fake", "app": "jupyter"}
    spec = forms.form_spec("fake", "jupyter", world["config"])
    (field,) = [f for f in spec["fields"] if f["name"] == "notify"]
    assert field["value"] == "true"
    assert forms.parse_form(base, world["config"]).settings.notify is True
    off = forms.parse_form({**base, "notify": "false"}, world["config"])
    assert off.settings.notify is False
    assert off.settings.source("notify") != "default"
    assert forms.parse_form({**base, "notify": "No"}, world["config"]).settings.notify is False
    with pytest.raises(forms.FormErrors) as bad:
        forms.parse_form({**base, "notify": "maybe"}, world["config"])
    assert "expected true or false" in bad.value.errors["notify"]


# ------------------------------------------------------------ every app of the job
EXTRA = {"app": "tensorboard", "title": "TensorBoard", "local_port": 6006,
         "url": "http://127.0.0.1:6006/?token=secret2", "remote": "/tmp/s1"}  # fmt: skip


@pytest.fixture
def two_apps(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """A running session with a further app (``--with tensorboard``), its tunnel up here."""
    monkeypatch.setattr("nodetunnel.session.fleet.process_alive", lambda pid, start: True)
    monkeypatch.setattr("nodetunnel.dashboard.board.process_alive", lambda pid, start: True)
    job = submit(world["fake"], "nt-12121212")
    world["fake"].start(job)
    record(world["store"], "nt-12121212", job, extras=[EXTRA], tunnel_pid=1, tunnel_start=1)
    world["board"].refresh()
    return "nt-12121212"


def test_the_card_shows_every_app_and_its_url(world: dict[str, Any], two_apps: str) -> None:
    (card,) = world["board"].cards()
    assert card["apps"] == [
        {"name": "jupyter", "number": 1, "url": "http://127.0.0.1:8888/lab"},
        {"name": "tensorboard", "number": 2, "url": "http://127.0.0.1:6006/"},
    ]
    assert "secret" not in json.dumps(card)


def test_open_takes_an_app_name_or_number_as_the_cli_does(
    world: dict[str, Any], two_apps: str
) -> None:
    client = logged_in(world)

    def target(path: str) -> str:
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        return str(answer.headers["location"])

    assert target(f"/open/{two_apps}") == "http://127.0.0.1:8888/lab?token=secret"
    assert target(f"/open/{two_apps}/1") == "http://127.0.0.1:8888/lab?token=secret"
    assert target(f"/open/{two_apps}/2") == "http://127.0.0.1:6006/?token=secret2"
    assert target(f"/open/{two_apps}/tensorboard") == "http://127.0.0.1:6006/?token=secret2"
    missing = client.get(f"/open/{two_apps}/3", follow_redirects=False)
    assert missing.status_code == 409
    assert "the session has no app '3'" in missing.text
    assert "2 (tensorboard)" in missing.text


def test_an_ended_session_shows_no_url(world: dict[str, Any], two_apps: str) -> None:
    from nodetunnel.scheduler import JobState

    (card,) = world["board"].cards()
    world["fake"].finish(card["job_id"], JobState.TIMEOUT)
    world["board"].refresh()
    (ended,) = world["board"].cards()
    assert [a["url"] for a in ended["apps"]] == ["", ""]


# ------------------------------------------------------------- scheduler queries
def test_a_refresh_is_two_queries_however_many_jobs_wait(world: dict[str, Any]) -> None:
    fake, board = world["fake"], world["board"]
    ahead = fake.queue_job(partition="gpu")  # another user's job, ahead of ours
    waiting = [submit(fake, f"nt-5656565{n}") for n in range(3)]
    for job in waiting:
        fake.jobs[job].directives["partition"] = "gpu"
    fake.jobs[waiting[2]].reason = "Resources"
    before = fake.count("squeue")
    board.refresh()
    # The listing 'nodetunnel list' makes, and one for every pending job's place.
    assert fake.count("squeue") == before + 2
    places = {c["id"]: c["pending"] for c in board.cards()}
    assert [(p["position"], p["pending_in_partition"]) for p in places.values()] == [
        (2, 4), (3, 4), (4, 4)]  # fmt: skip
    assert places["nt-56565652"]["reason"] == "Resources"
    assert ahead not in {c["job_id"] for c in board.cards()}
    for job in waiting:
        fake.start(job)
    world["clock"].now += 60
    board.refresh()
    assert fake.count("squeue") == before + 3  # no job waits: the listing only


def test_attach_hands_the_keeper_the_profile_notify_of_the_dashboard_config(
    world: dict[str, Any], tmp_path: Any
) -> None:
    fake, store, board = world["fake"], world["store"], world["board"]
    job = submit(fake, "nt-78787878")
    fake.start(job)
    record(store, "nt-78787878", job)
    quiet = tmp_path / "quiet.toml"
    quiet.write_text('[clusters.fake]\njump = ["login", "gateway"]\nnotify = false\n')
    kept: list[bool] = []
    done = threading.Event()

    class Resumed:
        def __enter__(self) -> Resumed:
            return self

        def __exit__(self, *exc: object) -> None:
            done.set()

        def reattach(self) -> None:
            pass

        def detach(self, command: list[str], *, env: dict[str, str]) -> None:
            pass

    def keeper(*, notify: bool) -> tuple[list[str], dict[str, str]]:
        kept.append(notify)
        return ["keeper"], {}

    for config in (str(quiet), world["config"]):
        done.clear()
        actions.attach_detached(board, store, "nt-7878", connect=world["connect"],
                                resume=lambda record, **kw: Resumed(), keeper=keeper,
                                config_file=config)  # fmt: skip
        assert done.wait(5)
    assert kept == [False, True]


def test_every_start_from_one_dashboard_shares_one_notification_backend(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[RecordingNotifier] = []
    given: list[Any] = []

    def make() -> RecordingNotifier:
        made.append(RecordingNotifier())
        return made[-1]

    def start(board: Any, store: Any, req: Any, *, notify: bool, notifier: Any) -> str:
        given.append((notify, notifier))
        return "nt-00000001"

    monkeypatch.setattr("nodetunnel.dashboard.web.make_notifier", make)
    monkeypatch.setattr(actions, "start_detached", start)
    client = logged_in(world)
    for notify in ("false", "true", "true"):
        answer = client.post("/api/start", json={"cluster": "fake", "app": "jupyter",
                                                 "notify": notify}, headers=csrf_headers())  # fmt: skip
        assert answer.status_code == 200, answer.text
    (notifier,) = made  # one desktop backend (and its thread), not one per session
    assert given == [(False, None), (True, notifier), (True, notifier)]


def test_open_posts_the_login_form_of_an_app_that_logs_in_by_one(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    monkeypatch.setattr("nodetunnel.session.fleet.process_alive", lambda pid, start: True)
    panel = {"app": "panel", "title": "Panel", "local_port": 5006,
             "url": "http://127.0.0.1:5006/", "remote": "/tmp/s1"}  # fmt: skip
    job = submit(world["fake"], "nt-34343434")
    world["fake"].start(job)
    record(world["store"], "nt-34343434", job, extras=[panel], tunnel_pid=1, tunnel_start=1)
    answer = logged_in(world).get("/open/nt-34343434/panel", follow_redirects=False)
    assert answer.status_code == 200, answer.text
    page = answer.text
    assert 'action="http://127.0.0.1:5006/login"' in page
    assert '<input type="hidden" name="password" value="secret">' in page
    policy = answer.headers["content-security-policy"]
    (nonce,) = re.findall(r'<script nonce="([^"]+)">', page)
    assert f"script-src 'nonce-{nonce}'" in policy  # its one script, nothing else
    assert "form-action http://127.0.0.1:5006;" in policy  # the post to the app only
    assert answer.headers["referrer-policy"] == "no-referrer"
