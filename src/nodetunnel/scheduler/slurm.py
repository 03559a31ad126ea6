"""The SLURM backend: job scripts with quoted ``#SBATCH`` lines, sbatch/squeue/scancel via argv.

Design (after submitit's SLURM backend and dask-jobqueue):

* The script is rendered by pure functions (:func:`render_header`,
  :func:`job_script`) and checked against golden files. Every ``#SBATCH``
  value is quoted by :func:`sbatch_quote`, values with control characters are
  refused (a newline would end the ``#SBATCH`` line and start a new directive
  or a command), and a ``:`` line ends the directives, so the body cannot add
  any.
* ``sbatch --parsable --ignore-pbs`` reads the script on stdin: its argv carries
  no user value at all. Its refusals become :class:`SchedulerError` naming the
  refused value, with a hint (``sinfo -s`` ...).
* :meth:`Slurm.status` asks about any number of jobs with **one** ``squeue``
  call; a job squeue no longer shows is :attr:`JobState.ENDED`.
* Every call goes through the :class:`CommandRunner` with a timeout.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

from ..errors import CommandNotFound, NodetunnelError, SchedulerError, UsageError
from ..proc import Completed
from ..quoting import control_char
from .base import CommandRunner, JobRequest, JobState, JobStatus, Scheduler

SHEBANG = "#!/bin/sh"

#: Ends the ``#SBATCH`` block: sbatch stops reading directives at the first
#: line that is not a comment, so nothing in the body can add one.
END_OF_DIRECTIVES = ": end of the SBATCH directives"

#: (JobRequest field, sbatch option), in the order they are written.
DIRECTIVES: tuple[tuple[str, str], ...] = (
    ("job_name", "--job-name"),
    ("partition", "--partition"),
    ("account", "--account"),
    ("qos", "--qos"),
    ("reservation", "--reservation"),
    ("constraint", "--constraint"),
    ("time", "--time"),
    ("cpus_per_task", "--cpus-per-task"),
    ("mem", "--mem"),
    ("gres", "--gres"),
    ("gpus", "--gpus"),
    ("workdir", "--chdir"),
    ("output", "--output"),
)

#: Written into every job script, after the fields and before the extra arguments.
NO_REQUEUE = "--no-requeue"

#: squeue's output, one job per line. ``|`` cannot occur in a job id, state
#: name, node list, time, user name or start time; the reason comes last and is
#: split off with ``maxsplit`` so even a free-text reason cannot shift fields.
#: (The job name, which can contain anything, is deliberately not queried.)
SQUEUE_FORMAT = "%i|%T|%N|%L|%S|%u|%r"
_SQUEUE_FIELDS = 7

#: Options that would break nodetunnel's handling of the job, by long name.
DENIED_OPTIONS: dict[str, str] = {
    "array": "nodetunnel runs one job per app, not a job array",
    "wait": "sbatch would not return until the job ends",
    "wrap": "the job script is written by nodetunnel",
    "test-only": "it only tests the request and submits nothing",
    "clusters": "nodetunnel follows jobs on the default cluster only",
    "output": "nodetunnel keeps the job log in the session directory, to report failures",
    "error": "nodetunnel keeps the job log in the session directory, to report failures",
    "chdir": "use --workdir, which the app starts in",
    "hold": "a held job would never start the app",
    "job-name": "nodetunnel names the job after the session, to find it again",
}
_DENIED_SHORT = {
    "a": "array", "W": "wait", "M": "clusters", "o": "output", "e": "error", "D": "chdir",
    "H": "hold", "J": "job-name",
}  # fmt: skip
#: sbatch's short options that take no argument (so a cluster like -HW goes on).
_NO_ARG_SHORT = frozenset("HhIOQsuvVW")

_LONG_OPTION = re.compile(r"--(?P<name>[A-Za-z][A-Za-z0-9-]*)(?:=(?P<value>.*))?", re.DOTALL)
_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+)?")
_SBATCH_OUTPUT = re.compile(r"(?P<id>[0-9]+)(?:;(?P<cluster>\S+))?")
_MAX_HOSTS = 100_000
_INVALID_PARTITION = r"invalid partition specified: (\S+)"


# --------------------------------------------------------------------------- rendering
def sbatch_quote(value: str) -> str:
    """Quote ``value`` as one word for both a POSIX shell and sbatch's ``#SBATCH`` parser.

    This is :func:`shlex.quote`, except for backslashes: sbatch treats ``\\``
    as an escape even inside single quotes, so each one is written as
    ``"\\\\"``, which sbatch, ``sh`` and :func:`shlex.split` all read as one
    backslash.
    """
    if "\\" not in value:
        return shlex.quote(value)
    return '"\\\\"'.join(shlex.quote(part) if part else "" for part in value.split("\\"))


_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _describe_char(ch: str) -> str:
    names = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte", "\t": "a tab"}
    return names.get(ch, f"the control character {ch!r}")


def check_value(option: str, value: object) -> str:
    """``value`` as a string fit for an ``#SBATCH`` line, or :class:`UsageError` naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UsageError(
            f"{option}: {value!r} is not a text value",
            hint=f"give {option} as text, e.g. {option}=VALUE",
        )
    text = str(value)
    if not text.strip():
        raise UsageError(
            f"{option}: the value {text!r} is empty",
            hint=f"give {option} a value, or leave it out to use the cluster's default",
        )
    ch = control_char(text)
    if ch is not None:
        if ch in _LINE_BREAKS:
            why = "it would end the #SBATCH line and start a new one"
        elif ch == "\x00":
            why = "sbatch refuses scripts with NUL bytes"
        else:
            why = "control characters are not allowed there"
        raise UsageError(
            f"{option}: the value {text!r} contains {_describe_char(ch)}, which cannot be "
            f"written into a job script ({why})",
            hint=f"remove the {_describe_char(ch).split(' ', 1)[1]} from {option}",
        )
    return text


