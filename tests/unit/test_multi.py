"""Several apps in one job (``--with``): the job script, the session on the fakes, the record,
``open ID APP`` and the ``--with`` parser. The mini-cluster test is in
tests/integration/test_multi.py."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetunnel.apps import JUPYTER, RECIPES, command_app
from nodetunnel.cli.withapps import parse_one
from nodetunnel.errors import UsageError
from nodetunnel.scheduler import JobRequest, JobState, Slurm
from nodetunnel.scheduler.testing import Call, FakeSlurm
from nodetunnel.session import LaunchRequest, Session, extras
from nodetunnel.session import jobscript as payload
from nodetunnel.session.fleet import app_url
from nodetunnel.session.jobscript import Environment
from nodetunnel.state import SessionRecord, SessionStore
from nodetunnel.transport.openssh import OpenSSH
from nodetunnel.transport.testing import FakeTransport

from .conftest import Golden
from .test_lifecycle import CLUSTER, USER, home, runtime, session_dir_of  # noqa: F401

render_body = functools.partial(payload.render_body, scheduler=Slurm)
SESSION_DIR = "/home/alice/.nodetunnel/sessions/nt-0123abcd"
TENSORBOARD = RECIPES["tensorboard"].bind({"logdir": "~/runs", "args": ()})
HTTP_ON_PORT = command_app(["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"])


# ---------------------------------------------------------------- job script
def test_job_script_with_two_more_apps_golden(golden: Golden) -> None:
    body = render_body(JUPYTER, Environment(), SESSION_DIR, socket_dir="/tmp/nt.0123456789abcdef",
                       extras=(TENSORBOARD, HTTP_ON_PORT))  # fmt: skip
    golden("payload-jupyter-with.sh", body)
    subprocess.run(["/bin/sh", "-n"], input=body, text=True, check=True, timeout=10)
    # Each app its own socket (or port) and launcher file; the endpoint names them all.
    assert 'NT_SOCK1="$NT_RUN/s1"' in body
    assert '"$NT_RUN"/launch1.py "$NT_SOCK1" --logdir' in body
    assert 'export NT_PORT="$NT_PORT2"' in body
    assert body.index("printf 'port2=") < body.index('mv -f "$NT_SESSION_DIR/endpoint.tmp"')
    assert "kill $NT_XPIDS" in body  # the job's end ends them all


def test_job_script_without_more_apps_is_unchanged() -> None:
    assert "NT_XPIDS" not in render_body(JUPYTER, Environment(), SESSION_DIR)


def test_every_app_is_told_where_every_app_of_the_job_listens() -> None:
    """Streamlit with a FastAPI backend: the Streamlit app finds the backend's socket as
    $NT_SOCKET_RUN; every app gets every endpoint, before any of them starts."""
    streamlit = RECIPES["streamlit"].bind({"script": "app.py", "args": ()})
    backend = command_app(["uvicorn", "api:app", "--uds", "{socket}"])
    body = render_body(streamlit, Environment(), SESSION_DIR, socket_dir="/tmp/nt.x",
                       extras=(backend, HTTP_ON_PORT))  # fmt: skip
    exports = (
        'export NT_SOCKET_STREAMLIT="$NT_SOCK" NT_SOCKET_RUN="$NT_SOCK1" NT_PORT_RUN_3="$NT_PORT2"'
    )
    assert exports in body
    at = body.index(exports)
    assert body.index('NT_SOCK1="$NT_RUN/s1"') < at
    assert body.index("NT_PORT2=$(python3") < at
    assert at < body.index('( export NT_SOCKET="$NT_SOCK1"; exec uvicorn')  # the first --with
    assert at < body.index('python3 "$NT_RUN"/launch.py "$NT_SOCK" app.py &')


def test_a_main_app_on_a_port_is_given_its_port_before_the_others_start() -> None:
    main = command_app(["python3", "-m", "http.server", "{port}"])
    body = render_body(main, Environment(), SESSION_DIR, socket_dir="/tmp/nt.x",
                       extras=(TENSORBOARD,))  # fmt: skip
    subprocess.run(["/bin/sh", "-n"], input=body, text=True, check=True, timeout=10)
    exports = 'export NT_PORT_RUN="$NT_PORT" NT_SOCKET_TENSORBOARD="$NT_SOCK1"'
    assert body.index("NT_PORT=$(python3") < body.index(exports) < body.index("# app 1:")
    assert body.count("NT_PORT=$(python3") == 1  # not chosen again where the main app starts
    # With --tcp the same for JupyterLab; alone, an app gets no such variable.
    tcp = render_body(JUPYTER, Environment(), SESSION_DIR, tcp=True, extras=(TENSORBOARD,))
    assert 'export NT_PORT_JUPYTER="$NT_PORT" NT_SOCKET_TENSORBOARD="$NT_SOCK1"' in tcp
    assert "NT_SOCKET_" not in render_body(JUPYTER, Environment(), SESSION_DIR)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["streamlit", "run"], ["STREAMLIT", "RUN"]),
        (["run", "run", "tensorboard", "run"], ["RUN", "RUN_2", "TENSORBOARD", "RUN_4"]),
        (["jupyter", "jupyter"], ["JUPYTER", "JUPYTER_2"]),
        (["code", "my-app"], ["CODE", "MY_APP"]),
    ],
)
def test_endpoint_names_are_the_app_names_numbered_only_when_taken(
    names: list[str], expected: list[str]
) -> None:
    import dataclasses

    apps = [dataclasses.replace(JUPYTER, name=n) for n in names]
    assert payload.endpoint_names(apps) == expected


_DUMP = (
    "import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
    "if k.startswith(('NT_SOCKET_', 'NT_PORT_'))}, open(sys.argv[1], 'w')); "
)


_SERVE_UNIX = (
    "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[-1]); "
    "s.listen(); time.sleep(600)"
)
_SERVE_PORT = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[-1]))); "
    "s.listen(); time.sleep(600)"
)


def test_job_script_runs_every_app_and_ends_them_all(tmp_path: Path) -> None:
    """A real run with /bin/sh: three apps start, the endpoint names each, the end ends all."""
    session = tmp_path / "session"
    session.mkdir(mode=0o700)
    run_dir = f"/tmp/nt.test{os.getpid()}"
    seen = [tmp_path / f"env{n}.json" for n in range(3)]  # what each app finds in its environment
    main = command_app([sys.executable, "-c", _DUMP + _SERVE_UNIX, str(seen[0]), "{socket}"])
    on_socket = command_app([sys.executable, "-c", _DUMP + _SERVE_UNIX, str(seen[1]),
                             "{socket}"])  # fmt: skip
    on_port = command_app([sys.executable, "-c", _DUMP + _SERVE_PORT, str(seen[2]), "{port}"])
    body = render_body(main, Environment(), str(session), socket_dir=run_dir,
                       extras=(on_socket, on_port))  # fmt: skip
    proc = subprocess.Popen(["/bin/sh", "-c", body], start_new_session=True,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (session / "endpoint").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no endpoint file within 30 s"
            time.sleep(0.1)
        fields = dict(line.split("=", 1) for line in (session / "endpoint").read_text().split())
        assert fields["socket"] == f"{run_dir}/s"
        assert fields["socket1"] == f"{run_dir}/s1"
        assert fields["port2"].isdigit()
        # Every app is told where each of the job's apps listens, itself included.
        every = {"NT_SOCKET_RUN": f"{run_dir}/s", "NT_SOCKET_RUN_2": f"{run_dir}/s1",
                 "NT_PORT_RUN_3": fields["port2"]}  # fmt: skip
        assert [json.loads(f.read_text()) for f in seen] == [every] * 3
        # What another machine needs to attach to every app of the session.
        claimed = extras.from_endpoint(fields)
        assert [(e["app"], e["remote"]) for e in claimed] == [
            ("run", f"{run_dir}/s1"),
            ("run", f"127.0.0.1:{fields['port2']}"),
        ]
        assert [f.app.name for f in extras.from_record(claimed, "nt-0123abcd")] == ["run", "run"]
        assert (os.stat(run_dir).st_mode & 0o777) == 0o700
        children = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True,
                                  text=True, check=False).stdout.split()  # fmt: skip
        assert len(children) >= 4  # the shell and its three apps
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # as scancel does: the shell's TERM trap ends it
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True,
                         check=False).returncode == 0:  # fmt: skip
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("an app outlived its job script")
        time.sleep(0.1)
    assert not Path(run_dir).exists()


# ---------------------------------------------------------- session on fakes
def _publish_all(call: Call, fake: FakeSlurm) -> None:
    if call.program != "squeue" or not fake.jobs:
        return
    job_id = max(fake.jobs)
    if fake.jobs[job_id].state is JobState.PENDING:
        fake.start(job_id)
        d = session_dir_of(fake, job_id)
        script = fake.jobs[job_id].script
        run_dir = script.split("NT_RUN=", 1)[1].split("\n", 1)[0]
        (d / "endpoint").write_text(f"socket={run_dir}/s\nhost=node1\nsocket1={run_dir}/s1\n"
                                    "port2=40123\n")  # fmt: skip


def test_a_session_with_two_more_apps_forwards_and_records_each(
    runtime: Path,  # noqa: F811
    home: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    fake = FakeSlurm(user=USER, on_call=_publish_all)
    transport = FakeTransport(home)
    store = SessionStore(tmp_path / "store")
    req = LaunchRequest(app=JUPYTER, cluster=CLUSTER, job=JobRequest(),
                        extras=(TENSORBOARD, HTTP_ON_PORT))  # fmt: skip
    notes: list[str] = []
    session = Session(req, transport=transport, scheduler=Slurm(fake), notice=notes.append,
                      store=store)  # fmt: skip
    with session:
        info = session.start()
        run_dir = info.remote[:-2]
        # One forward process, three forwards: each app on its own local port.
        assert transport.forwards == [
            ("node1", info.local_port, info.remote),
            ("node1", session.forwards[0].local_port, f"{run_dir}/s1"),
            ("node1", session.forwards[1].local_port, "127.0.0.1:40123"),
        ]
        ports = {info.local_port, *(f.local_port for f in session.forwards)}
        assert len(ports) == 3
        # Each app's own readiness probe went through the tunnel.
        requests = transport.requests()
        assert f"GET /api/status token {session.token}" in requests
        assert "GET /data/runs -" in requests  # no token to an app that has no use for it
        assert "GET / -" in requests
        assert [e["app"] for e in info.extras] == ["tensorboard", "run"]
        assert info.extras[0]["url"] == f"http://127.0.0.1:{session.forwards[0].local_port}/"
        assert any("python3 listens on 127.0.0.1:40123" in n and "can reach it" in n
                   for n in notes)  # fmt: skip
        record = store.load(info.session_id)
        assert [e["remote"] for e in record.extras] == [f"{run_dir}/s1", "127.0.0.1:40123"]
        # Another process resumes it with every app.
        again = Session.resume(record, transport=transport, scheduler=Slurm(fake), store=store)
        assert [f.app.name for f in again.forwards] == ["tensorboard", "run"]
        assert again.forwards[1].app.title == "python3"
        assert [f.local_port for f in again.forwards] == [f.local_port for f in session.forwards]
        job_id = info.job_id
        proc = session.tunnel.proc if session.tunnel else None
    assert fake.jobs[job_id].state is JobState.CANCELLED  # one stop ends them all
    assert proc is not None
    assert not proc.alive()
    assert store.scan()[0] == []


# ------------------------------------------------------------------ records
def _record(**kw: object) -> SessionRecord:
    return SessionRecord(session_id="nt-0123abcd", app="jupyter", job_id="7", jump=["login"],
                         url="http://127.0.0.1:8888/lab?token=t", **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_record_keeps_every_app_and_an_old_one_stays_readable() -> None:
    extras = [{"app": "tensorboard", "title": "TensorBoard", "remote": "/tmp/nt.x/s1",
               "local_port": 6006, "url": "http://127.0.0.1:6006/?token=t", "url_path": "/",
               "status_path": "/data/runs"}]  # fmt: skip
    record = _record(extras=extras)
    assert SessionRecord.from_json(record.to_json()) == record
    old = record.to_json()
    del old["extras"]
    assert SessionRecord.from_json(old).extras == []
    assert record.public()["extras"][0]["url"] == "http://127.0.0.1:6006/"  # no secret
    bad = {**record.to_json(), "extras": [{"app": ["x"]}]}
    with pytest.raises(ValueError, match="extras"):
        SessionRecord.from_json(bad)


def test_open_picks_an_app_by_name_or_number() -> None:
    record = _record(extras=[{"app": "tensorboard", "url": "http://127.0.0.1:6006/"}])
    assert app_url(record) == ("jupyter", "http://127.0.0.1:8888/lab?token=t")
    assert app_url(record, "tensorboard") == ("tensorboard", "http://127.0.0.1:6006/")
    assert app_url(record, "2") == ("tensorboard", "http://127.0.0.1:6006/")
    assert app_url(record, "1")[0] == "jupyter"
    with pytest.raises(UsageError, match="no app 'dash'") as caught:
        app_url(record, "dash")
    assert "1 (jupyter), 2 (tensorboard)" in (caught.value.hint or "")


# ------------------------------------------------------------------ --with
def test_with_parses_an_apps_own_arguments() -> None:
    tb = parse_one("tensorboard:--logdir '~/my runs' -- --reload_interval 5")
    assert tb.launch[-4:] == ("--logdir", "~/my runs", "--reload_interval", "5")
    run = parse_one("run:--ready /healthz python -m http.server --bind 127.0.0.1 {port}")
    assert run.listen == "tcp"
    assert run.ready_path == "/healthz"
    assert run.launch[:3] == ("python", "-m", "http.server")
    assert parse_one("notebook").name == "notebook"
    assert parse_one("dash:app.py --var server").launch[-2:] == ("app.py", "server")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("tensorboard", "Missing option '--logdir'"),
        ("nope:x", "there is no app 'nope'"),
        ("jupyter:--port 9", "takes no arguments"),
        ("run:", "Missing argument"),
        ("run:python app.py --uds {socket} --port {port}", "cannot listen on a port too"),
        ("tensorboard:--logdir 'runs", "quotation"),
    ],
)
def test_with_refuses_what_it_cannot_start(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as caught:
        parse_one(spec)
    assert f"--with {spec!r}" in caught.value.message


def test_forward_argv_with_more_apps_is_one_ssh_with_several_forwards() -> None:
    ssh = OpenSSH(["login"], config_path=Path("/x/ssh_config"))
    argv = ssh.forward_argv("node1", 8888, "/tmp/nt.a/s", [(6006, "/tmp/nt.a/s1"),
                                                           (8000, "127.0.0.1:4000")])  # fmt: skip
    forwards = [argv[i + 1] for i, a in enumerate(argv) if a == "-L"]
    assert forwards == ["127.0.0.1:8888:/tmp/nt.a/s", "127.0.0.1:6006:/tmp/nt.a/s1",
                        "127.0.0.1:8000:127.0.0.1:4000"]  # fmt: skip
    assert argv[-1] == "node1"


def test_a_further_app_that_exits_before_listening_fails_the_job_naming_it(tmp_path: Path) -> None:
    session = tmp_path / "session"
    session.mkdir(mode=0o700)
    run_dir = f"/tmp/nt.fail{os.getpid()}"
    main = command_app([sys.executable, "-c", _SERVE_UNIX, "{socket}"])
    body = render_body(main, Environment(), str(session), socket_dir=run_dir,
                       extras=(command_app(["false"]),))  # fmt: skip
    done = subprocess.run(["/bin/sh", "-c", body], capture_output=True, text=True, timeout=60,
                          check=False, start_new_session=True)  # fmt: skip
    assert done.returncode == 1
    assert (session / "error").read_text() == ("app run exited before listening; see the job log\n")
    assert not (session / "endpoint").exists()
    assert not Path(run_dir).exists()  # and the main app was ended with the job


def _publish_tcp(call: Call, fake: FakeSlurm) -> None:
    if call.program != "squeue" or not fake.jobs:
        return
    job_id = max(fake.jobs)
    if fake.jobs[job_id].state is JobState.PENDING:
        fake.start(job_id)
        (session_dir_of(fake, job_id) / "endpoint").write_text(
            "port=41000\nhost=node1\nsocket1=/tmp/nt.AbCdEf/s1\napp1=tensorboard\n"
        )


def test_with_tcp_the_main_app_is_on_a_port_and_the_others_on_their_sockets(
    runtime: Path,  # noqa: F811
    home: Path,  # noqa: F811
) -> None:
    fake = FakeSlurm(user=USER, on_call=_publish_tcp)
    transport = FakeTransport(home)
    req = LaunchRequest(app=JUPYTER, cluster=CLUSTER, job=JobRequest(), tcp=True,
                        extras=(TENSORBOARD,))  # fmt: skip
    with Session(req, transport=transport, scheduler=Slurm(fake)) as session:
        info = session.start()
        assert transport.forwards == [
            ("node1", info.local_port, "127.0.0.1:41000"),
            ("node1", session.forwards[0].local_port, "/tmp/nt.AbCdEf/s1"),
        ]
        # The job's private directory is made on the node (mktemp) when the main app is on a
        # port; the further apps' sockets are in it all the same.
        assert "mktemp -d" in fake.jobs[info.job_id].script
