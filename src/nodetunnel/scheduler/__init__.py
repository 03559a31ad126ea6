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

See :mod:`.base` for the interface, :mod:`.slurm` for SLURM, :mod:`.fake` for
test doubles (``FakeRunner``, ``FakeSlurm``).
"""

from .base import CommandRunner, JobRequest, JobState, JobStatus, Scheduler, run_locally
from .slurm import Slurm, expand_hostlist, job_script, parse_time_left, render_header

__all__ = [
    "CommandRunner",
    "JobRequest",
    "JobState",
    "JobStatus",
    "Scheduler",
    "Slurm",
    "expand_hostlist",
    "job_script",
    "parse_time_left",
    "render_header",
    "run_locally",
]
