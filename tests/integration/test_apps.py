"""Every app recipe end to end on the mini-cluster: start, the page through the tunnel, stop.

One test per recipe (the real app from the registry, in the shared cluster-side
venv); each ends with no job, no process and the local port free.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import pwd
import shutil
import urllib.parse
from collections.abc import Iterator

import pytest

from nodetunnel.errors import ExitCode
from nodetunnel.proc import NotReady, wait_until
from nodetunnel.session import port_is_free

from .helpers import ALICE, ARTIFACTS, CLUSTER_VENV, Cli, squeue, user_processes


def get(url: str, timeout_s: float = 20) -> tuple[int, str]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def app_argv(base: list[str], app: str, *extra: str) -> list[str]:
    return [*base, app, "--cluster", "sandbox", "--venv", str(CLUSTER_VENV), "--no-browser",
            "--json", *extra]  # fmt: skip


@contextlib.contextmanager
def session_of(sandbox, argv: list[str], said: list[str] | None = None) -> Iterator[dict]:
    """A session started by ``argv`` (its JSON), used in the block, then Ctrl-C: exit 130,
    no job, no process and the local port free again. ``said`` gets its stderr."""
    cli = Cli(ALICE, argv)
    try:
        info = cli.read_json(timeout_s=180)
        yield info
        assert cli.interrupt() == 130
    except BaseException:
        cli.stop()
        raise
    if said is not None:
        said.append(cli.stderr())
    wait_until(lambda: not squeue(sandbox) and not user_processes(ALICE), timeout_s=30,
               what="the job and the tunnel to be gone")  # fmt: skip
    assert port_is_free(int(info["local_port"]))


#: (recipe, extra arguments, a text the opened page must contain)
RECIPES = [
    ("notebook", (), "Jupyter Notebook"),
]


@pytest.mark.parametrize(("app", "extra", "expected"), RECIPES, ids=[r[0] for r in RECIPES])
def test_recipe_start_page_stop(sandbox, laptop_nodetunnel, app, extra, expected):
    with session_of(sandbox, app_argv(laptop_nodetunnel, app, *extra)) as info:
        status, page = get(str(info["url"]))
        assert status == 200, page[:500]
        assert expected in page


SOCKET_APP = """
import http.server, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from a socket app"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix"

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

Server(sys.argv[1], Handler).serve_forever()
"""


def _run_session(sandbox, base: list[str], *command: str, expected: str, warned: bool) -> None:
    said: list[str] = []
    with session_of(sandbox, app_argv(base, "run", "--", *command), said) as info:
        status, page = get(str(info["url"]))
        assert status == 200, page[:500]
        assert expected in page
    (err,) = said
    assert ("without a password: other users with a job on that node can reach it" in err) is warned


def test_run_any_command_on_a_port(sandbox, laptop_nodetunnel):
    # python -m http.server lists the working directory: the job starts in the home.
    _run_session(sandbox, laptop_nodetunnel, "python3", "-m", "http.server", "--bind",
                 "127.0.0.1", "{port}", expected="Directory listing", warned=True)  # fmt: skip


def test_run_any_command_on_the_private_socket(sandbox, laptop_nodetunnel):
    home = sandbox.paths.user_home(ALICE)
    app = home / "socket_app.py"
    app.write_text(SOCKET_APP)
    os.chown(app, pwd.getpwnam(ALICE).pw_uid, pwd.getpwnam(ALICE).pw_gid)
    try:
        _run_session(sandbox, laptop_nodetunnel, "python3", str(app), "{socket}",
                     expected="hello from a socket app", warned=False)  # fmt: skip
    finally:
        app.unlink()


# ---------------------------------------------------------------- the seed's apps
#: The cluster guide's Dash example, unchanged (its last line would listen on 0.0.0.0:8050).
SEED_DASH = """\
from dash import Dash, html

app = Dash(__name__)
app.layout = html.Div([html.H1("My Dash App")])

if __name__ == '__main__':
    app.run(debug=False, host='0.0.0.0', port=8050)
"""
#: The cluster guide's Streamlit example.
SEED_STREAMLIT = """\
import streamlit as st

