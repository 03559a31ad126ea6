"""TensorBoard, served on the job's private Unix socket by a small launcher (its own
``--host unix://`` crashes), with the fast loader's unauthenticated gRPC port turned off."""

from __future__ import annotations

from .base import Param, Slot, launcher_app

TENSORBOARD = launcher_app(
    "tensorboard_app.py",
    "--logdir",
    Slot("logdir"),
    Slot("args"),
    package="tensorboard",
    name="tensorboard",
    title="TensorBoard",
    ready_path="/data/runs",
    url_path="/",
    preferred_port=6006,
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
