"""The session core on the project's fakes: Session and the fleet API, no cluster needed.

The scheduler is the real :class:`~nodetunnel.scheduler.Slurm` over
:class:`~nodetunnel.scheduler.testing.FakeSlurm`; the transport is
:class:`~nodetunnel.transport.testing.FakeTransport`, which runs the session
directory's commands here in a temporary home and makes each tunnel a small
local HTTP server on 127.0.0.1. The test moves the jobs along from FakeSlurm's
``on_call`` hook, so every run is deterministic and bounded.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nodetunnel.apps import JUPYTER
from nodetunnel.errors import JobFailed
from nodetunnel.scheduler import JobRequest, JobState, Slurm
from nodetunnel.scheduler.testing import Call, FakeSlurm
from nodetunnel.session import LaunchRequest, Session
from nodetunnel.session.fleet import Link, claim, reconcile, stop_sessions
from nodetunnel.state import SessionRecord, SessionStore
from nodetunnel.transport import ClusterRef
from nodetunnel.transport.openssh import SshSettings
from nodetunnel.transport.testing import FakeTransport

USER = getpass.getuser()  # the fake cluster's user is who runs the tests (id -un there)
CLUSTER = ClusterRef("fake", ("login", "gateway"))
Hook = Callable[[Call, FakeSlurm], None]


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    return tmp_path / "run" / "nodetunnel"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def session_dir_of(fake: FakeSlurm, job_id: str) -> Path:
    return Path(fake.jobs[job_id].directives["output"]).parent


def publish(fake: FakeSlurm, job_id: str, node: str = "node1") -> None:
    """What the job does once its app listens: the endpoint file, atomically."""
    d = session_dir_of(fake, job_id)
    (d / "endpoint.tmp").write_text(f"socket=/tmp/nt.abc123/s\nhost={node}\n")
    (d / "endpoint.tmp").rename(d / "endpoint")


def squeues(fake: FakeSlurm) -> int:
    return fake.count("squeue")


def runs_after(pending_queries: int, *, time_left: str = "59:58") -> Hook:
    """A hook: the job stays PENDING for ``pending_queries`` squeues, then runs its app."""

    def hook(call: Call, fake: FakeSlurm) -> None:
        if call.program != "squeue" or not fake.jobs:
            return
        job_id = max(fake.jobs)
        if fake.jobs[job_id].state is JobState.PENDING and squeues(fake) > pending_queries:
            fake.start(job_id, time_left=time_left)
            publish(fake, job_id)

    return hook


@pytest.fixture(autouse=True)
def _no_fake_server_left(home: Path) -> Iterator[None]:
    """Whatever a test does (or fails to do), its fake app servers end with it."""
    yield
    FakeTransport(home).stop_all()


def make_session(home: Path, hook: Hook, **kw: object) -> tuple[Session, FakeSlurm, FakeTransport]:
    fake = FakeSlurm(user=USER, on_call=hook)
    transport = FakeTransport(home)
    req = LaunchRequest(app=JUPYTER, cluster=CLUSTER, job=JobRequest(partition="gpu"), **kw)  # type: ignore[arg-type]
    said: list[str] = []
    session = Session(req, transport=transport, scheduler=Slurm(fake), progress=said.append)
    session.said = said  # type: ignore[attr-defined]
    return session, fake, transport


def said(session: Session) -> list[str]:
    return session.said  # type: ignore[attr-defined,no-any-return]


# ------------------------------------------------------------------- start
def test_start_pending_running_ready_then_close_cancels(runtime: Path, home: Path) -> None:
    session, fake, transport = make_session(home, runs_after(2))
    with session:
        info = session.start()
        job_id = info.job_id
        assert fake.jobs[job_id].state is JobState.RUNNING
        assert info.node == "node1"
        # The socket's directory was named here, unguessable, and given to the job's script.
        assert re.fullmatch(r"/tmp/nt\.[0-9a-f]{16}/s", info.remote)
        assert f"NT_RUN={info.remote[:-2]}\n" in fake.jobs[job_id].script
        assert transport.forwards == [("node1", info.local_port, info.remote)]
        assert info.url == f"http://127.0.0.1:{info.local_port}/lab?token={session.token}"
        assert session.tunnel is not None
        assert session.tunnel.alive()
        # The readiness probe went through the tunnel with the app's own authentication.
        assert f"GET /api/status token {session.token}" in transport.requests()
        # The token was written to the session directory, private to the user.
        d = session_dir_of(fake, job_id)
        assert (d / "token").read_text() == session.token
        assert (d.stat().st_mode & 0o777) == 0o700
        tunnel = session.tunnel.proc
    assert fake.jobs[job_id].state is JobState.CANCELLED  # Ctrl-C / leaving cancels the job
    assert tunnel is not None
    assert not tunnel.alive()
    assert not d.exists()  # the session directory on the cluster is gone
    assert not session.local_dir.exists()
    lines = said(session)
    assert any("PENDING" in line for line in lines)
    assert f"job {job_id} is running on node1; opening the tunnel" in lines
    assert f"cancelling job {job_id}" in lines


def test_job_death_before_ready_reports_the_error_and_the_log(runtime: Path, home: Path) -> None:
    def dies(call: Call, fake: FakeSlurm) -> None:
        if call.program == "squeue" and fake.jobs:
            job_id = max(fake.jobs)
            if fake.jobs[job_id].state is JobState.PENDING:
                fake.start(job_id)
                d = session_dir_of(fake, job_id)
                (d / "job.log").write_text("Traceback: No module named jupyterlab\n")
                (d / "error").write_text("jupyter not found on PATH on node1\n")
                fake.finish(job_id, JobState.FAILED)

    session, _fake, _ = make_session(home, dies)
    with pytest.raises(JobFailed) as err, session:
        session.start()
    assert "failed before the app was ready: jupyter not found on PATH" in err.value.message
    assert "No module named jupyterlab" in err.value.message  # the end of the job log
    assert not session.local_dir.exists()
    assert not list((home / ".nodetunnel" / "sessions").iterdir())


def test_a_job_winding_down_is_reported_without_waiting_for_its_clean_up(
    runtime: Path, home: Path
) -> None:
    def winds_down(call: Call, fake: FakeSlurm) -> None:
        if call.program == "squeue" and fake.jobs:
            job_id = max(fake.jobs)
            if fake.jobs[job_id].state is JobState.PENDING:
                fake.start(job_id)
                (session_dir_of(fake, job_id) / "error").write_text("the --setup command failed\n")
                fake.finish(job_id, JobState.COMPLETING)  # and SLURM's clean-up never ends

    session, fake, _ = make_session(home, winds_down)
    with pytest.raises(JobFailed) as err, session:
        session.start()
    assert "failed before the app was ready: the --setup command failed" in err.value.message
    assert fake.count("squeue") <= 2  # reported at the first answer that says so


def test_transient_scheduler_errors_while_pending_do_not_end_the_start(
    runtime: Path, home: Path
) -> None:
    session, fake, _ = make_session(home, runs_after(3))
    fake.fail_next("squeue", 2)  # a busy controller, twice, while the job waits
    with session:
        info = session.start()
        assert fake.jobs[info.job_id].state is JobState.RUNNING
    assert any("could not ask about job" in line for line in said(session))


def test_persistent_scheduler_errors_end_the_start_and_cancel(runtime: Path, home: Path) -> None:
    session, fake, _ = make_session(home, lambda call, fake: None)
    fake.fail_next("squeue", 50)
    with pytest.raises(Exception, match=r"SLURM controller|could not read the state"), session:
        session.start()
    (job,) = fake.jobs.values()
    assert job.state is JobState.CANCELLED  # a job that may still run is cancelled


# ------------------------------------------------------------------- keeping
def test_reconnect_after_a_dropped_tunnel(runtime: Path, home: Path) -> None:
    ended = {"at": 0}

    def hook(call: Call, fake: FakeSlurm) -> None:
        runs_after(0)(call, fake)
        if session.reconnects >= 1 and not ended["at"]:  # back: now the job ends
            ended["at"] = squeues(fake)
            fake.finish(max(fake.jobs), JobState.TIMEOUT)

    session, _fake, _ = make_session(home, hook, job_check_interval_s=0.2, warn_before_s=None)
    with session:
        info = session.start()
        first = session.tunnel.proc  # type: ignore[union-attr]
        assert first is not None
        first.stop(timeout_s=5)  # the tunnel's ssh dies
        why = session.watch()
        assert session.reconnects == 1
        assert session.tunnel is not None
        assert session.tunnel.proc != first
        assert session.tunnel.port == info.local_port  # the same local port
    assert why == f"job {info.job_id} reached its time limit (TIMEOUT); the session is over"
    assert "the tunnel dropped; reconnecting" in said(session)


def test_walltime_warning_then_end(runtime: Path, home: Path) -> None:
    notices: list[str] = []

    def hook(call: Call, fake: FakeSlurm) -> None:
        runs_after(0, time_left="0:30")(call, fake)
        if any("reaches its time limit" in n for n in notices):
            fake.finish(max(fake.jobs), JobState.TIMEOUT)

    session, fake, _ = make_session(home, hook, job_check_interval_s=0.2, warn_before_s=60.0)
    session._notice = notices.append
    with session:
        info = session.start()
        why = session.watch()
    (warning,) = [n for n in notices if "reaches its time limit" in n]
    assert warning.startswith(f"job {info.job_id} reaches its time limit in ")
    assert "TIMEOUT" in why
    assert fake.jobs[info.job_id].state is JobState.TIMEOUT  # ended by itself: not cancelled


# ------------------------------------------------------------------- the fleet
def connector(transport: FakeTransport, fake: FakeSlurm) -> Callable[[ClusterRef], Iterator[Link]]:
    @contextlib.contextmanager
    def connect(ref: ClusterRef) -> Iterator[Link]:
        if transport.unreachable:
            transport.run(["true"])  # raises as an unreachable cluster does
        yield Link(transport, Slurm(fake))

    return connect  # type: ignore[return-value]


def started_elsewhere(home: Path, fake: FakeSlurm, session_id: str = "nt-1234abcd") -> str:
    """A session another laptop started: its job runs, its directory holds token and endpoint."""
    d = home / ".nodetunnel" / "sessions" / session_id
    d.mkdir(parents=True, mode=0o700)
    script = f"#!/bin/sh\n#SBATCH --job-name=nodetunnel-jupyter-{session_id}\n#SBATCH --output={d}/job.log\n:\n"
    job_id = fake(["sbatch", "--parsable"], input=script, timeout_s=5).stdout.strip()
    fake.start(job_id)
    (d / "token").write_text("the-other-laptops-token")
    (d / "endpoint").write_text("socket=/tmp/nt.zzz999/s\nhost=node1\n")
    (d / "lease").write_text("1800\n")
    return job_id


def test_claim_a_session_from_another_machine(tmp_path: Path, home: Path) -> None:
    fake, transport = FakeSlurm(user=USER), FakeTransport(home)
    job_id = started_elsewhere(home, fake)
    store = SessionStore(tmp_path / "store")
    listing = reconcile(store, [CLUSTER], connect=connector(transport, fake))  # type: ignore[arg-type]
    (row,) = listing.rows
    assert (row.session_id, row.job_id, row.here, row.state) == (
        "nt-1234abcd", job_id, False, "RUNNING")  # fmt: skip
    record = claim(store, CLUSTER, "nt-1234", connect=connector(transport, fake))  # type: ignore[arg-type]
    assert (record.session_id, record.job_id, record.node) == ("nt-1234abcd", job_id, "node1")
    assert record.token == "the-other-laptops-token"
    assert record.remote == "/tmp/nt.zzz999/s"
    assert record.lease_s == 1800.0
    assert record.cluster == "fake"
    assert record.jump == ["login", "gateway"]
    assert store.find("nt-1234").job_id == job_id  # attachable here now
    # Claimed again: the record known here is never overwritten.
    again = claim(store, CLUSTER, job_id, connect=connector(transport, fake))  # type: ignore[arg-type]
    assert again == store.find(job_id)


def test_stop_many_on_two_clusters_one_unreachable(tmp_path: Path, home: Path) -> None:
    fake, transport = FakeSlurm(user=USER), FakeTransport(home)
    other_fake, other = FakeSlurm(user=USER, first_job_id=5000), FakeTransport(tmp_path / "h2")
    other.unreachable = True
    store = SessionStore(tmp_path / "store")
    ids = [started_elsewhere(home, fake, f"nt-0000000{i}") for i in range(3)]
    far = started_elsewhere(tmp_path / "h2", other_fake, "nt-ffffffff")
    for i, job_id in enumerate(ids):
        store.save(SessionRecord(session_id=f"nt-0000000{i}", app="jupyter", job_id=job_id,
                                 jump=["login", "gateway"], cluster="fake",
                                 session_dir=str(home / ".nodetunnel/sessions" / f"nt-0000000{i}")))  # fmt: skip
    store.save(SessionRecord(session_id="nt-ffffffff", app="jupyter", job_id=far,
                             jump=["far-login"], cluster="far"))  # fmt: skip

    def connect(ref: ClusterRef) -> contextlib.AbstractContextManager[Link]:
        if ref.name == "far":
            return connector(other, other_fake)(ref)  # type: ignore[return-value]
        return connector(transport, fake)(ref)  # type: ignore[return-value]

    report = stop_sessions(store, store.all(), connect=connect)
    assert sorted(r.job_id for r in report.stopped) == sorted(ids)
    assert all(fake.jobs[j].state is JobState.CANCELLED for j in ids)
    assert fake.count("scancel") == 1  # one cancel for all of a cluster's sessions
    assert not list((home / ".nodetunnel" / "sessions").iterdir())
    ((ref, group, why),) = report.failed
    assert ref.name == "far"
    assert [r.session_id for r in group] == ["nt-ffffffff"]
    assert "cannot reach the cluster" in why
    assert [r.session_id for r in store.all()] == ["nt-ffffffff"]  # kept, to stop again later
    assert other_fake.jobs[far].state is JobState.RUNNING


def test_reconcile_forgets_ended_sessions_and_reports_unreachable(
    tmp_path: Path, home: Path
) -> None:
    fake, transport = FakeSlurm(user=USER), FakeTransport(home)
    store = SessionStore(tmp_path / "store")
    live = started_elsewhere(home, fake, "nt-00000001")
    gone = started_elsewhere(home, fake, "nt-00000002")
    for sid, job_id in (("nt-00000001", live), ("nt-00000002", gone)):
        store.save(SessionRecord(session_id=sid, app="jupyter", job_id=job_id,
                                 jump=["login", "gateway"], cluster="fake",
                                 session_dir=str(home / ".nodetunnel/sessions" / sid)))  # fmt: skip
    fake.finish(gone, JobState.COMPLETED)
    fake.forget(gone)
    listing = reconcile(store, connect=connector(transport, fake))  # type: ignore[arg-type]
    rows = {r.session_id: r for r in listing.rows}
    assert listing.unreachable == []
    assert rows["nt-00000001"].state == "RUNNING"
    assert rows["nt-00000001"].here
    assert rows["nt-00000002"].state == "ENDED"
    assert [r.session_id for r in store.all()] == ["nt-00000001"]
    assert not (home / ".nodetunnel/sessions/nt-00000002").exists()
    transport.unreachable = True
    listing = reconcile(store, connect=connector(transport, fake))  # type: ignore[arg-type]
    (row,) = listing.rows
    assert row.state == "UNKNOWN"
    assert "cannot reach the cluster" in row.problem
    ((ref, why),) = listing.unreachable
    assert ref.name == "fake"
    assert why == row.problem
    assert re.fullmatch(r"nt-0{7}1", row.session_id)


# ------------------------------------------------------------------- --keep
def test_keep_leaves_a_started_session_running(runtime: Path, home: Path) -> None:
    store = SessionStore(runtime.parent / "store")
    session, fake, _ = make_session(home, runs_after(0), keep=True)
    session.store = store
    with session:
        info = session.start()
    assert fake.jobs[info.job_id].state is JobState.RUNNING
    (record,) = store.all()
    assert (record.job_id, record.pid, record.tunnel_pid) == (info.job_id, None, None)


@pytest.mark.parametrize("how", ["fails", "times out"])
def test_keep_never_leaves_an_untracked_job_after_a_failed_start(
    runtime: Path, home: Path, how: str
) -> None:
    def hook(call: Call, fake: FakeSlurm) -> None:
        if how == "fails" and call.program == "squeue" and fake.jobs:
            fake.finish(max(fake.jobs), JobState.FAILED)

    session, fake, _ = make_session(home, hook, keep=True, start_timeout_s=1.0)
    notices: list[str] = []
    session._notice = notices.append
    with pytest.raises(Exception, match=r"failed before the app was ready|timed out"), session:
        session.start()
    (job,) = fake.jobs.values()
    assert job.state in (JobState.CANCELLED, JobState.FAILED)
    if how == "times out":
        assert job.state is JobState.CANCELLED
        assert any("never became ready" in n for n in notices)


# ------------------------------------------------------------------- politeness
class FakeClock:
    """time.monotonic/time/sleep for the start-up wait: a 30-minute queue in a second."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def strftime(self, *args: object) -> str:
        import time

        return time.strftime(*args)  # type: ignore[arg-type]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The start-up wait on a fake clock; :func:`real_time_from_now` ends that (the tunnel
    then waits for real)."""
    from nodetunnel import proc
    from nodetunnel.session import startup

    fake = FakeClock()
    monkeypatch.setattr(proc, "time", fake)
    monkeypatch.setattr(startup, "time", fake)
    return fake


def real_time_from_now(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from nodetunnel import proc

    monkeypatch.setattr(proc, "time", time)


def test_a_long_pending_wait_asks_the_scheduler_at_most_twice_a_minute(
    runtime: Path, home: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    from nodetunnel.session import startup

    t0 = clock.now
    asked_at: list[float] = []

    def hook(call: Call, fake: FakeSlurm) -> None:
        if call.program == "squeue":  # the job's state, or its place in the queue
            asked_at.append(clock.now - t0)
        if fake.jobs and clock.now - t0 >= 30 * 60:  # it starts after half an hour
            job_id = max(fake.jobs)
            if fake.jobs[job_id].state is JobState.PENDING:
                fake.start(job_id)
                publish(fake, job_id)
                real_time_from_now(monkeypatch)  # the tunnel waits for real

    fake = FakeSlurm(user=USER, on_call=hook)
    transport = FakeTransport(home)
    req = LaunchRequest(app=JUPYTER, cluster=CLUSTER, job=JobRequest(), start_timeout_s=3600)
    session = Session(req, transport=transport, scheduler=Slurm(fake))

    # Every endpoint read while pending moves the fake clock too (the job starts on time).
    real_run = transport.run

    def run(argv: list[str], **kw: object) -> object:
        if argv[:1] == ["cat"] and fake.jobs:
            hook(Call(["cat"], None, 1.0, False), fake)
        return real_run(argv, **kw)  # type: ignore[arg-type]

    transport.run = run  # type: ignore[method-assign,assignment]
    with session:
        session.start()
    first_seconds = [t for t in asked_at if t < startup.FIRST_POLLS_S]
    first_minute = [t for t in asked_at if startup.FIRST_POLLS_S <= t < 60]
    later = [t for t in asked_at if 60 <= t < 30 * 60]
    # Often just after sbatch, when most jobs start (the tunnel opens as soon as one runs)...
    assert len(first_seconds) <= startup.FIRST_POLLS_S / startup.FIRST_POLL_EVERY_S + 1
    # ... then its state with a backoff up to every 3 s and its place every 15 s
    assert len(first_minute) <= 25 + 60 / startup.QUEUE_EVERY_S + 1
    assert len(later) <= 2 * 29 + 1  # at most two a minute after the first minute, all told
    assert max(asked_at) >= 30 * 60  # and the start was noticed ...
    assert max(asked_at) - 30 * 60 < 10  # ... within seconds of the job starting


def test_a_patient_poll_falls_back_to_the_job_state_and_sees_it_end(
    runtime: Path, home: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    # After the first minute one query a poll (the partition's pending jobs); if that one
    # fails, the job's own state is asked; a job no longer pending is asked about, and
    # one that ended fails the start.
    t0 = clock.now
    queue_failed: list[float] = []
    state_asked: list[float] = []

    def hook(call: Call, fake: FakeSlurm) -> None:
        t = clock.now - t0
        if call.program == "squeue" and "--start" in call.argv and t >= 70 and not queue_failed:
            queue_failed.append(t)
            fake.fail_next("squeue")  # this very query fails
        elif call.program == "squeue" and "--start" not in call.argv:
            state_asked.append(t)
        if fake.jobs and t >= 150:
            job_id = max(fake.jobs)
            if fake.jobs[job_id].state is JobState.PENDING:
                fake.finish(job_id, JobState.FAILED)

    fake = FakeSlurm(user=USER, on_call=hook)
    req = LaunchRequest(app=JUPYTER, cluster=CLUSTER, job=JobRequest(), start_timeout_s=600)
    session = Session(req, transport=FakeTransport(home), scheduler=Slurm(fake))
    with session, pytest.raises(JobFailed, match="failed before the app was ready"):
        session.start()
    assert queue_failed  # the failed queue query ...
    assert queue_failed[0] in state_asked  # ... was followed at once by the job's state
    assert max(state_asked) >= 150  # the end was seen through the job's own state


@pytest.mark.parametrize(("multiplex", "most"), [(True, 15), (False, 4)])
def test_the_first_seconds_are_eager_only_over_a_shared_connection(
    runtime: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    multiplex: bool,
    most: int,
) -> None:
    # Without connection sharing every question is a login at each hop: no eager phase.
    import dataclasses

    t0 = clock.now
    asked_at: list[float] = []

    def hook(call: Call, fake: FakeSlurm) -> None:
        if call.program == "squeue":
            asked_at.append(clock.now - t0)
        if fake.jobs and clock.now - t0 >= 2.0:  # it starts 2 s after sbatch
            job_id = max(fake.jobs)
            if fake.jobs[job_id].state is JobState.PENDING:
                fake.start(job_id)
                publish(fake, job_id)
                real_time_from_now(monkeypatch)

    fake = FakeSlurm(user=USER, on_call=hook)
    cluster = dataclasses.replace(CLUSTER, multiplex=multiplex)
    req = LaunchRequest(app=JUPYTER, cluster=cluster, job=JobRequest(), start_timeout_s=60)
    session = Session(req, transport=FakeTransport(home), scheduler=Slurm(fake))
    with session:
        session.start()
    assert len([t for t in asked_at if t < 2.0]) <= most


# ------------------------------------------------------------------- the secret
def test_the_token_never_goes_to_a_listener_that_is_not_the_forward(
    runtime: Path, home: Path
) -> None:
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from nodetunnel.errors import PortInUse
    from nodetunnel.session import Tunnel

    seen: list[str] = []

    class Foreign(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "-")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Foreign)  # another program holds the port
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    runtime.mkdir(parents=True, exist_ok=True)
    try:
        tunnel = Tunnel(FakeTransport(home), JUPYTER, "s3cret-token", node="node1",
                        remote="/tmp/nt.abc123/s", local_dir=runtime)  # fmt: skip
        with tunnel, pytest.raises(PortInUse):
            tunnel.open(port)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the foreign listener is still there, untouched
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert not any("s3cret-token" in h for h in seen)
    assert seen == []  # not even a request without the token: it was never ours


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        # Without connection sharing the tunnel logs in itself, away from the terminal.
        ("ntbob@login: Permission denied (keyboard-interactive).\r\n"
         "kex_exchange_identification: Connection closed by remote host\r\n"
         "Connection closed by UNKNOWN port 65535\r\n", "SshError"),
        ("ssh: connect to host node1 port 22: Connection refused\r\n", "TunnelError"),
    ],
)  # fmt: skip
def test_a_tunnel_that_would_need_a_code_says_so_and_is_not_retried(
    runtime: Path, home: Path, tmp_path: Path, stderr: str, expected: str
) -> None:
    import sys

    from nodetunnel.errors import ExitCode, SshError, TunnelError
    from nodetunnel.session import Tunnel

    failing = tmp_path / "failing-ssh"
    failing.write_text(f"#!{sys.executable} -IS\nimport sys\nsys.stderr.write({stderr!r})\n"
                       "sys.exit(255)\n")  # fmt: skip
    failing.chmod(0o755)

    class NoLogin(FakeTransport):
        def forward_argv(self, node: str, local_port: int, remote: str,
                         extra: object = ()) -> list[str]:  # fmt: skip
            return [str(failing), "-N", "-L", f"127.0.0.1:{local_port}:{remote}", node]

    runtime.mkdir(parents=True, exist_ok=True)
    tunnel = Tunnel(NoLogin(home), JUPYTER, "s3cret-token", node="node1",
                    remote="/tmp/nt.abc123/s", local_dir=runtime)  # fmt: skip
    with tunnel, pytest.raises((SshError, TunnelError)) as info:
        tunnel.open(0, reach_timeout_s=10)
    err = info.value
    assert type(err).__name__ == expected  # a session's start retries only a TunnelError
    assert err.exit_code == ExitCode.CONNECTION
    if expected == "SshError":
        assert err.message.startswith(
            "authentication at login asks for a one-time code or password (keyboard-interactive), "
            "and this ssh had no terminal to ask it on (on the way login -> gateway)"
        )
        assert "multiplex = true" in (err.hint or "")


def test_after_stop_no_file_here_holds_the_token(runtime: Path, home: Path, tmp_path: Path) -> None:
    from nodetunnel.session.fleet import open_page

    store = SessionStore(tmp_path / "store")
    session, fake, transport = make_session(home, runs_after(0), keep=True)
    session.store = store
    with session:
        session.start()
        token = session.token
        page = open_page(store, store.find(session.session_id))  # 'nodetunnel open'
        assert token in page.read_text()
        session.handed_over = True  # as if a keeper had it: the record stays for 'stop'
    import dataclasses

    # The keeper is gone (this test process must not be signalled); its tunnel is still up.
    store.save(dataclasses.replace(store.find(session.session_id), pid=None, pid_start=None))
    stop_sessions(store, store.all(), connect=connector(transport, fake))  # type: ignore[arg-type]
    assert store.all() == []
    for root in (tmp_path / "store", runtime):
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                assert token not in path.read_text(errors="replace"), path


def test_list_shows_what_it_can_and_names_an_unreadable_record(tmp_path: Path, home: Path) -> None:
    fake, transport = FakeSlurm(user=USER), FakeTransport(home)
    store = SessionStore(tmp_path / "store")
    live = started_elsewhere(home, fake, "nt-00000001")
    store.save(SessionRecord(session_id="nt-00000001", app="jupyter", job_id=live,
                             jump=["login", "gateway"], cluster="fake"))  # fmt: skip
    (store.root / "nt-00000002.json").write_text('{"version": 1, "jump": 5}')
    (store.root / "nt-00000003.json").write_text('{"version": 99, "session_id": "nt-00000003"}')
    listing = reconcile(store, connect=connector(transport, fake))  # type: ignore[arg-type]
    assert [r.session_id for r in listing.rows] == ["nt-00000001"]
    assert len(listing.unreadable) == 2
    assert any("nt-00000002.json" in p for p in listing.unreadable)
    assert any("newer nodetunnel" in p for p in listing.unreadable)


def test_a_profile_without_connection_sharing_writes_no_control_master(runtime: Path) -> None:
    from nodetunnel.session.lifecycle import default_transport

    cluster = ClusterRef("lab", ("login", "gateway"), multiplex=False, connect_timeout_s=75)
    runtime.mkdir(parents=True, exist_ok=True)
    transport = default_transport(cluster, runtime / "nt-00000001")
    transport.connect()
    text = (runtime / "nt-00000001" / "ssh_config").read_text()
    assert "ControlMaster" not in text
    assert "ConnectTimeout 75" in text
    record_fields = cluster.record_fields()
    again = ClusterRef.of(SessionRecord(session_id="nt-00000001", app="jupyter", job_id="1",
                                        **record_fields))  # fmt: skip
    assert again == cluster


# ------------------------------------------------------------------- ssh entries
def test_ssh_entries_name_only_the_node_and_go_with_their_session(
    tmp_path: Path, home: Path, runtime: Path
) -> None:
    import stat

    from nodetunnel.session import sshhosts

    fake, transport = FakeSlurm(user=USER), FakeTransport(home)
    store = SessionStore(tmp_path / "state" / "sessions")
    job = started_elsewhere(home, fake, "nt-0000000a")
    record = SessionRecord(session_id="nt-0000000a", app="jupyter", job_id=job, node="gpu-17",
                           jump=["login", "gw"], user="jdoe", cluster="fake",
                           ssh_includes=["/etc/site ssh config"])  # fmt: skip
    store.save(record)
    path, name = sshhosts.add(store, record)
    assert name == "nodetunnel-nt-0000000a"
    text = path.read_text()
    assert "Host nodetunnel-nt-0000000a\n    HostName gpu-17\n    HostKeyAlias gpu-17\n" in text
    assert "    ProxyJump jdoe@login,jdoe@gw\n" in text
    assert 'Include "/etc/site ssh config"' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sshhosts.include_line(path) == f'Include "{path}"'
    assert "Match host nodetunnel-nt-0000000a,login,gw\n" in text  # the extras apply only there
    # A keeper rewriting the session's record (a reconnect) keeps the entry.
    store.save(SessionRecord(session_id="nt-0000000a", app="jupyter", job_id=job, node="gpu-17",
                             jump=["login", "gw"], user="jdoe", cluster="fake", reconnects=1))  # fmt: skip
    assert "Host nodetunnel-nt-0000000a" in (sshhosts.sync(store) or path).read_text()
    stop_sessions(store, store.all(), connect=connector(transport, fake))  # type: ignore[arg-type]
    assert "Host nodetunnel-" not in path.read_text()  # gone with the session


def _ssh_g(config: Path, *args: str) -> dict[str, str]:
    """``ssh -G`` (parses the config, connects nowhere): the first value of each keyword."""
    import subprocess

    done = subprocess.run(["ssh", "-G", "-F", str(config), *args], capture_output=True,
                          text=True, timeout=10, check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        seen.setdefault(key, value)
    return seen


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
@pytest.mark.parametrize("user", ["jdoe", None])
def test_an_ssh_entry_s_hops_ride_nodetunnel_s_shared_connections(
    tmp_path: Path, runtime: Path, user: str | None
) -> None:
    from nodetunnel.session import sshhosts
    from nodetunnel.transport.openssh import render_config
    from nodetunnel.transport.sharing import control_dir_for

    store = SessionStore(tmp_path / "state" / "sessions")
    record = SessionRecord(session_id="nt-0000000a", app="jupyter", job_id="7", node="gpu-17",
                           jump=["login", "gw"], user=user, cluster="fake")  # fmt: skip
    store.save(record)
    path, name = sshhosts.add(store, record)
    shared = control_dir_for(runtime, ClusterRef.of(record).key)  # what nodetunnel uses there
    session_config = tmp_path / "session ssh_config"
    session_config.write_text(render_config(control_dir=shared, settings=SshSettings(),
                                            includes=[], hops=record.jump))  # fmt: skip
    at = f"{user}@" if user else ""
    # The hops as nodetunnel's own commands reach them (and hold their shared connections) ...
    ours = {"login": _ssh_g(session_config, f"{at}login"),
            "gw": _ssh_g(session_config, "-J", f"{at}login", f"{at}gw")}  # fmt: skip
    # ... and as the ssh that the entry's ProxyJump starts for each of them does:
    # ssh [-l USER] [-J REST] -F FILE -W '[%h]:%p' HOP.
    lone = ["-l", user] if user else []
    theirs = {"login": _ssh_g(path, *lone, "login"),
              "gw": _ssh_g(path, *lone, "-J", f"{at}login", "gw")}  # fmt: skip
    for hop in ("login", "gw"):
        assert theirs[hop]["controlpath"] == ours[hop]["controlpath"], hop
        assert theirs[hop]["controlpath"].startswith(f"{shared}/")
        assert theirs[hop]["controlmaster"] in ("no", "false")  # a client, never a new master
    assert ours["login"]["controlpath"] != ours["gw"]["controlpath"]
    entry = _ssh_g(path, name)
    assert entry["hostname"] == "gpu-17"
    assert entry["proxyjump"] == f"{at}login,{at}gw"
    assert "controlpath" not in entry  # the node itself: the entry sets none


def test_an_ssh_entry_without_connection_sharing_names_no_control_path(
    tmp_path: Path, runtime: Path
) -> None:
    from nodetunnel.session import sshhosts

    store = SessionStore(tmp_path / "state" / "sessions")
    record = SessionRecord(session_id="nt-0000000b", app="jupyter", job_id="7", node="gpu-17",
                           jump=["login"], cluster="fake", multiplex=False)  # fmt: skip
    store.save(record)
    path, _ = sshhosts.add(store, record)
    assert "Control" not in path.read_text()


def test_an_app_that_falls_back_to_a_port_is_reached_there(
    runtime: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodetunnel.session import startup

    monkeypatch.setattr(startup, "ENDPOINT_FIRST_S", 0.3)

    def falls_back(call: Call, fake: FakeSlurm) -> None:
        if call.program != "squeue" or not fake.jobs:
            return
        job_id = max(fake.jobs)
        if fake.jobs[job_id].state is JobState.PENDING:
            fake.start(job_id)
            d = session_dir_of(fake, job_id)
            (d / "endpoint").write_text("port=43210\nhost=node1\n")

    session, _fake, transport = make_session(home, falls_back, start_timeout_s=30.0)
    transport.set_app_status(503)  # nothing answers on the socket: the app is on a port
    real_run = transport.run

    def run(argv: list[str], **kw: object) -> object:
        done = real_run(argv, **kw)  # type: ignore[arg-type]
        if argv[:1] == ["cat"] and "port=43210" in done.stdout:
            transport.set_app_status(200)  # what the tunnel to the port reaches
        return done

    transport.run = run  # type: ignore[method-assign,assignment]
    notices: list[str] = []
    session._notice = notices.append
    with session:
        info = session.start()
        assert info.remote == "127.0.0.1:43210"
    assert any("cannot listen on a Unix socket" in n and "127.0.0.1:43210" in n for n in notices)
