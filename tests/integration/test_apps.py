"""Every app recipe end to end on the mini-cluster: start, the page through the tunnel, stop.

One test per recipe (the real app from the registry, in the shared cluster-side
venv); each ends with no job, no process and the local port free.
"""

from __future__ import annotations

import http.client
import os
import pwd
import urllib.parse

import pytest

from nodetunnel.proc import NotReady, wait_until
from nodetunnel.session import port_is_free

from .helpers import ALICE, CLUSTER_VENV, Cli, squeue, user_processes


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


#: (recipe, extra arguments, a text the opened page must contain)
RECIPES = [
    ("notebook", (), "Jupyter Notebook"),
]


@pytest.mark.parametrize(("app", "extra", "expected"), RECIPES, ids=[r[0] for r in RECIPES])
def test_recipe_start_page_stop(sandbox, laptop_nodetunnel, app, extra, expected):
    cli = Cli(ALICE, app_argv(laptop_nodetunnel, app, *extra))
    try:
        info = cli.read_json(timeout_s=180)
        port = int(info["local_port"])  # type: ignore[call-overload]
        status, page = get(str(info["url"]))
        assert status == 200, page[:500]
        assert expected in page
        assert cli.interrupt() == 130
    except BaseException:
        cli.stop()
        raise

    def gone() -> bool:
        if squeue(sandbox) or user_processes(ALICE):
            raise NotReady(f"left: {squeue(sandbox)} {user_processes(ALICE)}")
        return True

    wait_until(gone, timeout_s=30, what="the job and the tunnel to be gone")
    assert port_is_free(port)


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
    cli = Cli(ALICE, app_argv(base, "run", "--", *command))
    try:
        info = cli.read_json(timeout_s=180)
        port = int(info["local_port"])  # type: ignore[call-overload]
        status, page = get(str(info["url"]))
        assert status == 200, page[:500]
        assert expected in page
        assert cli.interrupt() == 130
        err = cli.stderr()
    except BaseException:
        cli.stop()
        raise
    assert ("without a password: other users with a job on that node can reach it" in err) is warned
    wait_until(lambda: not squeue(sandbox) and not user_processes(ALICE), timeout_s=30,
               what="the job and the tunnel to be gone")  # fmt: skip
    assert port_is_free(port)


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
