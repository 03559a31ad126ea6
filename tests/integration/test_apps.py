"""Every app recipe end to end on the mini-cluster: start, the page through the tunnel, stop.

One test per recipe (the real app from the registry, in the shared cluster-side
venv); each ends with no job, no process and the local port free.
"""

from __future__ import annotations

import http.client
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
