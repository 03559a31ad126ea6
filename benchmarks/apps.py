"""Command -> first 200 per app recipe: JupyterLab (from the startup part), Notebook,
Streamlit, Dash and TensorBoard, each started as a researcher does (``nodetunnel APP ...
--cluster sandbox --venv ...``), its URL fetched until it answers 200, then Ctrl-C."""

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
    bench.write_user_file(streamlit, STREAMLIT_APP)
    bench.write_user_file(dash, DASH_APP)
    recipes = {
        "notebook": [],
        "streamlit": [str(streamlit)],
        "dash": [str(dash)],
        "tensorboard": ["--logdir", str(logdir)],
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
    ok_at = wait_until(lambda: _ok(url), timeout_s=60, what=f"{app}'s URL to answer 200",
                       interval_s=0.01, max_interval_s=0.2)  # fmt: skip
    if (code := cli.interrupt()) != 130:
        raise BenchError(f"nodetunnel {app} exited with {code} on Ctrl-C: {cli.stderr_tail()}")
    bench.wait_job_gone(str(info["job_id"]))
    return ok_at - cli.started


def _ok(url: str) -> float:
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
    if response.status != 200:
        raise NotReady(f"HTTP {response.status} from {url}")
    return time.monotonic()
