"""Streamlit, served on the job's private Unix socket by a small launcher (Streamlit itself
refuses Unix sockets since 1.57)."""

from __future__ import annotations

from .base import App, Param, ShellVar, Slot

_LAUNCH = ("python3", ShellVar("NT_RUN", suffix="/launch.py"), ShellVar("NT_SOCK"),
           Slot("script"), Slot("args"))  # fmt: skip

STREAMLIT = App(
    name="streamlit",
    title="Streamlit",
    program="python3",
    launch=_LAUNCH,
    launch_tcp=_LAUNCH,
    listen="socket",
    launcher="streamlit_app.py",
    ready_path="/_stcore/health",
    url_path="/",
    preferred_port=8501,
    install_hint="Python 3 is needed; install Streamlit in the environment you activate "
    "(pip install streamlit)",
    params=(
        Param("script", ("APP",), help="The Streamlit script on the cluster.", required=True),
        Param("args", ("ARGS",), help="Arguments for the script, after --.", many=True),
    ),
    summary="Start a Streamlit app in a SLURM job and open it in your browser.",
    details="The app is served on a private Unix socket (never 0.0.0.0, never a port on the "
    "node); its websocket works through the tunnel.",
    examples=("app.py --cluster swc", "app.py --cluster swc -- --data ~/data.csv"),
)
