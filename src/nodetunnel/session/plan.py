"""What a session would do, without doing it (``--dry-run``)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from ..scheduler import scheduler_class
from ..scheduler.base import run_locally
from .jobscript import SOCKET_DIR_TEMPLATE, render_body
from .lifecycle import default_transport
from .model import SESSIONS_DIR, LaunchRequest, job_name_for
from .remote import JOB_LOG


def plan(req: LaunchRequest) -> str:
    """The batch script and the commands a session would run (no secret is made)."""
    session_dir = f"/HOME/{SESSIONS_DIR}/nt-XXXXXXXX"
    job = dataclasses.replace(
        req.job, output=f"{session_dir}/{JOB_LOG}", job_name=job_name_for(req.app, "nt-XXXXXXXX")
    )
    backend = scheduler_class(req.cluster.scheduler)
    transport = default_transport(req.cluster, Path("SESSION_DIR"), req)
    body = render_body(req.app, req.env, session_dir, scheduler=backend, tcp=req.tcp,
                       lease_s=req.lease_s)  # fmt: skip
    script = backend(run_locally).job_script(job, body)
    submit = transport.submit_argv(list(backend.SUBMIT_ARGV))
    port = req.local_port or req.app.preferred_port or 8080
    tunnel = transport.forward_argv("NODE", port, SOCKET_DIR_TEMPLATE + "/s")
    return "\n".join(
        [
            "# HOME stands for your home directory on the cluster, NODE for the job's node,",
            "# SESSION_DIR for this session's private directory on this machine.",
            f"# batch script, sent on stdin to {backend.SUBMIT_ARGV[0]} on {transport.submit_host}:",
            script,
            "# submit:",
            shlex.join(submit),
            "# tunnel, once the job runs on NODE:",
            shlex.join(tunnel),
            "",
        ]
    )
