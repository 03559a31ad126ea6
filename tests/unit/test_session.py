"""nodetunnel.session: local ports, the HTTP probe, Ctrl-C deferral, --dry-run plans, the browser file.

Nothing here connects anywhere: sockets and a tiny HTTP server are on 127.0.0.1,
and the session's private directory is under tmp_path (XDG_RUNTIME_DIR).
"""

from __future__ import annotations

import html
import os
import re
import shlex
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nodetunnel.apps import JUPYTER
from nodetunnel.errors import SshError, TunnelError, UsageError
from nodetunnel.proc import NotReady
from nodetunnel.scheduler import JobRequest, JobState, JobStatus
from nodetunnel.session import (
    JOB_CHECK_INTERVAL_S,
    Environment,
    LaunchRequest,
    Session,
    SessionInfo,
    choose_local_port,
    keeper,
    lifecycle,
    plan,
    port_is_free,
    sigint_deferred,
)
from nodetunnel.session import tunnel as tunnel_mod
from nodetunnel.state import SessionRecord, SessionStore
from nodetunnel.transport import ClusterRef

SRC = Path(lifecycle.__file__).parents[2]  # what PYTHONPATH needs for nodetunnel


def probe_http(port: int, path: str, token: str, timeout_s: float = 5) -> int:
    """The tunnel's probe as JupyterLab's recipe authenticates it."""
    return tunnel_mod.probe_http(port, path, JUPYTER.auth_headers(token), timeout_s=timeout_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket listening on 127.0.0.1 (a port some other program holds)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s
    finally:
        s.close()


def request(**kw: object) -> LaunchRequest:
    jump = kw.pop("jump", ("login", "gateway"))
    user = kw.pop("user", None)
    args: dict[str, object] = {
        "app": JUPYTER,
        "cluster": ClusterRef(None, jump, user),  # type: ignore[arg-type]
        "job": JobRequest(partition="gpu", gres="gpu:1", time="2:00:00", mem="16G"),
    }
    args.update(kw)
    return LaunchRequest(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------- local ports
def test_port_is_free(listener: socket.socket) -> None:
    assert not port_is_free(listener.getsockname()[1])
    assert port_is_free(free_port())


def test_choose_local_port_returns_a_free_requested_port() -> None:
    port = free_port()
    assert choose_local_port(port) == port


def test_choose_local_port_refuses_a_taken_requested_port(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(UsageError) as info:
        choose_local_port(port)
    assert str(port) in info.value.message
    assert info.value.hint is not None
    assert "--port" in info.value.hint


def test_choose_local_port_default_when_free() -> None:
    assert JUPYTER.preferred_port == 8888
    port = free_port()  # stands in for 8888, which may be taken on this machine
    assert choose_local_port(None, preferred=port) == port


def test_choose_local_port_another_when_default_taken(listener: socket.socket) -> None:
    taken = listener.getsockname()[1]
    port = choose_local_port(None, preferred=taken)
    assert port != taken
    assert 0 < port < 65536
    assert port_is_free(port)


# ------------------------------------------------------------------- probe_http
def test_probe_http_closed_port_is_not_ready() -> None:
    port = free_port()
    with pytest.raises(NotReady) as info:
        probe_http(port, "/api/status", "tok", timeout_s=2)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_probe_http_non_http_answer_is_not_ready(listener: socket.socket) -> None:
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with pytest.raises(NotReady):
            probe_http(port, "/", "tok", timeout_s=2)
    finally:
        t.join(timeout=5)


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]
    status = 200

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[ThreadingHTTPServer, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_probe_http_returns_status_and_sends_the_token(
    http_server: tuple[ThreadingHTTPServer, list[tuple[str, str | None]]],
) -> None:
    server, seen = http_server
    port = server.server_address[1]
    assert probe_http(port, "/api/status", "t0k-en_value", timeout_s=5) == 200
    assert seen == [("/api/status", "token t0k-en_value")]


@pytest.mark.parametrize("status", [403, 404, 500, 502])
def test_probe_http_returns_error_statuses(
    http_server: tuple[ThreadingHTTPServer, list[tuple[str, str | None]]], status: int
) -> None:
    server, _ = http_server
    server.RequestHandlerClass.status = status  # type: ignore[attr-defined]
    assert probe_http(server.server_address[1], "/", "tok", timeout_s=5) == status


# --------------------------------------------------------------- sigint_deferred
def test_sigint_deferred_holds_ctrl_c_until_the_block_ends() -> None:
    before = signal.getsignal(signal.SIGINT)
    steps: list[str] = []

    def guarded() -> None:
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # plenty of bytecodes for the handler to run in
                pass
            steps.append("end of block")
        steps.append("after the block")  # not reached: KeyboardInterrupt comes first

    with pytest.raises(KeyboardInterrupt):
        guarded()
    assert steps == ["end of block"]
    assert signal.getsignal(signal.SIGINT) is before


# The CLI's SIGHUP handler silences the closed terminal before it interrupts: holding the
# signal back must not skip that (the clean-up's output would fail: exit code 120). At
# logout a session may get SIGTERM and then SIGHUP: both handlers run, each once.
@pytest.mark.parametrize(
    ("sent", "handled"),
    [
        ([signal.SIGHUP, signal.SIGHUP], [signal.SIGHUP]),
        ([signal.SIGTERM, signal.SIGHUP], [signal.SIGTERM, signal.SIGHUP]),
    ],
    ids=["a hang-up twice", "terminate, then hang-up"],
)
def test_sigint_deferred_hands_each_held_signal_to_its_handler(
    sent: list[int], handled: list[int]
) -> None:
    seen: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt  # as the CLI's does: the others must still run

    def guarded() -> None:
        with sigint_deferred():
            for sig in sent:
                os.kill(os.getpid(), sig)
            for _ in range(1000):
                pass
            assert seen == []  # held while the block runs

    before = {sig: signal.signal(sig, handler) for sig in set(sent)}
    try:
        with pytest.raises(KeyboardInterrupt):
            guarded()
        assert sorted(seen) == sorted(handled)  # after the block, each once
        assert all(signal.getsignal(sig) is handler for sig in before)
    finally:
        for sig, h in before.items():
            signal.signal(sig, h)


def test_sigint_deferred_without_ctrl_c_does_nothing() -> None:
    before = signal.getsignal(signal.SIGINT)
    with sigint_deferred():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_sigint_deferred_lets_an_error_in_the_block_through() -> None:
    before = signal.getsignal(signal.SIGINT)

    def guarded() -> None:
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("inner")

    with pytest.raises(ValueError, match="inner"):
        guarded()
    assert signal.getsignal(signal.SIGINT) is before


def test_sigint_deferred_in_a_thread_is_a_no_op() -> None:
    before = signal.getsignal(signal.SIGINT)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with sigint_deferred():
                pass
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=5)
    assert errors == []
    assert signal.getsignal(signal.SIGINT) is before


# -------------------------------------------------------------------------- plan
def test_plan_shows_script_submit_and_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = "SENTINEL-TOKEN-never-in-a-plan"
    monkeypatch.setattr(lifecycle.secrets, "token_urlsafe", lambda _n=32: sentinel)
    monkeypatch.setattr(lifecycle.secrets, "token_hex", lambda _n=4: "deadbeef")
    text = plan(request(user="alice"))
    lines = text.splitlines()
    assert "#!/bin/sh" in lines
    sbatch = [ln for ln in lines if ln.startswith("#SBATCH ")]
    assert "#SBATCH --partition=gpu" in sbatch
    assert "#SBATCH --gres=gpu:1" in sbatch
    assert "#SBATCH --time=2:00:00" in sbatch
    assert any(ln.startswith("#SBATCH --output=") for ln in sbatch)

    (submit,) = [ln for ln in lines if "sbatch --parsable" in ln]
    submit_argv = shlex.split(submit)
    assert submit_argv[0] == "ssh"
    assert submit_argv[submit_argv.index("-J") + 1] == "alice@login"
    assert submit_argv[submit_argv.index("--") + 1] == "alice@gateway"
    assert submit_argv[-1].startswith("sbatch --parsable")

    (tunnel,) = [ln for ln in lines if " -L " in ln]
    assert " -L 127.0.0.1:8888:" in tunnel
    tunnel_argv = shlex.split(tunnel)
    assert tunnel_argv[tunnel_argv.index("-J") + 1] == "alice@login,alice@gateway"
    assert tunnel_argv[-1] == "alice@NODE"
    assert "ExitOnForwardFailure=yes" in tunnel_argv

    # No secret in a plan: the token exists only in a real session.
    assert sentinel not in text
    assert "deadbeef" not in text
    assert "token=" not in text
    assert not re.search(r"JUPYTER_TOKEN=|--(ServerApp|NotebookApp|IdentityProvider)\.token", text)


def test_plan_uses_the_requested_port() -> None:
    assert " -L 127.0.0.1:9999:/tmp/nt.RANDOM0123456789/s " in plan(request(local_port=9999))


def test_plan_includes_the_environment() -> None:
    env = Environment(modules=("cuda/12",), venv="~/venvs/lab", workdir="/scratch/me")
    text = plan(request(env=env))
    assert "module load cuda/12 " in text
    assert '. "$HOME"/venvs/lab/bin/activate' in text
    assert "cd /scratch/me " in text


def test_plan_refuses_bad_hosts() -> None:
    with pytest.raises(UsageError):
        plan(request(jump=("login", "-oProxyCommand=x")))


# ------------------------------------------------------------------ the session
@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private runtime directory under tmp_path (not the real XDG_RUNTIME_DIR)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / "nodetunnel"


def _info(url: str) -> SessionInfo:
    return SessionInfo(
        session_id="nt-test",
        job_id="123",
        node="node1",
        local_port=8888,
        url=url,
        remote="/tmp/nt.abcdef/s",
        session_dir="/home/alice/.nodetunnel/sessions/nt-test",
        time_left_s=3600,
    )


def test_session_is_set_up_without_connecting(runtime: Path) -> None:
    s = Session(request(user="alice"))
    assert re.fullmatch(r"nt-[0-9a-f]{8}", s.session_id)
    assert s.job_name == f"nodetunnel-jupyter-{s.session_id}"
    assert s.req.job.job_name == s.job_name
    assert s.req.job.partition == "gpu"
    assert len(s.token) >= 32
    ssh = s.transport.ssh  # type: ignore[attr-defined]
    assert ssh.jump == ["login", "gateway"]
    assert ssh.config_path.parent.parent == runtime
    assert not ssh.config_path.exists()  # nothing written before start()
    # A second session gets its own ID and token.
    other = Session(request())
    assert (other.session_id, other.token) != (s.session_id, s.token)


def test_browser_file_is_private_and_escaped(runtime: Path) -> None:
    s = Session(request())
    s.local_dir.mkdir(mode=0o700)  # start() makes it
    url = "http://127.0.0.1:8888/lab?token=a&b=\"<c>'d"
    s.info = _info(url)
    old = os.umask(0o000)  # even with a lax umask the page is 0600
    try:
        page = s.browser_file()
    finally:
        os.umask(old)
    assert page.parent == s.local_dir
    assert page.parent.parent == runtime
    st = page.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()
    text = page.read_text()
    escaped = html.escape(url, quote=True)
    assert f'content="0; url={escaped}"' in text
    assert f'href="{escaped}"' in text
    assert url not in text
    assert "<c>" not in text
    assert "Open jupyter" in text


def test_browser_file_overwrites_and_stays_private(runtime: Path) -> None:
    s = Session(request())
    s.local_dir.mkdir(mode=0o700)
    s.info = _info("http://127.0.0.1:8888/lab?token=first")
    s.browser_file()
    s.info = _info("http://127.0.0.1:8888/lab?token=second")
    page = s.browser_file()
    assert "second" in page.read_text()
    assert "first" not in page.read_text()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600


def test_browser_file_needs_a_started_session(runtime: Path) -> None:
    with pytest.raises(RuntimeError):
        Session(request()).browser_file()


def test_session_without_start_cleans_up_locally(runtime: Path) -> None:
    said: list[str] = []
    with Session(request(), progress=said.append) as s:
        s.local_dir.mkdir(mode=0o700)
        (s.local_dir / "x").write_text("x")
    assert not s.local_dir.exists()
    assert said == []  # nothing submitted, nothing to cancel


def test_session_info_to_json() -> None:
    info = _info("http://127.0.0.1:8888/lab?token=x")
    data = info.to_json()
    assert data["job_id"] == "123"
    assert data["local_port"] == 8888
    assert set(data) == {
        "extras",
        "session_id",
        "job_id",
        "node",
        "local_port",
        "url",
        "remote",
        "session_dir",
        "time_left_s",
    }


# --------------------------------------------------------------- session life
@pytest.mark.parametrize(("lease_s", "every_s"), [(10, 3.33), (60, 20), (1800, 300), (86400, 300)])
def test_heartbeat_interval(lease_s: float, every_s: float) -> None:
    assert keeper.heartbeat_interval_s(lease_s) == pytest.approx(every_s, abs=0.01)
    # Several check-ins per lease: one lost to a network drop does not end the job.
    assert keeper.heartbeat_interval_s(lease_s) * 3 <= lease_s + 0.01


@pytest.mark.parametrize(
    ("left_s", "words"), [(45, "in 45 s"), (600, "in 10 min"), (3 * 3600 + 300, "in 3 h 5 min")]
)
def test_walltime_warning_says_when(left_s: int, words: str) -> None:
    import time

    text = keeper.walltime_warning("123", time.time() + left_s + 0.5)
    assert text.startswith(f"job 123 reaches its time limit {words} (at ")
    assert "save your work" in text


def test_job_end_message_names_the_cause() -> None:
    from nodetunnel.scheduler.base import JobState

    assert "reached its time limit (TIMEOUT)" in keeper.job_end_message("7", JobState.TIMEOUT)
    assert "node failed" in keeper.job_end_message("7", JobState.NODE_FAIL)
    assert "was cancelled" in keeper.job_end_message("7", JobState.CANCELLED)
    assert keeper.job_end_message("7", JobState.ENDED).startswith("job 7 ended (ENDED)")


# ---------------------------------------------------------------- the hand-over
_TAKE_OVER = """
import os, sys
from pathlib import Path
from nodetunnel.state import SessionStore
from nodetunnel.proc import ProcessRef
store = SessionStore(Path(sys.argv[1]))
record = store.load(sys.argv[2])
me = ProcessRef.of(os.getpid())
record.pid, record.pid_start = me.pid, me.start_ticks
store.save(record)
import time
time.sleep(30)
"""


def _started(tmp_path: Path) -> Session:
    from nodetunnel.state import SessionRecord, SessionStore

    store = SessionStore(tmp_path / "store")
    s = Session(request(), store=store)
    s.local_dir.mkdir(mode=0o700)
    (s.local_dir / "ssh_config").write_text("# the session's\n")
    s.info = _info("http://127.0.0.1:8888/lab?token=T")
    store.save(SessionRecord(session_id=s.session_id, app="jupyter", job_id="123",
                             jump=["login", "gateway"], pid=os.getpid()))  # fmt: skip
    return s


def test_detach_returns_once_the_background_process_has_taken_over(runtime: Path,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    import sys

    s = _started(tmp_path)
    code = [sys.executable, "-c", _TAKE_OVER, str(tmp_path / "store")]
    child = s.detach(code, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert s.store is not None
        assert s.store.load(s.session_id).pid == child.pid
        assert child.pid != os.getpid()
        s.close()  # after the hand-over: touches nothing
        assert (s.local_dir / "ssh_config").exists()
        assert s.store.load(s.session_id).pid == child.pid
    finally:
        child.stop(timeout_s=5)


def test_detach_reports_a_background_process_that_dies(runtime: Path, tmp_path: Path) -> None:
    import sys

    s = _started(tmp_path)
    code = [sys.executable, "-c", "import sys; print('cannot start: no such thing'); sys.exit(3)"]
    with pytest.raises(TunnelError) as err:
        s.detach(code)
    assert "ended before it took the session over" in err.value.message
    assert "cannot start: no such thing" in err.value.message
    assert s.log_path().name in (err.value.hint or "")
    assert not s.handed_over  # the usual clean-up is still to run


# ------------------------------------------------------------- watching the job
class _Status:
    """Stands in for Slurm.status_of: the given state, or the given error."""

    def __init__(self, answer: JobState | Exception) -> None:
        self.answer = answer

    def status_of(self, job_id: str) -> JobStatus:
        if isinstance(self.answer, Exception):
            raise self.answer
        return JobStatus(job_id, self.answer, nodelist="node1", nodes=("node1",))


@pytest.mark.parametrize(
    ("state", "said"),
    [
        (JobState.RUNNING, None),
        (JobState.SUSPENDED, None),
        (
            JobState.NODE_FAIL,
            "job 7 ended because its node failed (NODE_FAIL); the session is over",
        ),
        (JobState.ENDED, "job 7 ended (ENDED); the session is over"),
        # Requeued after it ran (a node failure with --requeue, preemption): the app is lost.
        (
            JobState.PENDING,
            "job 7 was requeued by SLURM (PENDING); its app is gone, so nodetunnel cancels it",
        ),
        (
            JobState.REQUEUED,
            "job 7 was requeued by SLURM (REQUEUED); its app is gone, so nodetunnel cancels it",
        ),
    ],
)
def test_job_finished_says_why_the_session_ends(
    runtime: Path, state: JobState, said: str | None
) -> None:
    s = Session(request(), scheduler=_Status(state))  # type: ignore[arg-type]
    assert keeper.job_finished(s, "7") == said
    assert s.requeued == (said is not None and "requeued" in said)


def test_job_finished_is_none_when_slurm_cannot_be_asked(runtime: Path) -> None:
    no_route = _Status(SshError(["ssh"], 255, "", message="no route"))
    s = Session(request(), scheduler=no_route)  # type: ignore[arg-type]
    assert keeper.job_finished(s, "7") is None


def test_job_check_interval_is_kept_by_resumed_sessions(runtime: Path, tmp_path: Path) -> None:
    assert request().job_check_interval_s == JOB_CHECK_INTERVAL_S
    record = SessionRecord(
        session_id="nt-0123abcd", app="jupyter", job_id="7", jump=["login", "gateway"],
        job_check_interval_s=5.0,
    )  # fmt: skip
    store = SessionStore(tmp_path / "sessions")
    assert Session.resume(record, store=store).req.job_check_interval_s == 5.0
    old = SessionRecord(session_id="nt-0123abcd", app="jupyter", job_id="7", jump=["login"])
    assert Session.resume(old, store=store).req.job_check_interval_s == JOB_CHECK_INTERVAL_S


def test_detach_with_a_keeper_that_cannot_be_executed_is_one_clear_error(
    runtime: Path, tmp_path: Path
) -> None:
    from nodetunnel.errors import CommandError

    s = _started(tmp_path)
    python = tmp_path / "python-not-executable"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o644)  # e.g. an interpreter the keeper may not run
    with pytest.raises(CommandError) as err:
        s.detach([str(python), "-m", "nodetunnel"])
    assert "cannot start" in err.value.message
    assert not s.handed_over  # the usual clean-up runs: the job is cancelled, nothing is left
