"""Command -> first 200 per app recipe: JupyterLab (from the startup part), Notebook,
Streamlit, Dash, TensorBoard, marimo, Panel, Voila and code-server, each started as a
researcher does (``nodetunnel APP ... --cluster sandbox --venv ...``), its URL fetched
until it answers 200, then Ctrl-C. marimo, Panel and code-server log in on the first
request (marimo takes its token from the URL and redirects with a cookie; Panel and
code-server redirect to the login form that the page nodetunnel opens posts): for them
that first answer counts, 200 or a redirect."""

from __future__ import annotations

import http.client
import shutil
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from nodetunnel.proc import NotReady, wait_until

from .common import CLUSTER_VENV, BenchError, summary

if TYPE_CHECKING:
    from .bench import Bench

STREAMLIT_APP = 'import streamlit as st\n\nst.title("bench")\n'
PANEL_APP = 'import panel as pn\n\npn.panel("bench").servable()\n'
VOILA_NOTEBOOK = (
    '{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# bench"]}], '
    '"metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'
)
#: Apps whose first answer is a login redirect (see the module docstring).
LOGIN_REDIRECT = frozenset({"marimo", "panel", "code"})
DASH_APP = (
    "from dash import Dash, html\n\napp = Dash(__name__)\n"
    'app.layout = html.Div([html.H1("bench")])\n'
)


def measure(bench: Bench, runs: int) -> dict[str, Any]:
    logdir = bench.home / "nt-bench-tb"
    logdir.mkdir(exist_ok=True)
    bench.sb_chown(logdir)
    bench.on_clean_up(lambda: shutil.rmtree(logdir, ignore_errors=True))
    streamlit = bench.home / "nt-bench-streamlit.py"
    dash = bench.home / "nt-bench-dash.py"
    panel = bench.home / "nt-bench-panel.py"
    voila = bench.home / "nt-bench-voila.ipynb"
    marimo = bench.home / "nt-bench-marimo.py"
    bench.write_user_file(streamlit, STREAMLIT_APP)
    bench.write_user_file(dash, DASH_APP)
    bench.write_user_file(panel, PANEL_APP)
    bench.write_user_file(voila, VOILA_NOTEBOOK)
    bench.track_file(marimo)  # marimo creates the notebook
    recipes = {
        "notebook": [],
        "streamlit": [str(streamlit)],
        "dash": [str(dash)],
        "tensorboard": ["--logdir", str(logdir)],
        "marimo": ["edit", str(marimo)],
        "panel": ["serve", str(panel)],
        "voila": [str(voila)],
        "code": [str(bench.home)],
    }
    samples: dict[str, list[float]] = {app: [] for app in recipes}
    for i in range(runs):
        for app, args in recipes.items():
            bench.say(f"app {app} {i + 1}/{runs}: start, first 200, Ctrl-C")
            samples[app].append(_one(bench, app, args))
    return {app: summary(s) for app, s in samples.items()}


def _one(bench: Bench, app: str, args: list[str]) -> float:
    argv = bench.nt(app, "--cluster", "sandbox", "--venv", str(CLUSTER_VENV), "--no-browser",
                    "--json", *args)  # fmt: skip
    cli = bench.start(argv, f"nodetunnel {app}")
    info, _ = cli.json_result()
    bench.track_session(info)
    url = str(info["url"])
    redirect = app in LOGIN_REDIRECT
    ok_at = wait_until(lambda: _ok(url, login_page=redirect), timeout_s=60,
                       what=f"{app}'s URL to answer", interval_s=0.01,
                       max_interval_s=0.2)  # fmt: skip
    if (code := cli.interrupt()) != 130:
        raise BenchError(f"nodetunnel {app} exited with {code} on Ctrl-C: {cli.stderr_tail()}")
    bench.wait_job_gone(str(info["job_id"]))
    return ok_at - cli.started


def _ok(url: str, *, login_page: bool = False) -> float:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise NotReady(f"{url}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200 and not (login_page and 300 <= response.status < 400):
        raise NotReady(f"HTTP {response.status} from {url}")
    return time.monotonic()
