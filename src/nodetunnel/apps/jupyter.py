"""JupyterLab on a Unix socket (jupyter_server >= 1.9), token from a 0600 file.

This file is the only place in nodetunnel that knows Jupyter: its flags, its
token, its status API and its default port.
"""

from __future__ import annotations

from .base import App, Auth, ShellVar

JUPYTER = App(
    name="jupyter",
    title="JupyterLab",
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
    auth=Auth(header="Authorization", header_value="token {token}", query="token"),
    ready_path="/api/status",
    url_path="/lab",
    preferred_port=8888,
    install_hint="install JupyterLab in the environment you activate (pip install jupyterlab)",
    summary="Start JupyterLab in a SLURM job and open it in your browser.",
    examples=(
        "--cluster swc -p gpu --gres gpu:1 --mem 16G --time 4:00:00",
        "--cluster swc --conda-env my_env --workdir ~/project",
        "--cluster sandbox --no-browser      # the mini-cluster",
        "--cluster swc --dry-run             # show, do not run",
    ),
)