def check_extra_arg(arg: object) -> str:
    """Validate one raw sbatch option (``--mail-type=END``, ``-N1``) for an ``#SBATCH`` line."""
    text = check_value("--sbatch-arg", arg)
    if not text.startswith("-") or text in ("-", "--"):
        raise UsageError(
            f"--sbatch-arg: {text!r} is not an sbatch option (it must start with - or --)",
            hint="pass each option as one word, e.g. --sbatch-arg=--mail-type=END",
        )
    if text.startswith("--"):
        m = _LONG_OPTION.fullmatch(text)
        if m is None:
            raise UsageError(
                f"--sbatch-arg: {text!r} is not one option word",
                hint="join option and value with '=', e.g. --sbatch-arg=--nodelist=node1",
            )
        name = m["name"]
        for denied, why in DENIED_OPTIONS.items():
            if denied.startswith(name):  # getopt also accepts unambiguous prefixes
                raise UsageError(
                    f"--sbatch-arg: {text!r} (sbatch --{denied}) cannot be used: {why}",
                    hint=f"remove {text!r} from the sbatch arguments",
                )
        return text
    for i, letter in enumerate(text[1:]):
        if not ("a" <= letter.lower() <= "z"):
            raise UsageError(
                f"--sbatch-arg: {text!r} is not one option word",
                hint="give each option separately, e.g. --sbatch-arg=-H --sbatch-arg=-N2",
            )
        if letter in _DENIED_SHORT:
            denied = _DENIED_SHORT[letter]
            raise UsageError(
                f"--sbatch-arg: {text!r} (sbatch --{denied}) cannot be used: "
                f"{DENIED_OPTIONS[denied]}",
                hint=f"remove {text!r} from the sbatch arguments",
            )
        if letter not in _NO_ARG_SHORT:
            if text[2 + i : 3 + i].isspace():
                raise UsageError(
                    f"--sbatch-arg: {text!r} has a space between the option and its value",
                    hint=f"write it as one word: {text[: 2 + i]}{text[2 + i :].lstrip()!s}",
                )
            break
    return text


