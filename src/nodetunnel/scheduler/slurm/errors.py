"""SLURM's refusals as one message naming the refused value, with the next step."""

from __future__ import annotations

import re
from collections.abc import Callable

from ...errors import NodetunnelError, SchedulerError
from ...proc import Completed
from ..base import JobRequest
from .script import DIRECTIVES

_INVALID_PARTITION = r"invalid partition specified: (\S+)"

_MESSAGE_PREFIXES = (
    "sbatch: error:",
    "sbatch:",
    "squeue: error:",
    "squeue:",
    "slurm_load_jobs error:",
    "scancel: error:",
    "scancel:",
    "sinfo: error:",
    "sinfo:",
)


def _error_lines(stderr: str) -> list[str]:
    lines = []
    for raw in stderr.splitlines():
        line = raw.strip()
        for prefix in _MESSAGE_PREFIXES:
            if line.startswith(prefix):
                line = line[len(prefix) :].strip()
                break
        line = line.removeprefix("Batch job submission failed:").strip()
        if line and not line.startswith('Try "sbatch --help"'):
            lines.append(line)
    return lines


def _summary(stderr: str) -> str:
    lines = _error_lines(stderr)
    return "; ".join(dict.fromkeys(lines)) if lines else "no error message"


_CONTROLLER_DOWN = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "zero bytes were transmitted",
)


def _controller_error(program: str, stderr: str) -> SchedulerError | None:
    low = stderr.lower()
    if any(s in low for s in _CONTROLLER_DOWN):
        return SchedulerError(
            f"{program} could not reach the SLURM controller ({_summary(stderr)})",
            hint="the scheduler is busy or down: try again in a minute; if it persists, "
            "tell the cluster's admins",
        )
    return None


def _not_installed(program: str, done: Completed) -> SchedulerError | None:
    if done.returncode == 127 and "not found" in done.stderr.lower():
        return SchedulerError(
            f"{program!r} was not found on the submit host ({_summary(done.stderr)})",
            hint="nodetunnel must submit from a SLURM login node: one where "
            f"'{program} --version' works",
        )
    return None


def _resources(req: JobRequest | None) -> str:
    if req is None:
        return "the requested resources"
    asked = [
        f"{option.lstrip('-')} {value}"
        for field, option in DIRECTIVES
        if field in ("gres", "gpus", "mem", "cpus_per_task", "constraint")
        and (value := getattr(req, field)) is not None
    ]
    return ", ".join(asked) if asked else "the default resources"


def _partition_hint(partitions: Callable[[], list[str]]) -> str:
    try:
        names = partitions()
    except NodetunnelError:
        names = []
    if names:
        return f"choose one of: {', '.join(names)} ('sinfo -s' lists them with their nodes)"
    return "list the partitions with 'sinfo -s' and pick one with --partition"


def translate_sbatch_error(
    stderr: str,
    request: JobRequest | None = None,
    partitions: Callable[[], list[str]] = list,
) -> SchedulerError:
    """The :class:`SchedulerError` for sbatch's refusal ``stderr``: names the value, hints the fix.

    ``partitions`` is only called for an unknown partition, to list the real ones.
    """
    low = stderr.lower()
    said = _summary(stderr)
    req = request

    def value(field: str, pattern: str | None = None) -> str:
        v = getattr(req, field) if req is not None else None
        if v is None and pattern is not None:
            m = re.search(pattern, stderr, re.IGNORECASE)
            v = m[1] if m else None
        return repr(v) if v is not None else "(the cluster's default)"

    controller = _controller_error("sbatch", stderr)
    if controller is not None:
        return controller
    if "invalid partition" in low:
        partition = value("partition", _INVALID_PARTITION)
        return SchedulerError(
            f"partition {partition} does not exist on this cluster (sbatch: {said})",
            hint=_partition_hint(partitions),
        )
    if "requested node configuration is not available" in low or "can not be satisfied" in low:
        part = value("partition")
        return SchedulerError(
            f"no node in partition {part} has {_resources(req)} (sbatch: {said})",
            hint="ask for fewer resources; \"sinfo -o '%P %c %m %G %f'\" lists each partition's "
            "CPUs, memory (MB), GPUs/GRES and features",
        )
    if "policy" in low or "maxsubmit" in low or "submit limit" in low:
        return SchedulerError(
            f"the job breaks a limit of your account or QOS (sbatch: {said})",
            hint="ask for less (time, GPUs, memory) or use another account/QOS; "
            "'sacctmgr show qos' shows the limits",
        )
    if "invalid generic resource" in low or "invalid gres" in low:
        return SchedulerError(
            f"the GPU/GRES request {value('gres')} is not valid here (sbatch: {said})",
            hint="write it as NAME[:TYPE]:COUNT, e.g. gpu:1; \"sinfo -o '%P %G'\" lists the "
            "GRES of each partition",
        )
    if "invalid account" in low:
        return SchedulerError(
            f"account {value('account')} cannot be used here (sbatch: {said})",
            hint="'sacctmgr show assoc user=$USER format=account,partition,qos' lists your "
            "accounts and where each may be used",
        )
    if "invalid qos" in low:
        return SchedulerError(
            f"QOS {value('qos')} cannot be used here (sbatch: {said})",
            hint="'sacctmgr show assoc user=$USER format=account,qos' lists the QOS you may use",
        )
    if "invalid feature" in low:
        return SchedulerError(
            f"constraint {value('constraint')} matches no node feature (sbatch: {said})",
            hint="\"sinfo -o '%P %f'\" lists the node features of each partition",
        )
    if "reservation" in low and "invalid" in low:
        return SchedulerError(
            f"reservation {value('reservation')} cannot be used (sbatch: {said})",
            hint="'scontrol show reservation' lists the reservations and who may use them",
        )
    if "--time" in low or "requested time limit" in low:
        return SchedulerError(
            f"time limit {value('time')} was refused (sbatch: {said})",
            hint="write it as MINUTES, HH:MM:SS or D-HH:MM:SS, within the partition's limit "
            "(\"sinfo -o '%P %l'\" shows it)",
        )
    if "--mem" in low or "memory specification" in low:
        return SchedulerError(
            f"memory {value('mem')} was refused (sbatch: {said})",
            hint="write it as a number with a unit, e.g. 16G or 500M, within what the nodes "
            "have (\"sinfo -o '%P %m'\" shows MB per node)",
        )
    if "unrecognized option" in low or "invalid option" in low or "unknown option" in low:
        return SchedulerError(
            f"sbatch does not know an option it was given (sbatch: {said})",
            hint="check the --sbatch-arg values against 'sbatch --help' on the cluster",
        )
    return SchedulerError(
        f"sbatch refused the job: {said}",
        hint="fix the option sbatch names; 'sbatch --help' on the cluster lists them",
    )
