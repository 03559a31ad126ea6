"""The scheduler layer: submit, watch and cancel the batch jobs that run the apps.

>>> from nodetunnel.scheduler import JobRequest, Slurm, run_locally
>>> slurm = Slurm(run_locally)
>>> print(slurm.job_script(JobRequest(partition="gpu", gres="gpu:1"), "exec app\\n"), end="")
#!/bin/sh
#SBATCH --job-name=nodetunnel
#SBATCH --partition=gpu
#SBATCH --gres=gpu:1
#SBATCH --no-requeue
: end of the SBATCH directives
exec app

See :mod:`.base` for the interface, :mod:`.slurm` for SLURM, :mod:`.testing` for
test doubles (``FakeRunner``, ``FakeSlurm``). A backend is registered in
:data:`SCHEDULERS` by name; a profile's ``scheduler`` key picks one.
"""

from __future__ import annotations

from ..errors import UsageError
from .base import (
    CommandRunner,
    JobRequest,
    JobState,
    JobStatus,
    PendingInfo,
    Scheduler,
    run_locally,
)
from .slurm import Slurm, expand_hostlist, job_script, parse_time_left, render_header

#: Every scheduler backend, by the name a profile's ``scheduler`` key uses.
SCHEDULERS: dict[str, type[Scheduler]] = {Slurm.name: Slurm}
DEFAULT_SCHEDULER = Slurm.name


def scheduler_class(name: str) -> type[Scheduler]:
    """The backend called ``name``; :class:`UsageError` for one nodetunnel does not have."""
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise UsageError(
            f"unknown scheduler {name!r}",
            hint=f"use one of: {', '.join(sorted(SCHEDULERS))}",
        ) from None


def make_scheduler(name: str, runner: CommandRunner) -> Scheduler:
    """The backend called ``name``, running its commands through ``runner``."""
    return scheduler_class(name)(runner)


__all__ = [
    "DEFAULT_SCHEDULER",
    "SCHEDULERS",
    "CommandRunner",
    "JobRequest",
    "JobState",
    "JobStatus",
    "PendingInfo",
    "Scheduler",
    "Slurm",
    "expand_hostlist",
    "job_script",
    "make_scheduler",
    "parse_time_left",
    "render_header",
    "run_locally",
    "scheduler_class",
]