def _directives(req: JobRequest) -> Iterator[tuple[str, str]]:
    for field, option in DIRECTIVES:
        value = getattr(req, field)
        if value is None:
            continue
        if field == "cpus_per_task" and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise UsageError(
                f"--cpus-per-task: {value!r} is not a positive whole number",
                hint="give the number of CPUs, e.g. --cpus-per-task=4",
            )
        yield option, check_value(option, value)


def render_header(req: JobRequest) -> str:
    """``#!/bin/sh``, one ``#SBATCH --option=VALUE`` line per set field (values quoted),
    ``#SBATCH --no-requeue``, then the extra arguments.

    ``--no-requeue``: when the node fails, SLURM would otherwise put the job back
    in the queue and later start the app again, with a new socket and without
    its kernels, behind the user's back; without requeue the job ends as
    NODE_FAIL and the session says so. An extra ``--requeue`` comes later, so wins.

    Raises :class:`UsageError` naming the option for a value that cannot be
    written safely (empty, or containing a newline or another control character).
    """
    lines = [SHEBANG]
    lines += [f"#SBATCH {option}={sbatch_quote(value)}" for option, value in _directives(req)]
    lines.append(f"#SBATCH {NO_REQUEUE}")
    lines += [f"#SBATCH {sbatch_quote(check_extra_arg(arg))}" for arg in req.extra_args]
    return "\n".join(lines) + "\n"


def job_script(req: JobRequest, body: str) -> str:
    """The whole batch script: :func:`render_header`, the end-of-directives line, ``body``."""
    if body.startswith("#!"):
        raise ValueError("the job body must not start with '#!': the header has the shebang")
    if body and not body.endswith("\n"):
        body += "\n"
    return render_header(req) + END_OF_DIRECTIVES + "\n" + body


# --------------------------------------------------------------------------- parsing
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


# --------------------------------------------------------------------------- errors
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