st.title("My Streamlit App")
"""


def _user_file(sandbox, name: str, text: str):
    path = sandbox.paths.user_home(ALICE) / name
    path.write_text(text)
    os.chown(path, pwd.getpwnam(ALICE).pw_uid, pwd.getpwnam(ALICE).pw_gid)
    return path


def _tcp_listeners(sandbox, node: str) -> str:
    return sandbox.run_in(node, ["ss", "-ltnH"])


def test_the_seed_dash_app_unchanged_renders_privately(sandbox, laptop_nodetunnel, chromium):
    app = _user_file(sandbox, "seed_dash_app.py", SEED_DASH)
    try:
        with session_of(sandbox, app_argv(laptop_nodetunnel, "dash", str(app))) as info:
            status, layout = get(f"http://127.0.0.1:{info['local_port']}/_dash-layout")
            assert status == 200
            assert "My Dash App" in layout
            # Never 0.0.0.0, never 8050: no TCP listener of the app on the node at all.
            assert ":8050" not in _tcp_listeners(sandbox, str(info["node"]))
            page = chromium.new_page()
            page.goto(str(info["url"]), timeout=60_000)
            page.wait_for_selector("h1", timeout=60_000)
            assert page.inner_text("h1") == "My Dash App"
            _screenshot(page, "dash.png")
    finally:
        app.unlink()


def test_the_seed_streamlit_app_renders_and_its_websocket_connects(
    sandbox, laptop_nodetunnel, chromium
):
    app = _user_file(sandbox, "seed_streamlit_app.py", SEED_STREAMLIT)
    try:
        with session_of(sandbox, app_argv(laptop_nodetunnel, "streamlit", str(app))) as info:
            assert get(f"http://127.0.0.1:{info['local_port']}/_stcore/health") == (200, "ok")
            page = chromium.new_page()
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(str(info["url"]), timeout=60_000)
            # The title arrives over the websocket: rendered means the websocket works.
            page.wait_for_selector("h1:has-text('My Streamlit App')", timeout=60_000)
            assert any(url.endswith("/_stcore/stream") for url in sockets), sockets
            _screenshot(page, "streamlit.png")
    finally:
        app.unlink()


def test_tensorboard_lists_a_run(sandbox, laptop_nodetunnel, chromium):
    logdir = sandbox.paths.user_home(ALICE) / "tb-logs"
    run = logdir / "run1"
    run.mkdir(parents=True, exist_ok=True)
    _write_event_file(run)
    for path in (logdir, run, *run.iterdir()):
        os.chown(path, pwd.getpwnam(ALICE).pw_uid, pwd.getpwnam(ALICE).pw_gid)
    argv = app_argv(laptop_nodetunnel, "tensorboard", "--logdir", str(logdir))
    try:
        with session_of(sandbox, argv) as info:

            def lists_the_run() -> bool:
                status, runs = get(f"http://127.0.0.1:{info['local_port']}/data/runs")
                if status != 200 or "run1" not in runs:
                    raise NotReady(f"HTTP {status}: {runs[:200]}")
                return True

            wait_until(lists_the_run, timeout_s=60, what="TensorBoard to list run1")
            page = chromium.new_page()
            page.goto(str(info["url"]), timeout=60_000)
            page.wait_for_selector("text=run1", timeout=60_000)
            _screenshot(page, "tensorboard.png")
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    page.close()


def _write_event_file(run_dir) -> None:
    """One run of scalar events, written with TensorBoard's own writer (no TensorFlow)."""
    import subprocess

    code = (
        "import sys, time\n"
        "from tensorboard.summary.writer.event_file_writer import EventFileWriter\n"
        "from tensorboard.compat.proto.event_pb2 import Event\n"
        "from tensorboard.compat.proto.summary_pb2 import Summary\n"
        "w = EventFileWriter(sys.argv[1])\n"
        "for step in range(3):\n"
        "    s = Summary(value=[Summary.Value(tag='loss', simple_value=1.0 / (step + 1))])\n"
        "    w.add_event(Event(wall_time=time.time(), step=step, summary=s))\n"
        "w.flush(); w.close()\n"
    )
    subprocess.run([str(CLUSTER_VENV / "bin" / "python"), "-c", code, str(run_dir)], check=True,
                   timeout=60)  # fmt: skip


def test_an_app_that_crashes_before_ready_ends_with_the_job_logs_tail(sandbox, laptop_nodetunnel):
    # A Dash file with a typo in an import: the launcher's import fails on the node.
    app = _user_file(sandbox, "broken_dash_app.py", "import dash_no_such_module\n")
    try:
        cli = Cli(ALICE, app_argv(laptop_nodetunnel, "dash", str(app)))
        try:
            code = cli.proc.wait(timeout=120)
            err = cli.stderr()
        except BaseException:
            cli.stop()
            raise
    finally:
        app.unlink()
    assert code == ExitCode.SCHEDULER, err
    assert "failed before the app was ready" in err
    assert "dash_no_such_module" in err  # the job log's tail names the cause
    wait_until(lambda: not squeue(sandbox) and not user_processes(ALICE), timeout_s=30,
               what="the job and the tunnel to be gone")  # fmt: skip
