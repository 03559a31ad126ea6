"""The notebook and dashboard apps beyond Jupyter, end to end on the mini-cluster: marimo, Panel,
Voilà and code-server (the real packages, in the shared cluster-side venv).

One test per recipe: start, the page through the tunnel (logged in with the secret made on
the laptop, refused without it), another user on the node cannot reach the app, nothing of
it listens on a TCP port of the node, and a stop leaves no job, no process and no socket.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from nodetunnel.proc import run
from nodetunnel.sandbox.cluster import as_user_argv

from .helpers import ALICE, ARTIFACTS, BOB, node_processes, state_dir
from .test_apps import app_argv, session_of


def request(port: int, path: str, headers: dict[str, str] | None = None, *, method: str = "GET",
            body: str | None = None) -> tuple[int, dict[str, str], str]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return (
            response.status,
            dict(response.getheaders()),
            response.read().decode(errors="replace"),
        )
    finally:
        conn.close()


def user_file(sandbox, name: str, text: str) -> Path:
    path = sandbox.paths.user_home(ALICE) / name
    path.write_text(text)
    os.chown(path, pwd.getpwnam(ALICE).pw_uid, pwd.getpwnam(ALICE).pw_gid)
    return path


def tcp_listeners(sandbox, node: str) -> set[str]:
    return {line.split()[3] for line in sandbox.run_in(node, ["ss", "-ltnH"]).splitlines()}


def assert_private(sandbox, info: dict, listeners_before: set[str]) -> None:
    """The app's socket is in a 0700 directory of its user, another user on the node cannot
    connect to it, and the app opened no TCP port on the node."""
    node, sock = str(info["node"]), str(info["remote"])
    assert sock.startswith("/tmp/nt."), sock
    mode = sandbox.run_in(node, ["stat", "-c", "%a %U", os.path.dirname(sock)]).split()
    assert mode == ["700", ALICE]
    probe = "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
    res = run(sandbox.host_argv(node, as_user_argv(BOB, ["/usr/bin/python3", "-c", probe, sock])),
              timeout_s=20, check=False)  # fmt: skip
    assert res.returncode != 0
    assert "PermissionError" in res.stderr, res.stderr
    assert tcp_listeners(sandbox, node) == listeners_before


def assert_gone(sandbox, info: dict) -> None:
    node = str(info["node"])
    assert node_processes(ALICE, node) == []
    res = run(sandbox.host_argv(node, ["test", "-e", os.path.dirname(str(info["remote"]))]),
              timeout_s=20, check=False)  # fmt: skip
    assert res.returncode == 1  # the private directory went with the job


def assert_secret_not_logged(sandbox, info: dict, token: str) -> None:
    """The app's output (the job log, in the shared home) does not carry the secret."""
    log = sandbox.paths.user_home(ALICE) / ".nodetunnel" / "sessions" / str(info["session_id"])
    assert token not in (log / "job.log").read_text(errors="replace")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    page.close()


# ---------------------------------------------------------------- marimo
MARIMO_NOTEBOOK = """\
import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo

    mo.md("# My marimo notebook")
    return (mo,)


@app.cell
def _(mo):
    import socket

    mo.md(f"computed on {socket.gethostname()}")
    return


if __name__ == "__main__":
    app.run()
"""


def test_marimo_edit_logs_in_with_the_token_and_its_websocket_runs_cells(
    sandbox, laptop_nodetunnel, chromium
):
    notebook = user_file(sandbox, "nt_marimo_nb.py", MARIMO_NOTEBOOK)
    before = {n: tcp_listeners(sandbox, n) for n in ("node1", "node2")}
    argv = app_argv(laptop_nodetunnel, "marimo", "edit", str(notebook))
    try:
        with session_of(sandbox, argv) as info:
            port, url = int(info["local_port"]), str(info["url"])
            token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["access_token"][0]
            assert url.startswith(f"http://127.0.0.1:{port}/?access_token=")
            assert request(port, "/api/version", {"Authorization": f"Bearer {token}"})[0] == 200
            assert request(port, "/api/version")[0] == 401
            assert request(port, "/api/version", {"Authorization": "Bearer wrong"})[0] == 401
            assert request(port, "/")[0] == 303  # to the login page
            assert_private(sandbox, info, before[str(info["node"])])
            page = chromium.new_page()
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(url, timeout=60_000)
            # The editor loads; "run all" makes the kernel on the node run the cells, whose
            # outputs come back over the websocket.
            page.wait_for_selector("[data-testid=cell-editor]", timeout=60_000)
            page.click("[data-testid=chrome-controls-bottom-right] [data-testid=run-button]")
            page.wait_for_selector("h1:has-text('My marimo notebook')", timeout=60_000)
            page.wait_for_selector(f"text=computed on {info['node']}", timeout=60_000)
            assert any("/ws?" in u for u in sockets), sockets
            screenshot(page, "marimo.png")
            assert_secret_not_logged(sandbox, info, token)  # marimo's URL is printed without
        assert_gone(sandbox, info)
    finally:
        notebook.unlink()


def session_token(info: dict) -> str:
    """The secret of a session whose URL does not carry it (a login form): from its record."""
    record = state_dir(ALICE) / f"{info['session_id']}.json"
    return str(json.loads(record.read_text())["token"])


def login_page(app_name: str, info: dict, token: str) -> str:
    """The page nodetunnel opens in the browser (posts the app's login form), as a file URL."""
    from nodetunnel.apps import APPS
    from nodetunnel.session.page import redirect_page

    url = str(info["url"])
    path = Path(tempfile.mkdtemp()) / "open.html"
    return redirect_page(path, url, app_name, APPS[app_name].login_form(url, token)).as_uri()


