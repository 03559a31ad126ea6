"""SLURM job scripts: quoted ``#SBATCH`` lines, checked values and options (pure functions).

* The script is rendered by :func:`render_header` and :func:`job_script` and
  checked against golden files. Every ``#SBATCH`` value is quoted by
  :func:`sbatch_quote`, values with control characters are refused (a newline
  would end the ``#SBATCH`` line and start a new directive or a command), and a
  ``:`` line ends the directives, so the body cannot add any.
* The directives come from :class:`~nodetunnel.scheduler.base.JobRequest`'s
  resource fields: a field ``cpus_per_task`` is ``--cpus-per-task``, unless
  :data:`OPTION_NAMES` says otherwise. A new resource field needs no edit here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from ...errors import UsageError
from ...fields import resource_fields
from ...quoting import control_char
from ..base import JobRequest

SHEBANG = "#!/bin/sh"

#: Ends the ``#SBATCH`` block: sbatch stops reading directives at the first
#: line that is not a comment, so nothing in the body can add one.
END_OF_DIRECTIVES = ": end of the SBATCH directives"

#: JobRequest fields whose sbatch option is not ``--`` + the name with hyphens.
OPTION_NAMES: dict[str, str] = {"workdir": "--chdir"}
#: Fields written before the resources, and after them.
_FIRST = ("job_name",)
_LAST = ("workdir", "output")
#: The order of the resource directives in a script (then any new field, in class order).
_ORDER = (
    "partition", "account", "qos", "reservation", "constraint", "time", "cpus_per_task", "mem",
    "gres", "gpus",
)  # fmt: skip


def _option(field: str) -> str:
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def _directive_fields() -> tuple[tuple[str, str], ...]:
    resources = [name for name, f in resource_fields(JobRequest) if f.kind != "str_list"]
    ordered = [n for n in _ORDER if n in resources] + [n for n in resources if n not in _ORDER]
    return tuple((name, _option(name)) for name in (*_FIRST, *ordered, *_LAST))


#: (JobRequest field, sbatch option), in the order they are written.
DIRECTIVES: tuple[tuple[str, str], ...] = _directive_fields()

#: Written into every job script, after the fields and before the extra arguments.
NO_REQUEUE = "--no-requeue"

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
