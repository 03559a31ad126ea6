"""The dashboard on the project's fakes: the key and cookie, CSRF, cards, refresh rate, form.

The web app runs in Starlette's TestClient (and, for the event stream, in a
real uvicorn on 127.0.0.1 in a thread); the clusters are FakeSlurm behind the
real Slurm backend, with FakeTransport.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("starlette")  # the dashboard is an optional extra
pytest.importorskip("httpx2")

import httpx2
from starlette.testclient import TestClient

from nodetunnel.errors import NodetunnelError
from nodetunnel.scheduler import JobState, Slurm
from nodetunnel.scheduler.testing import FakeSlurm
from nodetunnel.session.fleet import Link
from nodetunnel.state import SessionRecord, SessionStore
from nodetunnel.transport import ClusterRef
from nodetunnel.transport.testing import FakeTransport

from nodetunnel.dashboard import forms  # isort: skip
from nodetunnel.dashboard.board import Board, Pending, pending_of
from nodetunnel.dashboard.server import bind
from nodetunnel.dashboard.web import Auth, make_app

USER = getpass.getuser()
CLUSTER = ClusterRef("fake", ("login", "gateway"))
TOKEN = "the-dashboard-key-made-here"
PORT = 8123
BASE = f"http://127.0.0.1:{PORT}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    fake, transport = FakeSlurm(user=USER), FakeTransport(tmp_path / "home")
    store = SessionStore(tmp_path / "state" / "sessions")
    connects: list[str | None] = []

    @contextlib.contextmanager
    def connect(ref: ClusterRef) -> Iterator[Link]:
        connects.append(ref.name)
        yield Link(transport, Slurm(fake))  # type: ignore[arg-type]

    config = tmp_path / "config.toml"
    config.write_text(
        'default_cluster = "fake"\n[clusters.fake]\njump = ["login", "gateway"]\n'
        'partition = "gpu"\ntime = "1:00:00"\n'
    )
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(config))
    clock = Clock()
    board = Board(store, [CLUSTER], connect=connect, interval_s=15.0, clock=clock)  # type: ignore[arg-type]
    return {"fake": fake, "store": store, "board": board, "clock": clock, "connects": connects,
            "connect": connect, "config": str(config), "home": tmp_path / "home"}  # fmt: skip


def submit(fake: FakeSlurm, session_id: str, app: str = "jupyter") -> str:
    script = f"#!/bin/sh\n#SBATCH --job-name=nodetunnel-{app}-{session_id}\n:\n"
    return fake(["sbatch", "--parsable"], input=script, timeout_s=5).stdout.strip()


def record(store: SessionStore, session_id: str, job_id: str, **kw: Any) -> SessionRecord:
    rec = SessionRecord(session_id=session_id, app="jupyter", job_id=job_id, cluster="fake",
                        jump=["login", "gateway"], node="node1", local_port=8888,
                        url="http://127.0.0.1:8888/lab?token=secret", token="secret",
                        session_dir=f"/home/x/.nodetunnel/sessions/{session_id}",
                        walltime_end=time.time() + 3000, warn_before_s=600.0, **kw)  # fmt: skip
    store.save(rec)
    return rec


def client_for(world: dict[str, Any], **kw: Any) -> TestClient:
    app = make_app(world["board"], world["store"], Auth(TOKEN, PORT), config_file=world["config"],
                   connect=world["connect"], **kw)  # fmt: skip
    return TestClient(app, base_url=BASE)


def logged_in(world: dict[str, Any], **kw: Any) -> TestClient:
    client = client_for(world, **kw)
    assert client.get(f"/?key={TOKEN}", follow_redirects=False).status_code == 303
    return client


def csrf_headers() -> dict[str, str]:
    return {"Origin": BASE, "X-CSRF-Token": Auth(TOKEN, PORT).csrf}


# ------------------------------------------------------------------ the key
def test_missing_or_wrong_key_is_403(world: dict[str, Any]) -> None:
    client = client_for(world)
    for path in ("/", "/events", "/api/cards", "/static/dashboard.js", "/open/nt-00000000"):
        assert client.get(path).status_code == 403, path
    assert client.get("/?key=wrong").status_code == 403
    client.cookies.set(f"nodetunnel_dashboard_{PORT}", "wrong")
    assert client.get("/").status_code == 403
    # The right key under another Host name (DNS rebinding) is refused too.
    other = TestClient(client.app, base_url=f"http://evil.example:{PORT}")
    assert other.get(f"/?key={TOKEN}").status_code == 403


def test_the_key_once_then_a_strict_http_only_cookie(world: dict[str, Any]) -> None:
    client = client_for(world)
    first = client.get(f"/new?key={TOKEN}&app=notebook", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/new?app=notebook"  # the key leaves the URL
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"nodetunnel_dashboard_{PORT}={TOKEN};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert TOKEN not in page.text  # the page never carries the key itself
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'src="/static/dashboard.js"' in page.text
    assert "https://" not in page.text
    assert 'src="//' not in page.text
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert client.get(asset).status_code == 200


def test_posts_need_this_origin_and_the_csrf_value(world: dict[str, Any]) -> None:
    client = logged_in(world)
    url = "/api/sessions/nt-00000000/dismiss"
    assert client.post(url).status_code == 403  # no Origin
    assert client.post(url, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post(url, headers={"Origin": BASE}).status_code == 403  # no CSRF value
    assert client.post(url, headers=csrf_headers()).status_code == 200


# ------------------------------------------------------------------ the cards
def test_cards_from_records_and_one_query_per_cluster(world: dict[str, Any]) -> None:
    fake, store, board = world["fake"], world["store"], world["board"]
    running = submit(fake, "nt-aaaaaaa1")
    fake.start(running, time_left="50:00")
    record(store, "nt-aaaaaaa1", running, reconnects=2)
    pending = submit(fake, "nt-bbbbbbb2")
    fake.jobs[pending].reason, fake.jobs[pending].start = "Resources", "2026-12-02T15:00:00"
    elsewhere = submit(fake, "nt-ccccccc3", app="dash")
    fake.start(elsewhere)
    board.refresh()
    assert world["connects"] == ["fake"]
    # The same single query 'nodetunnel list' makes, and one for the pending job's place in
    # its partition's queue.
    assert fake.count("squeue") == 2
    cards = {c["id"]: c for c in board.cards()}
    run = cards["nt-aaaaaaa1"]
    assert (run["state"], run["node"], run["job_id"], run["reconnects"]) == (
        "RUNNING", "node1", running, 2)  # fmt: skip
    assert run["can_stop"]
    assert run["can_ssh"]
    assert run["can_logs"]
    assert 2990 < run["ends_at"] - time.time() <= 3000  # 50 min left as SLURM says
    assert "token" not in json.dumps(cards)  # no secret on the page
    wait = cards["nt-bbbbbbb2"]
    assert wait["state_text"] == "PENDING (Resources)"
    assert wait["pending"]["estimated_start"] == "2026-12-02T15:00:00"
    assert (wait["pending"]["position"], wait["pending"]["pending_in_partition"]) == (1, 1)
    assert not wait["here"]
    assert wait["tunnel"] == "elsewhere"
    assert cards["nt-ccccccc3"]["app"] == "dash"
    # The running job reaches its time limit: the card says so, until dismissed.
    fake.finish(running, JobState.TIMEOUT)
    board.refresh()
    ended = {c["id"]: c for c in board.cards()}["nt-aaaaaaa1"]
    assert ended["ended"]
    assert ended["state"] == "ENDED"
    assert ended["cause"] == f"job {running} reached its time limit (TIMEOUT)"
    assert store.scan()[0] == []  # forgotten, as 'list' forgets it
    assert board.dismiss("nt-aaaaaaa1")
    assert "nt-aaaaaaa1" not in {c["id"] for c in board.cards()}


def test_refresh_at_most_once_per_interval(world: dict[str, Any]) -> None:
    board, clock, fake = world["board"], world["clock"], world["fake"]
    assert board.refresh_if_due()
    clock.now += 5
    assert not board.refresh_if_due()
    clock.now += 10
    assert board.refresh_if_due()
    assert fake.count("squeue") == 2


def test_events_a_job_that_waited_starts_nears_its_limit_and_ends(world: dict[str, Any]) -> None:
    fake, store, board = world["fake"], world["store"], world["board"]
    job = submit(fake, "nt-ddddddd4")
    record(store, "nt-ddddddd4", job)
    board.refresh()
    assert board.events() == []  # pending: nothing happened yet
    fake.start(job, time_left="50:00")
    board.refresh()
    board.refresh()  # once only
    assert [(e["id"], e["kind"]) for e in board.events()] == [("nt-ddddddd4", "running")]
    assert board.events()[0]["message"] == f"job {job} (jupyter) started on node1"
    fake.jobs[job].time_left = "5:00"  # within the record's 10 min warning
    board.refresh()
    board.refresh()
    assert [e["kind"] for e in board.events()] == ["running", "walltime_warning"]
    assert board.events()[1]["message"] == f"job {job} (jupyter) ends in 5 min"
    fake.finish(job, JobState.TIMEOUT)
    board.refresh()
    board.refresh()
    assert [e["kind"] for e in board.events()] == ["running", "walltime_warning", "ended"]
    assert board.events()[2]["message"] == f"job {job} reached its time limit (TIMEOUT)"
    page = logged_in(world).get("/api/cards").json()
    assert [e["kind"] for e in page["events"]] == ["running", "walltime_warning", "ended"]


def test_pending_of_from_the_backend_or_the_listing_when_it_fails() -> None:
    from nodetunnel.scheduler.base import JobStatus

    statuses = {"7": JobStatus("7", JobState.PENDING, reason="Priority", start_estimate=None),
                "8": JobStatus("8", JobState.PENDING, reason="Resources", start_estimate=None),
                "9": JobStatus("9", JobState.RUNNING, nodelist="node1")}  # fmt: skip
    asked: list[list[str]] = []

    class WithInfo:
        def pending_infos(self, job_ids: list[str]) -> Any:
            asked.append(job_ids)  # 8 started meanwhile: not in the answer
            return {"7": Pending("Resources", "2026-12-02T15:00:00", 3, 9)}

    class Failing:
        def pending_infos(self, job_ids: list[str]) -> Any:
            raise NodetunnelError("squeue timed out")

    assert pending_of(WithInfo(), statuses) == {  # type: ignore[arg-type]
        "7": Pending("Resources", "2026-12-02T15:00:00", 3, 9), "8": Pending("Resources", None)}  # fmt: skip
    assert asked == [["7", "8"]]
    assert pending_of(Failing(), statuses) == {  # type: ignore[arg-type]
        "7": Pending("Priority", None), "8": Pending("Resources", None)}  # fmt: skip
    assert pending_of(Failing(), {"9": statuses["9"]}) == {}  # type: ignore[arg-type]


@contextlib.contextmanager
def live(world: dict[str, Any]) -> Iterator[str]:
    """The dashboard in a real uvicorn on 127.0.0.1 (event streams need a real server)."""
    import uvicorn

    sock = bind(None)
    port = sock.getsockname()[1]
    app = make_app(world["board"], world["store"], Auth(TOKEN, port), config_file=world["config"],
                   connect=world["connect"])  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def read_events(base: str, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    cookies = {f"nodetunnel_dashboard_{base.rsplit(':', 1)[1]}": TOKEN}
    events: list[dict[str, Any]] = []
    with httpx2.stream("GET", f"{base}/events", cookies=cookies, timeout=timeout_s) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == count:
                    break
    return events


def test_events_refresh_only_while_a_page_is_open(world: dict[str, Any]) -> None:
    fake, board, store = world["fake"], world["board"], world["store"]
    board.interval_s = 0.3
    board._clock = time.monotonic
    job = submit(fake, "nt-ddddddd4")
    record(store, "nt-ddddddd4", job)
    with live(world) as base:
        time.sleep(0.5)
        assert fake.count("squeue") == 0  # no page open: no query
        start = time.monotonic()
        (first,) = read_events(base, 1)
        assert [c["state"] for c in first["cards"]] == ["PENDING"]
        fake.start(job)  # the job starts: the next refresh's event says so
        changed = read_events(base, 1)[0]
        assert changed["cards"][0]["state"] in ("PENDING", "RUNNING")
        events = read_events(base, 4)
        assert events[-1]["cards"][0]["state"] == "RUNNING"
        elapsed = time.monotonic() - start
        queries = fake.count("squeue")
        assert queries <= elapsed / 0.3 + 2  # never more often than the interval
        time.sleep(1.0)
        assert fake.count("squeue") == queries  # the page went: no more queries


# ------------------------------------------------------------------ the buttons
def test_stop_cancels_the_job_and_the_card_goes(world: dict[str, Any]) -> None:
    fake, store, board = world["fake"], world["store"], world["board"]
    job = submit(fake, "nt-eeeeeee5")
    fake.start(job)
    record(store, "nt-eeeeeee5", job)
    board.refresh()
    client = logged_in(world)
    assert [c["id"] for c in client.get("/api/cards").json()["cards"]] == ["nt-eeeeeee5"]
    answer = client.post("/api/sessions/nt-eeeeeee5/stop", headers=csrf_headers())
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == f"stopped nt-eeeeeee5 (job {job} cancelled)"
    assert fake.jobs[job].state is JobState.CANCELLED
    assert client.get("/api/cards").json()["cards"] == []
    missing = client.post("/api/sessions/nt-eeeeeee5/stop", headers=csrf_headers())
    assert missing.status_code == 400
    assert "nt-eeeeeee5" in missing.json()["error"]


def test_open_needs_a_live_tunnel(world: dict[str, Any]) -> None:
    job = submit(world["fake"], "nt-fffffff6")
    record(world["store"], "nt-fffffff6", job)
    client = logged_in(world)
    answer = client.get("/open/nt-fffffff6", follow_redirects=False)
    assert answer.status_code == 409
    assert "has no tunnel on this machine now" in answer.text
    assert "nodetunnel attach nt-fffffff6" in answer.text


def test_ssh_config_entry(world: dict[str, Any]) -> None:
    job = submit(world["fake"], "nt-99999997")
    record(world["store"], "nt-99999997", job)
    answer = logged_in(world).post("/api/sessions/nt-99999997/ssh-config", headers=csrf_headers())
    data = answer.json()
    assert data["name"] == "nodetunnel-nt-99999997"
    assert data["entry"].startswith("Host nodetunnel-nt-99999997\n    HostName node1\n")
    assert data["include"].startswith("Include ")


# ------------------------------------------------------------------ the form
def test_form_prefilled_from_the_profile_with_sources(world: dict[str, Any]) -> None:
    page = logged_in(world).get("/new?cluster=fake&app=jupyter")
    assert page.status_code == 200
    spec = forms.form_spec("fake", "jupyter", world["config"])
    fields = {f["name"]: f for f in spec["fields"]}
    assert fields["partition"]["value"] == "gpu"
    assert fields["partition"]["source"] == f"config file {world['config']}"
    assert fields["mem"]["source"] == "default"
    assert 'value="gpu"' in page.text
    assert f"from: config file {world['config']}" in page.text


def post_form(client: TestClient, url: str, **fields: str) -> httpx2.Response:
    data = {"cluster": "fake", "app": "jupyter", **fields}
    return client.post(url, json=data, headers=csrf_headers())


def test_form_errors_are_the_cli_messages_next_to_the_field(world: dict[str, Any]) -> None:
    client = logged_in(world)
    bad_cpus = post_form(client, "/api/preview", cpus_per_task="many", partition="-x")
    assert bad_cpus.status_code == 400
    errors = bad_cpus.json()["errors"]
    assert errors["cpus_per_task"].startswith(
        "--cpus-per-task on the command line must be a positive integer, not 'many' (a string)"
    )
    assert "starts with '-'" in errors["partition"]
    bad_lease = post_form(client, "/api/start", lease="soon")
    assert "lease" in bad_lease.json()["errors"]
    unknown = post_form(client, "/api/preview", cluster="nowhere")
    assert "unknown cluster 'nowhere'" in unknown.json()["errors"]["cluster"]
    no_file = post_form(client, "/api/preview", app="dash")
    assert "param_app_file" in no_file.json()["errors"]


def test_preview_is_the_dry_run_and_start_is_detached(world: dict[str, Any]) -> None:
    started: list[Any] = []

    def start(req: Any, *, notify: bool) -> str:
        started.append((req, notify))
        return "nt-12345678"

    client = logged_in(world, start=start)
    preview = post_form(client, "/api/preview", mem="2G", venv="/opt/venv")
    assert preview.status_code == 200, preview.text
    script = preview.json()["script"]
    assert "#SBATCH --mem=2G" in script
    assert "#SBATCH --partition=gpu" in script
    assert "/opt/venv" in script
    answer = post_form(client, "/api/start", mem="2G", partition="gpu")
    assert answer.json() == {"session_id": "nt-12345678"}
    (req, notify) = started[0]
    assert (req.job.mem, req.job.partition, req.job.time) == ("2G", "gpu", "1:00:00")
    assert notify is True  # the profile's default
    post_form(client, "/api/start", notify="false")
    assert started[1][1] is False


def test_a_start_shows_its_progress_then_its_failure(world: dict[str, Any]) -> None:
    board = world["board"]
    board.begin_start("nt-77777777", "jupyter", "fake")
    board.start_progress("nt-77777777", "submitted job 1234")
    (card,) = board.cards()
    assert card["state"] == "STARTING"
    assert card["progress"] == ["submitted job 1234"]
    board.start_failed("nt-77777777", "job 1234 failed before the app was ready: no module")
    (card,) = board.cards()
    assert card["state"] == "FAILED"
    assert card["dismissable"]
    assert board.dismiss("nt-77777777")
    assert board.cards() == []


def test_start_detached_runs_the_session_and_hands_it_over(world: dict[str, Any]) -> None:
    from nodetunnel.dashboard import actions

    calls: list[str] = []

    class FakeSession:
        def __init__(self, req: Any, *, progress: Callable[[str], None], session_id: str,
                     **kw: Any) -> None:  # fmt: skip
            self.progress, self.session_id = progress, session_id

        def __enter__(self) -> FakeSession:
            return self

        def __exit__(self, *exc: object) -> None:
            calls.append("closed")

        def start(self) -> None:
            self.progress("submitted job 1")
            calls.append("started")

        def detach(self, command: list[str], *, env: dict[str, str]) -> None:
            calls.append(f"detach {command[-1]}")

    board = world["board"]
    req = SimpleNamespace(app=SimpleNamespace(name="jupyter"), cluster=SimpleNamespace(name="fake"))
    sid = actions.start_detached(board, world["store"], req,  # type: ignore[arg-type]
                                 session_factory=FakeSession,  # type: ignore[arg-type]
                                 keeper=lambda **kw: (["keeper", "--take-over"], {}))  # fmt: skip
    deadline = time.monotonic() + 5
    while "closed" not in calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == ["started", "detach --take-over", "closed"]
    assert sid.startswith("nt-")
    assert board.cards() == []


def test_logs_follow_the_job_log_and_end_with_the_page(world: dict[str, Any],
                                                       tmp_path: Path) -> None:  # fmt: skip
    from nodetunnel.session.remote import JOB_LOG

    session_dir = tmp_path / "sessiondir"
    session_dir.mkdir()
    (session_dir / JOB_LOG).write_text("first line\n")
    job = submit(world["fake"], "nt-88888888")
    rec = record(world["store"], "nt-88888888", job)
    world["store"].save(SessionRecord(**{**rec.__dict__, "session_dir": str(session_dir)}))
    with live(world) as base:
        cookies = {f"nodetunnel_dashboard_{base.rsplit(':', 1)[1]}": TOKEN}
        seen: list[str] = []
        with httpx2.stream("GET", f"{base}/logs/nt-88888888/events", cookies=cookies,
                          timeout=10) as r:  # fmt: skip
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen == ["first line"]:
                        with (session_dir / JOB_LOG).open("a") as f:
                            f.write("second line\n")  # followed, as 'logs -f' does
                    if len(seen) == 2:
                        break
        assert seen == ["first line", "second line"]
        deadline = time.monotonic() + 10  # the page went: its tail ends too
        while time.monotonic() < deadline and _tails(session_dir):
            time.sleep(0.05)
        assert not _tails(session_dir)


def _tails(session_dir: Path) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "tail" in p.info["cmdline"][0]
            and any(str(session_dir) in w for w in p.info["cmdline"])]  # fmt: skip


def test_attach_reopens_a_session_nothing_keeps_in_the_background(world: dict[str, Any]) -> None:
    from nodetunnel.dashboard import actions

    fake, store, board = world["fake"], world["store"], world["board"]
    job = submit(fake, "nt-66666666")
    fake.start(job)
    record(store, "nt-66666666", job)
    board.refresh()
    (card,) = board.cards()
    assert card["can_attach"]  # running, no tunnel, nothing keeps it
    calls: list[str] = []

    class Resumed:
        def __enter__(self) -> Resumed:
            return self

        def __exit__(self, *exc: object) -> None:
            calls.append("closed")

        def reattach(self) -> None:
            calls.append("reattached")

        def detach(self, command: list[str], *, env: dict[str, str]) -> None:
            calls.append("detached")

    sid = actions.attach_detached(board, store, "nt-6666", connect=world["connect"],
                                  resume=lambda record, **kw: Resumed(),
                                  keeper=lambda **kw: (["keeper"], {}))  # fmt: skip
    deadline = time.monotonic() + 5
    while "closed" not in calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sid == "nt-66666666"
    assert calls == ["reattached", "detached", "closed"]
    with pytest.raises(Exception, match="no session"):
        actions.attach_detached(board, store, "nt-0000", connect=world["connect"])


def test_a_start_under_way_is_cleaned_up_when_the_dashboard_exits(world: dict[str, Any]) -> None:
    from nodetunnel.dashboard import actions

    release, closed = threading.Event(), []

    class Slow:
        def __init__(self, req: Any, **kw: Any) -> None:
            pass

        def __enter__(self) -> Slow:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def start(self) -> None:
            release.wait(10)  # e.g. the job is pending

        def close(self) -> None:
            closed.append("closed")  # cancels the job, removes its directories
            release.set()

        def detach(self, command: list[str], *, env: dict[str, str]) -> None:
            pass

    req = SimpleNamespace(app=SimpleNamespace(name="jupyter"), cluster=SimpleNamespace(name="fake"))
    sid = actions.start_detached(world["board"], world["store"], req,  # type: ignore[arg-type]
                                 session_factory=Slow, keeper=lambda **kw: ([], {}))  # type: ignore[arg-type]  # fmt: skip
    assert actions.abandon_starts() == [sid]
    assert closed == ["closed"]
