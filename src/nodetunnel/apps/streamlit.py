"""Streamlit, served on the job's private Unix socket by a small launcher (Streamlit itself
refuses Unix sockets since 1.57)."""

from __future__ import annotations

from .base import Param, Slot, launcher_app

STREAMLIT = launcher_app(
    "streamlit_app.py",
    Slot("script"),
    Slot("args"),
    package="streamlit",
    name="streamlit",
    title="Streamlit",
    ready_path="/_stcore/health",
    url_path="/",
    preferred_port=8501,
    params=(
        Param("script", ("APP",), help="The Streamlit script on the cluster.", required=True),
        Param("args", ("ARGS",), help="Arguments for the script, after --.", many=True),
    ),
    summary="Start a Streamlit app in a SLURM job and open it in your browser.",
    details="The app is served on a private Unix socket (never 0.0.0.0, never a port on the "
    "node); its websocket works through the tunnel.",
    examples=("app.py --cluster swc", "app.py --cluster swc -- --data ~/data.csv"),
)
