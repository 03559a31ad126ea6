"""Reading SLURM's answers: squeue lines, host lists, times, sbatch's job id (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...errors import SchedulerError, UsageError
from ..base import JobState, JobStatus, PendingInfo

#: squeue's output, one job per line. ``|`` cannot occur in a job id, state
#: name, node list, time, user name or start time; the reason comes last and is
#: split off with ``maxsplit`` so even a free-text reason cannot shift fields.
#: (The job name, which can contain anything, is deliberately not queried.)
SQUEUE_FORMAT = "%i|%T|%N|%L|%S|%u|%r"
_SQUEUE_FIELDS = 7
_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+)?")
_SBATCH_OUTPUT = re.compile(r"(?P<id>[0-9]+)(?:;(?P<cluster>\S+))?")
_MAX_HOSTS = 100_000


def parse_time_left(text: str) -> int | None:
    """Seconds in squeue's time format (``%L``): ``1-02:03:04``, ``2:03:04``, ``3:04``.

    ``None`` for ``UNLIMITED``, ``NOT_SET``, ``INVALID`` and similar; ``ValueError``
    for anything else that is not a time.
    """
    t = text.strip()
    if t.upper() in ("UNLIMITED", "INFINITE", "NOT_SET", "INVALID", "N/A", "NONE", ""):
        return None
    days = 0
    if "-" in t:
        d, t = t.split("-", 1)
        if not re.fullmatch(r"[0-9]+", d):
            raise ValueError(f"not a time: {text!r}")
        days = int(d)
    parts = t.split(":")
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise ValueError(f"not a time: {text!r}")
    nums = [int(p) for p in parts]
    if days:  # D-HH[:MM[:SS]]
        nums += [0] * (3 - len(nums))
    else:  # [[HH:]MM:]SS
        nums = [0] * (3 - len(nums)) + nums
    hours, minutes, seconds = nums
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def expand_hostlist(nodelist: str) -> list[str]:
    """SLURM's compact host list as names: ``node[1-3,5],gpu01`` -> node1 node2 node3 node5 gpu01.

    Handles ranges with zero padding (``n[01-10]``) and several bracket groups
    in one name (``r[1-2]n[1-2]``). Empty or ``(null)`` gives ``[]``; anything
    malformed raises ``ValueError``.
    """
    text = nodelist.strip()
    if text in ("", "(null)", "None assigned", "n/a", "N/A"):
        return []
    names: list[str] = []
    for part in _split_top_level(text, nodelist):
        names.extend(_expand_name(part, nodelist))
        if len(names) > _MAX_HOSTS:
            raise ValueError(f"host list {nodelist!r} expands to more than {_MAX_HOSTS} names")
    return names


def _split_top_level(text: str, original: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if depth not in (0, 1):
            raise ValueError(f"unbalanced brackets in host list {original!r}")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise ValueError(f"unbalanced brackets in host list {original!r}")
    parts.append(current)
    if any(not p or p.isspace() for p in parts):
        raise ValueError(f"empty name in host list {original!r}")
    return parts


def _expand_name(part: str, original: str) -> list[str]:
    m = re.search(r"\[([^\[\]]*)\]", part)
    if m is None:
        return [part]
    prefix, spec, rest = part[: m.start()], m[1], part[m.end() :]
    values: list[str] = []
    for item in spec.split(","):
        r = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", item.strip())
        if r is None:
            raise ValueError(f"bad range {item!r} in host list {original!r}")
        lo, hi = r[1], r[2] if r[2] is not None else r[1]
        if int(hi) < int(lo) or int(hi) - int(lo) > _MAX_HOSTS:
            raise ValueError(f"bad range {item!r} in host list {original!r}")
        values += [f"{n:0{len(lo)}d}" for n in range(int(lo), int(hi) + 1)]
    tails = _expand_name(rest, original)
    return [prefix + v + t for v in values for t in tails]


def _none_if_na(text: str) -> str | None:
    t = text.strip()
    return None if t in ("", "N/A", "None", "NONE", "Unknown", "(null)") else t


def parse_squeue(stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
    """Parse ``squeue -o SQUEUE_FORMAT`` output into a status for each of ``job_ids``.

    A requested job missing from the output is :attr:`JobState.ENDED`; jobs that
    were not asked about are ignored. A line that is not in the expected format
    raises :class:`SchedulerError` (a wrong guess would misreport a live job).
    """
    found: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", _SQUEUE_FIELDS - 1)
        if len(fields) != _SQUEUE_FIELDS or not _JOB_ID.fullmatch(fields[0].strip()):
            raise SchedulerError(
                f"cannot read squeue's output line {line!r} (expected {SQUEUE_FORMAT!r})",
                hint="this squeue prints an unexpected format; please report it with "
                "'squeue --version'",
            )
        job_id, state, nodelist, left, start, user, reason = (f.strip() for f in fields)
        try:
            nodes = tuple(expand_hostlist(nodelist))
        except ValueError as exc:
            raise SchedulerError(
                f"cannot read the node list {nodelist!r} of job {job_id}: {exc}",
                hint="please report this node list; 'scontrol show hostnames' expands it",
            ) from exc
        try:
            time_left_s = parse_time_left(left)
        except ValueError:
            time_left_s = None  # informational only: never fail a status over it
        found[job_id] = JobStatus(
            job_id=job_id,
            state=JobState.parse(state),
            nodelist="" if not nodes else nodelist,
            nodes=nodes,
            reason=_none_if_na(reason),
            time_left_s=time_left_s,
            start_estimate=_none_if_na(start),
            user=user or None,
            state_raw=state,
        )
    return {jid: found.get(jid) or JobStatus.ended(jid) for jid in job_ids}


#: Like :data:`SQUEUE_FORMAT` with the job name second, for :meth:`Slurm.named_jobs`.
NAMED_FORMAT = "%i|%j|" + SQUEUE_FORMAT.removeprefix("%i|")


def parse_named_jobs(
    stdout: str, name_pattern: re.Pattern[str]
) -> dict[str, tuple[str, JobStatus]]:
    """``{job id: (name, status)}`` for the lines of ``squeue -o NAMED_FORMAT`` whose job name
    fully matches ``name_pattern`` (a pattern without ``|``); other jobs are skipped unread.
    """
    found: dict[str, tuple[str, JobStatus]] = {}
    for line in stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        name, sep, fields = rest.partition("|")
        if not sep or not name_pattern.fullmatch(name) or not _JOB_ID.fullmatch(job_id):
            continue
        found[job_id] = (name, parse_squeue(f"{job_id}|{fields}", [job_id])[job_id])
    return found


def parse_sbatch_output(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` output (``JOBID`` or ``JOBID;CLUSTER``)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    m = _SBATCH_OUTPUT.fullmatch(lines[-1]) if lines else None
    if m is None:
        raise SchedulerError(
            f"sbatch succeeded but printed no job id (output: {stdout.strip()[:200]!r})",
            hint="look for the job with 'squeue --me' and cancel it with scancel if it is there",
        )
    return m["id"]


def check_job_id(job_id: object) -> str:
    """``job_id`` if it looks like a SLURM job id (``123`` or ``123_4``), else UsageError."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise UsageError(
            f"{job_id!r} is not a SLURM job id",
            hint="a job id is a number like 12345; 'squeue --me' lists yours",
        )
    return job_id


