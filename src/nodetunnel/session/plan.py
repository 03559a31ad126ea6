"""What a session would do, without doing it (``--dry-run``)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from ..scheduler import scheduler_class
from ..scheduler.base import run_locally
from . import extras
from .jobscript import render_body
from .lifecycle import default_transport
from .model import SESSIONS_DIR, LaunchRequest, job_name_for
from .remote import JOB_LOG

SOCKET_DIR_PLAN = "/tmp/nt.RANDOM0123456789"  # a real start makes 16 random hex digits
PORT_PLAN = 8080  # shown for an app without a usual port; a real start takes a free one


def plan(req: LaunchRequest) -> str:
    """The batch script and the commands a session would run (no secret is made)."""
    session_dir = f"/HOME/{SESSIONS_DIR}/nt-XXXXXXXX"
    job = dataclasses.replace(
        req.job, output=f"{session_dir}/{JOB_LOG}", job_name=job_name_for(req.app, "nt-XXXXXXXX")
    )
    backend = scheduler_class(req.cluster.scheduler)
    transport = default_transport(req.cluster, Path("SESSION_DIR"), req)
    # As a real start does: the socket's directory is named here (16 random hex digits).
    on_socket = not req.tcp and req.app.listen != "tcp"
    socket_dir = SOCKET_DIR_PLAN if on_socket else None
    body = render_body(req.app, req.env, session_dir, scheduler=backend, tcp=req.tcp,
                       lease_s=req.lease_s, socket_dir=socket_dir, extras=req.extras)  # fmt: skip
    script = backend(run_locally).job_script(job, body)
    submit = transport.submit_argv(list(backend.SUBMIT_ARGV))
    port = req.local_port or req.app.preferred_port or PORT_PLAN
    tunnel = transport.forward_argv(
        "NODE", port, f"{socket_dir}/s" if socket_dir else "127.0.0.1:NODE_PORT",
        [(f.app.preferred_port or PORT_PLAN + n, f.remote or f"127.0.0.1:NODE_PORT{n}")
         for n, f in enumerate(extras.planned(req.extras, socket_dir), 1)],
    )  # fmt: skip
    return "\n".join(
        [
            "# HOME stands for your home directory on the cluster, NODE for the job's node,",
            "# SESSION_DIR for this session's private directory on this machine, RANDOM... for",
            "# the random name of the app's directory on the node (made when the session starts).",
            f"# batch script, sent on stdin to {backend.SUBMIT_ARGV[0]} on {transport.submit_host}:",
            script,
            "# submit:",
            shlex.join(submit),
            "# tunnel, once the job runs on NODE:",
            shlex.join(tunnel),
            "",
        ]
    )