# ---------------------------------------------------------------- Panel
PANEL_APP = """\
import socket

import panel as pn

pn.extension()
count = pn.widgets.IntInput(name="count", value=1)
pn.Column(
    pn.pane.Markdown("# My Panel App"),
    count,
    pn.bind(lambda n: f"served from {socket.gethostname()}: {n * 7}", count),
).servable()
"""


def test_panel_serve_behind_its_login_and_its_websocket_updates(
    sandbox, laptop_nodetunnel, chromium
):
    app = user_file(sandbox, "nt_panel_app.py", PANEL_APP)
    before = {n: tcp_listeners(sandbox, n) for n in ("node1", "node2")}
    argv = app_argv(laptop_nodetunnel, "panel", "serve", str(app))
    try:
        with session_of(sandbox, argv) as info:
            port, url = int(info["local_port"]), str(info["url"])
            assert url == f"http://127.0.0.1:{port}/"
            token = session_token(info)
            status, headers, _ = request(port, "/nt_panel_app")
            assert status == 302
            assert "/login" in headers["Location"]
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            wrong = request(port, "/login", form, method="POST",
                            body=urllib.parse.urlencode({"username": "x", "password": token.lower()}))  # fmt: skip
            assert "error=" in wrong[1]["Location"]
            assert_private(sandbox, info, before[str(info["node"])])
            page = chromium.new_page()
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(login_page("panel", info, token), timeout=60_000)
            page.wait_for_selector("h1:has-text('My Panel App')", timeout=60_000)
            page.wait_for_selector(f"text=served from {info['node']}: 7", timeout=60_000)
            # A change in the browser goes to the node over the websocket and comes back.
            page.fill("input", "6")
            page.keyboard.press("Enter")
            page.wait_for_selector(f"text=served from {info['node']}: 42", timeout=60_000)
            assert any(u.endswith("/nt_panel_app/ws") for u in sockets), sockets
            screenshot(page, "panel.png")
            assert_secret_not_logged(sandbox, info, token)
        assert_gone(sandbox, info)
    finally:
        app.unlink()


# ---------------------------------------------------------------- Voila
def _voila_notebook() -> str:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# My Voila Dashboard"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "import socket\nprint('rendered on', socket.gethostname())"},
    ]  # fmt: skip
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_voila_renders_the_notebook_with_the_token_only(sandbox, laptop_nodetunnel):
    notebook = user_file(sandbox, "nt_voila_nb.ipynb", _voila_notebook())
    before = {n: tcp_listeners(sandbox, n) for n in ("node1", "node2")}
    argv = app_argv(laptop_nodetunnel, "voila", str(notebook))
    try:
        with session_of(sandbox, argv) as info:
            port, url = int(info["local_port"]), str(info["url"])
            assert url.startswith(f"http://127.0.0.1:{port}/?token=")
            node = str(info["node"])
            assert request(port, "/")[0] == 302  # to the login page
            assert request(port, "/?token=wrong")[0] == 302
            assert_private(sandbox, info, before[node])
            status, _, page = request(port, urllib.parse.urlsplit(url).path + "?" +
                                      urllib.parse.urlsplit(url).query)  # fmt: skip
            assert status == 200, page[:300]
            assert "My Voila Dashboard" in page
            assert f"rendered on {node}" in page  # the kernel ran it on the node
            # Its kernel's channels are Unix sockets in the private directory: at most
            # ipykernel's own IOPub pipe (a random key guards it) is on a loopback port.
            assert len(tcp_listeners(sandbox, node) - before[node]) <= 1
            token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
            assert_secret_not_logged(sandbox, info, token)
        assert_gone(sandbox, info)
    finally:
        notebook.unlink()


# ---------------------------------------------------------------- code-server
def test_code_server_workbench_opens_the_folder_logged_in(sandbox, laptop_nodetunnel, chromium):
    folder = sandbox.paths.user_home(ALICE) / "nt_code_project"
    folder.mkdir(exist_ok=True)
    (folder / "hello_from_the_node.py").write_text("print('hello')\n")
    for path in (folder, *folder.iterdir()):
        os.chown(path, pwd.getpwnam(ALICE).pw_uid, pwd.getpwnam(ALICE).pw_gid)
    before = {n: tcp_listeners(sandbox, n) for n in ("node1", "node2")}
    argv = app_argv(laptop_nodetunnel, "code", str(folder))
    try:
        with session_of(sandbox, argv) as info:
            port, url = int(info["local_port"]), str(info["url"])
            assert url == f"http://127.0.0.1:{port}/"
            token = session_token(info)
            status, headers, _ = request(port, "/")
            assert status == 302
            assert headers["Location"].endswith("login")
            assert_private(sandbox, info, before[str(info["node"])])
            node, run_dir = str(info["node"]), os.path.dirname(str(info["remote"]))
            # Its session socket is in the private directory too, not in the shared home.
            assert "ipc.sock" in sandbox.run_in(node, ["ls", run_dir])
            page = chromium.new_page(viewport={"width": 1280, "height": 800})
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(login_page("code", info, token), timeout=60_000)
            page.wait_for_selector(".monaco-workbench", timeout=90_000)
            # The folder's files come from the node over the workbench's websocket.
            page.wait_for_selector("text=hello_from_the_node.py", timeout=90_000)
            assert sockets, "the workbench opened no websocket"
            screenshot(page, "code-server.png")
            assert_secret_not_logged(sandbox, info, token)
        assert_gone(sandbox, info)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