#: sacct's fields for an ended job (``--parsable2``: ``|``-separated, no trailing ``|``).
SACCT_FORMAT = "JobIDRaw,State,ExitCode,NodeList"


def parse_sacct(stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
    """The jobs of ``job_ids`` that ``sacct --format=SACCT_FORMAT`` knows (their allocation line).

    Job steps (``123.batch``) and jobs not asked about are skipped; a line that
    cannot be read is skipped too (accounting only refines what squeue said).
    """
    wanted = set(job_ids)
    found: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4 or fields[0] not in wanted:
            continue
        job_id, state, _exit, nodelist = fields
        try:
            nodes = tuple(expand_hostlist(nodelist))
        except ValueError:
            nodes = ()
        found[job_id] = JobStatus(job_id, JobState.parse(state), nodelist=nodelist if nodes else "",
                                  nodes=nodes, state_raw=state)  # fmt: skip
    return found


#: The pending jobs of a partition (``squeue --start --states=PD --sort=-p,i``), one per line,
#: in priority order. The reason, free text, comes last (split off with ``maxsplit``).
PENDING_FORMAT = "%i|%P|%S|%r"
_PENDING_FIELDS = 4
#: A pending job's id as squeue prints it: ``123``, an array task ``123_4``, or the array's
#: not yet split pending tasks on one line, ``123_[5-10%2]``.
_PENDING_ID = re.compile(r"[0-9]+(?:_(?:[0-9]+|\[[0-9,%\-]+\]))?")
_ISO_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


def parse_start(text: str) -> str | None:
    """SLURM's start estimate (``%S``) if it is an ISO 8601 time; ``None`` for ``N/A``,
    ``Unknown``, empty or anything else."""
    t = text.strip()
    return t if _ISO_START.fullmatch(t) else None


def parse_pending(stdout: str, job_id: str) -> PendingInfo | None:
    """``job_id``'s place among the pending jobs of ``squeue -o PENDING_FORMAT`` output.

    The lines are in squeue's order (``--sort=-p,i``: priority, then age). The
    position counts the lines whose partitions share one with the job's (a job
    may be pending in ``cpu,gpu``), each job once. ``None`` when the job is not
    among them (no longer pending). Lines that cannot be read are skipped: this
    only informs the user, it never fails a start.
    """
    return parse_pending_queue(stdout, [job_id]).get(job_id)


def parse_pending_queue(stdout: str, job_ids: Sequence[str]) -> dict[str, PendingInfo]:
    """Each of ``job_ids`` still among the pending jobs of ``squeue -o PENDING_FORMAT``
    output, with its place in its partitions' queue (as :func:`parse_pending` counts it)."""
    rows: list[tuple[str, frozenset[str], str, str]] = []
    seen: set[str] = set()
    for line in stdout.splitlines():
        fields = line.split("|", _PENDING_FIELDS - 1)
        if len(fields) != _PENDING_FIELDS:
            continue
        jid, partition, start, reason = (f.strip() for f in fields)
        parts = frozenset(p for p in partition.split(",") if p)
        if not _PENDING_ID.fullmatch(jid) or not parts or jid in seen:
            continue
        seen.add(jid)
        rows.append((jid, parts, start, reason))
    wanted = set(job_ids)
    found: dict[str, PendingInfo] = {}
    for jid, my_parts, start, reason in rows:
        if jid not in wanted:
            continue
        queue = [row[0] for row in rows if row[1] & my_parts]
        found[jid] = PendingInfo(
            reason=_none_if_na(reason),
            estimated_start=parse_start(start),
            position=queue.index(jid) + 1,
            pending_in_partition=len(queue),
            partition=",".join(sorted(my_parts)),
        )
    return found