# --------------------------------------------------------------------------- backend
class Slurm(Scheduler):
    """SLURM through its command-line tools, run by ``runner`` on the submit host.

    Every command gets ``timeout_s``. Nothing here prints; failures are
    :class:`SchedulerError` (or the runner's ``CommandTimeout``).
    """

    name: ClassVar[str] = "slurm"

    def __init__(self, runner: CommandRunner, *, timeout_s: float = 60.0) -> None:
        self.runner = runner
        self.timeout_s = timeout_s

    def _run(self, argv: list[str], *, input: str | None = None) -> Completed:
        try:
            done = self.runner(argv, input=input, timeout_s=self.timeout_s, check=False)
        except CommandNotFound as exc:
            raise SchedulerError(
                f"{argv[0]!r} was not found on the submit host",
                hint="nodetunnel must submit from a SLURM login node: one where "
                f"'{argv[0]} --version' works",
            ) from exc
        if done.returncode != 0:
            err = _not_installed(argv[0], done) or _controller_error(argv[0], done.stderr)
            if err is not None:
                raise err
        return done

    def _failed(
        self, program: str, done: Completed, what: str, hint: str | None = None
    ) -> SchedulerError:
        return SchedulerError(
            f"{what}: {program} exited with code {done.returncode} "
            f"({_summary(done.stderr or done.stdout)})",
            hint=hint or "see SLURM's message; if it is temporary, try again in a minute",
        )

    # -- rendering ------------------------------------------------------------
    def job_script(self, request: JobRequest, body: str) -> str:
        return job_script(request, body)

    # -- commands -------------------------------------------------------------
    #: The whole submit command: no user value is ever on it (they are in the script).
    SUBMIT_ARGV: ClassVar[tuple[str, ...]] = ("sbatch", "--parsable", "--ignore-pbs")

    def submit(self, script: str, *, request: JobRequest | None = None) -> str:
        """``sbatch --parsable --ignore-pbs`` with ``script`` on stdin; returns the job id.

        (``--ignore-pbs``: sbatch would otherwise also obey ``#PBS``/``#BSUB`` lines.)
        A cluster name in sbatch's answer (``123;cluster``) is dropped.
        """
        done = self._run(list(self.SUBMIT_ARGV), input=script)
        if done.returncode != 0:
            raise translate_sbatch_error(done.stderr or done.stdout, request, self.partitions)
        return parse_sbatch_output(done.stdout)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """One ``squeue --states=all --jobs=ID,ID,...`` call for all ``job_ids``."""
        ids = list(dict.fromkeys(check_job_id(j) for j in job_ids))
        if not ids:
            return {}
        done = self._run(
            [
                "squeue",
                "--noheader",
                "--states=all",
                f"--jobs={','.join(ids)}",
                f"--format={SQUEUE_FORMAT}",
            ]
        )
        if done.returncode != 0:
            if "invalid job id" in done.stderr.lower():
                # squeue fails this way when none of the jobs is known any more.
                return {jid: JobStatus.ended(jid) for jid in ids}
            raise self._failed(
                "squeue", done, f"could not read the state of job(s) {', '.join(ids)}"
            )
        return parse_squeue(done.stdout, ids)

    def named_jobs(self, name_pattern: re.Pattern[str]) -> dict[str, tuple[str, JobStatus]]:
        """The user's jobs whose name matches ``name_pattern``, recently ended ones included:
        one ``squeue --me --states=all`` call (``{job id: (name, status)}``)."""
        done = self._run(
            ["squeue", "--me", "--noheader", "--states=all", "--all", f"--format={NAMED_FORMAT}"]
        )
        if done.returncode != 0:
            raise self._failed("squeue", done, "could not list your jobs")
        return parse_named_jobs(done.stdout, name_pattern)

    def start_estimate(self, job_id: str) -> str | None:
        """SLURM's estimated start time of a pending job (``squeue --start``), or ``None``."""
        jid = check_job_id(job_id)
        done = self._run(["squeue", "--start", "--noheader", f"--jobs={jid}", "--format=%S"])
        if done.returncode != 0:
            if "invalid job id" in done.stderr.lower():
                return None
            raise self._failed("squeue", done, f"could not read the start estimate of job {jid}")
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        return _none_if_na(lines[0]) if lines else None

    def cancel(self, job_id: str) -> None:
        """``scancel JOBID``; a job that already ended (or is unknown) is not an error."""
        self.cancel_jobs([job_id])

    def cancel_jobs(self, job_ids: Sequence[str]) -> None:
        """One ``scancel ID ID ...``; jobs that already ended (or are unknown) are no error."""
        ids = list(dict.fromkeys(check_job_id(j) for j in job_ids))
        if not ids:
            return
        done = self._run(["scancel", *ids])
        if done.returncode == 0:
            return
        problems = [
            line
            for line in done.stderr.splitlines()
            if line.strip()
            and "invalid job id specified" not in line.lower()
            and "already completing or completed" not in line.lower()
        ]
        if problems:
            raise self._failed(
                "scancel",
                done,
                f"could not cancel job {', '.join(ids)}",
                hint=f"check with 'squeue -j {','.join(ids)}'; only your own jobs can be cancelled",
            )

    def cancel_named(self, job_name: str) -> None:
        """``scancel --me --name NAME``: the user's jobs with that (unique) name, if any."""
        check_value("--job-name", job_name)
        done = self._run(["scancel", "--me", f"--name={job_name}"])
        if done.returncode != 0:
            raise self._failed(
                "scancel",
                done,
                f"could not cancel the job named {job_name}",
                hint=f"check with 'squeue --me --name={job_name}' and scancel it by hand",
            )

    def partitions(self) -> list[str]:
        """The partitions this user can see (``sinfo --format=%R``), in sinfo's order."""
        done = self._run(["sinfo", "--noheader", "--format=%R"])
        if done.returncode != 0:
            raise self._failed("sinfo", done, "could not list the partitions")
        return list(
            dict.fromkeys(line.strip() for line in done.stdout.splitlines() if line.strip())
        )
