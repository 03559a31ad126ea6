"""Panel (and the Bokeh apps it serves), on the job's private Unix socket (``panel serve
--unix-socket``), behind Panel's basic auth whose password is the secret made on the laptop.

A small launcher runs Panel's CLI in its own process with the password read from the 0600
file (never argv; ``PANEL_BASIC_AUTH`` would lower-case it) and a cookie secret of its own;
the page nodetunnel opens on the laptop posts the login form, so the browser lands logged in.
"""

from __future__ import annotations

from .base import Auth, Param, ShellVar, Slot, launcher_app

PANEL = launcher_app(
    "panel_app.py",
    Slot("mode"),
    Slot("apps"),
    Slot("args"),
    package="panel",
    name="panel",
    title="Panel",
    env=(("NT_TOKEN_FILE", ShellVar("NT_TOKEN_FILE")),),
    auth=Auth(form="/login", form_fields=(("username", "nodetunnel"), ("password", "{token}"))),
    ready_path="/liveness",  # Panel's --liveness endpoint
    url_path="/",
    preferred_port=5006,
    params=(
        Param(
            "mode",
            ("serve",),
            help="serve (as in 'panel serve').",
            required=True,
            choices=("serve",),
        ),
        Param(
            "apps", ("APP",), help="The app's file (.py or .ipynb) on the cluster.", required=True
        ),
        Param("args", ("ARGS",), help="Other 'panel serve' flags, after --.", many=True),
    ),
    summary="Start a Panel app (panel serve) in a SLURM job and open it in your browser.",
    details="The app is served on a private Unix socket, behind Panel's login with a password "
    "made here and passed in a 0600 file; the browser opens logged in. Its websocket works "
    "through the tunnel.",
    examples=("serve app.py --cluster swc", "serve dashboard.ipynb --cluster swc -- --warm"),
)
