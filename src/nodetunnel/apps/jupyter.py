"""JupyterLab and Jupyter Notebook 7 on a Unix socket (jupyter_server >= 1.9), token from a file.

This file is the only place in nodetunnel that knows Jupyter: its flags, its
token, its status API and its default port.
"""

from __future__ import annotations

from .base import App, Auth, ShellVar

# --sock exists from jupyter_server 1.9 on (asked only if a start on the socket failed).
_SOCKET_CHECK = (
    "jupyter server --version 2>/dev/null | "
    "awk -F. 'NR == 1 { ok = ($1 > 1 || ($1 == 1 && $2 >= 9)) } END { exit !ok }'"
)


def _jupyter(name: str, subcommand: str, title: str, url_path: str, package: str) -> App:
    return App(
        name=name,
        title=title,
        program="jupyter",
        launch=(
            "jupyter",
            subcommand,
            "--no-browser",
            ShellVar("NT_SOCK", prefix="--sock="),  # jupyter_server's sock_mode defaults to 0600
        ),
        launch_tcp=(
            "jupyter",
            subcommand,
            "--no-browser",
            "--ip=127.0.0.1",
            ShellVar("NT_PORT", prefix="--port="),
            "--ServerApp.port_retries=0",
        ),
        # Before jupyter_server 1.9 there is no --sock: only a start on the socket that fails
        # asks for the version (a Python start), then falls back to a port.
        socket_check=_SOCKET_CHECK,
        # The token never appears in argv (world-readable in ps): Jupyter reads it from this file.
        env=(("JUPYTER_TOKEN_FILE", ShellVar("NT_TOKEN_FILE")),),
        auth=Auth(header="Authorization", header_value="token {token}", query="token"),
        ready_path="/api/status",
        url_path=url_path,
        preferred_port=8888,
        install_hint=f"install {title} in the environment you activate (pip install {package})",
        summary=f"Start {title} in a SLURM job and open it in your browser.",
        examples=(
            "--cluster swc -p gpu --gres gpu:1 --mem 16G --time 4:00:00",
            "--cluster swc --conda-env my_env --workdir ~/project",
            "--cluster sandbox --no-browser      # the mini-cluster",
            "--cluster swc --dry-run             # show, do not run",
        ),
    )


JUPYTER = _jupyter("jupyter", "lab", "JupyterLab", "/lab", "jupyterlab")
NOTEBOOK = _jupyter("notebook", "notebook", "Jupyter Notebook", "/tree", "notebook")
