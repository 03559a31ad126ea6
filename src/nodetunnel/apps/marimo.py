"""marimo, on the job's private Unix socket: a small launcher runs marimo's own CLI and hands
its uvicorn a socket (marimo itself listens only on TCP). Its token is the secret made on the
laptop, read from the 0600 file (``--token-password-file``); the browser logs in with it in
the URL (``?access_token=``), the readiness probe with ``Authorization: Bearer``."""

from __future__ import annotations

from .base import Auth, Param, ShellVar, Slot, launcher_app

MARIMO = launcher_app(
    "marimo_app.py",
    Slot("mode"),
    Slot("notebook"),
    Slot("args"),
    package="marimo",
    name="marimo",
    title="marimo",
    env=(("NT_TOKEN_FILE", ShellVar("NT_TOKEN_FILE")),),
    auth=Auth(header="Authorization", header_value="Bearer {token}", query="access_token"),
    ready_path="/api/version",  # needs the token, in edit and run mode,
    url_path="/",
    preferred_port=2718,
    params=(
        Param(
            "mode",
            ("MODE",),
            help="edit (the notebook editor) or run (the notebook as an app).",
            required=True,
            choices=("edit", "run"),
        ),
        Param(
            "notebook",
            ("NOTEBOOK",),
            help="The notebook's .py file on the cluster (edit makes it if it does not exist).",
            required=True,
        ),
        Param("args", ("ARGS",), help="Other marimo flags, after --.", many=True),
    ),
    summary="Start a marimo notebook in a SLURM job and open it in your browser.",
    details="marimo is served on a private Unix socket by a small launcher (marimo itself "
    "listens only on TCP); its token is made here and passed in a 0600 file, and the browser "
    "opens logged in. Its websocket works through the tunnel.",
    examples=("edit notebook.py --cluster swc", "run dashboard.py --cluster swc -p cpu"),
)
