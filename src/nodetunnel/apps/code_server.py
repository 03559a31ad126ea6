"""VS Code in the browser on the node (code-server), on the job's private Unix socket, behind
code-server's password login, the password being the secret made on the laptop.

A small launcher reads the password from the 0600 file and starts code-server with it in the
environment (``$PASSWORD``; code-server refuses it in argv), on ``--socket`` in the private
directory with its session socket there too, without telemetry or update checks. The page
nodetunnel opens on the laptop posts the login form, so the browser lands in the workbench.
"""

from __future__ import annotations

from .base import Auth, Param, ShellVar, Slot, launcher_app

CODE_SERVER = launcher_app(
    "code_server_app.py",
    Slot("folder"),
    Slot("args"),
    package="code-server",
    name="code",
    title="code-server",
    install_hint="Python 3 and code-server are needed on the node; install code-server in the "
    "environment you activate (npm install -g code-server)",
    env=(("NT_TOKEN_FILE", ShellVar("NT_TOKEN_FILE")),),
    auth=Auth(form="/login", form_fields=(("password", "{token}"),)),
    ready_path="/healthz",
    url_path="/",
    preferred_port=8080,
    params=(
        Param(
            "folder", ("DIR",), help="The folder on the cluster to open (default: the last one)."
        ),
        Param("args", ("ARGS",), help="Other code-server flags, after --.", many=True),
    ),
    summary="Start VS Code in the browser (code-server) in a SLURM job and open it.",
    details="code-server listens on a private Unix socket, behind its password login with a "
    "password made here and passed in a 0600 file; the browser opens logged in. Its "
    "websockets work through the tunnel. For the VS Code app on your laptop instead, see "
    "'nodetunnel vscode'.",
    examples=("~/project --cluster swc", "~/project --cluster swc -p gpu --gres gpu:1"),
)
