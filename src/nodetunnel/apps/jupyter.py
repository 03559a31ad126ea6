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
    # The token never appears in argv (world-readable in ps): Jupyter reads it from this file.
    env=(("JUPYTER_TOKEN_FILE", ShellVar("NT_TOKEN_FILE")),),
    status_path="/api/status",
    url_path="/lab",
    install_hint="install JupyterLab in the environment you activate (pip install jupyterlab)",
)
