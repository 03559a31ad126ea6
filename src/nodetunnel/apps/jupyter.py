"""JupyterLab on a Unix socket (jupyter_server >= 1.9), token from a 0600 file."""

from __future__ import annotations

from .base import App, ShellVar

JUPYTER = App(
    name="jupyter",
    program="jupyter",
    launch=(
        "jupyter",
        "lab",
        "--no-browser",
        ShellVar("NT_SOCK", prefix="--sock="),  # jupyter_server's sock_mode defaults to 0600
    ),
    launch_tcp=(
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        ShellVar("NT_PORT", prefix="--port="),
        "--ServerApp.port_retries=0",
    ),
    # --sock exists from jupyter_server 1.9 on.
    socket_check="jupyter server --version 2>/dev/null | "
    "awk -F. 'NR == 1 { ok = ($1 > 1 || ($1 == 1 && $2 >= 9)) } END { exit !ok }'",
    # The token never appears in argv (world-readable in ps): Jupyter reads it from this file.
    env=(("JUPYTER_TOKEN_FILE", ShellVar("NT_TOKEN_FILE")),),
    status_path="/api/status",
    url_path="/lab",
    install_hint="install JupyterLab in the environment you activate (pip install jupyterlab)",
)
