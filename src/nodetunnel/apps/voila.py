"""Voilà (a notebook as a dashboard), on the job's private Unix socket: a small launcher runs
Voilà's own app and serves it on a socket (Voilà itself listens only on TCP), with its token
(``--token``, read from the 0600 file through ``JUPYTER_TOKEN_FILE``; without ``--token``
Voilà has no auth at all) and the kernel's channels as Unix sockets in the private directory."""

from __future__ import annotations

from .base import Auth, Param, ShellVar, Slot, launcher_app

VOILA = launcher_app(
    "voila_app.py",
    Slot("notebook"),
    Slot("args"),
    package="voila",
    name="voila",
    title="Voila",
    env=(("JUPYTER_TOKEN_FILE", ShellVar("NT_TOKEN_FILE")),),
    auth=Auth(header="Authorization", header_value="token {token}", query="token"),
    # Logged in (the token is right), the login page sends the browser on; else it shows.
    ready_path="/login",
    ready_statuses=frozenset({302}),
    url_path="/",
    preferred_port=8866,
    params=(
        Param(
            "notebook", ("NOTEBOOK",), help="The notebook (.ipynb) on the cluster.", required=True
        ),
        Param("args", ("ARGS",), help="Other Voila flags, after --.", many=True),
    ),
    summary="Start a Voila dashboard (a notebook) in a SLURM job and open it in your browser.",
    details="The notebook is rendered by Voila on a private Unix socket, with a token made here "
    "and passed in a 0600 file; the browser opens logged in. Its kernel talks over Unix "
    "sockets in the job's private directory, not TCP ports.",
    examples=("dashboard.ipynb --cluster swc", "dashboard.ipynb --cluster swc -- --theme=dark"),
)
