"""TensorBoard, served on the job's private Unix socket by a small launcher (its own
``--host unix://`` crashes), with the fast loader's unauthenticated gRPC port turned off."""

from __future__ import annotations

from .base import App, Param, ShellVar, Slot

_LAUNCH = ("python3", ShellVar("NT_RUN", suffix="/launch.py"), ShellVar("NT_SOCK"),
           "--logdir", Slot("logdir"), Slot("args"))  # fmt: skip

TENSORBOARD = App(
    name="tensorboard",
    title="TensorBoard",
    program="python3",
    launch=_LAUNCH,
    launch_tcp=_LAUNCH,
    listen="socket",
    launcher="tensorboard_app.py",
    ready_path="/data/runs",
    url_path="/",
    preferred_port=6006,
    install_hint="Python 3 is needed; install TensorBoard in the environment you activate "
    "(pip install tensorboard)",
    params=(
        Param(
            "logdir",
            ("--logdir",),
            help="The directory of event files on the cluster.",
            required=True,
        ),
        Param("args", ("ARGS",), help="Other TensorBoard flags, after --.", many=True),
    ),
    summary="Start TensorBoard in a SLURM job and open it in your browser.",
    details="TensorBoard is served on a private Unix socket; its fast data loader, which "
    "would open a gRPC port on the node without authentication, is turned off.",
    examples=("--logdir ~/runs --cluster swc",),
)
