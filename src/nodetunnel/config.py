"""Per-cluster profiles: the config file, built-in presets, and where every value came from.

A profile says how to reach a cluster (``jump`` hosts, ``user``, an extra
``ssh_config``), which resources to ask SLURM for (``partition``, ``gres``,
``time``, ...) and how to prepare the app's environment (``conda_env``,
``modules``, ``venv``, ``setup``, ``workdir``). Profiles live in a TOML file::

    default_cluster = "mylab"

    [clusters.mylab]
    jump = ["ssh.example.ac.uk", "hpc-gw1"]   # or: login = "...", gateway = "..."
    partition = "gpu"
    gres = "gpu:1"

    [clusters.mylab.jupyter]                  # only for 'nodetunnel jupyter'
    time = "8:00:00"

The file is ``$NODETUNNEL_CONFIG`` if set, else ``config.toml`` in the
platform's user config directory (``~/.config/nodetunnel`` on Linux), unless a
path is passed explicitly.

:func:`resolve` layers, lowest first: built-in defaults (nothing set), a
built-in preset (``swc``; ``sandbox`` once ``nodetunnel sandbox up`` has
written its ``profile.toml``), the config file's ``[clusters.NAME]`` table,
its ``[clusters.NAME.APP]`` table, and the command line. Each layer overrides
the ones below key by key, and the resulting :class:`Settings` records the
source of every field: ``"default"``, ``"preset swc"``, ``"config file PATH"``,
``"config file PATH (jupyter section)"`` or ``"command line"``.

Everything here is pure or reads files only; errors are
:class:`~nodetunnel.errors.UsageError` naming the file, line, key and value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scheduler.base import JobRequest
from .apps import APPS as _APP_RECIPES
from .errors import UsageError
from .quoting import control_char
from .sandbox.topology import DEFAULT_DIR, Paths

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "APPS",
    "CONFIG_ENV",
    "FIELDS",
    "FIELD_NAMES",
    "PRESETS",
    "SANDBOX_DIR_ENV",
    "SOURCE_CLI",
    "SOURCE_DEFAULT",
    "ClusterEntry",
    "Config",
    "Field",
    "Settings",
    "config_path",
    "default_config_path",
    "known_clusters",
    "load_config",
    "resolve",
    "sandbox_profile_path",
    "sandbox_profile_toml",
    "starter_config",
    "write_starter_config",
]

CONFIG_ENV = "NODETUNNEL_CONFIG"
SANDBOX_DIR_ENV = "NODETUNNEL_SANDBOX_DIR"
CONFIG_FILENAME = "config.toml"
SANDBOX_PROFILE_FILENAME = "profile.toml"

SOURCE_DEFAULT = "default"
SOURCE_CLI = "command line"

APPS: tuple[str, ...] = tuple(_APP_RECIPES)  # the app commands
"""Apps that may have their own ``[clusters.NAME.APP]`` table of defaults."""

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# ----------------------------------------------------------------------- fields
@dataclasses.dataclass(frozen=True)
class Field:
    """One profile key: its name, value kind, group and a one-line explanation."""

    name: str
    kind: str  # hosts | user | path | str | str_or_int | pos_int | str_list | shell | duration
    group: str  # connection | resources | environment | session
    help: str
    example: str  # a TOML right-hand side, for the starter file and hints


FIELDS: tuple[Field, ...] = (
    Field("jump", "hosts", "connection",
          "hosts to jump through, in order, to reach the compute nodes (like ssh -J)",
          '["ssh.example.ac.uk", "hpc-gw1"]'),
    Field("user", "user", "connection",
          "user name on the cluster (unset: your ~/.ssh/config or local user name decides)",
          '"jdoe"'),
    Field("ssh_config", "path", "connection",
          "extra ssh config file to Include after ~/.ssh/config (relative: to this file)",
          '"~/.ssh/config.d/mylab"'),
    Field("job_check_interval_s", "pos_int", "connection",
          "seconds between questions to SLURM about the job while the tunnel is up (default 60)",
          "60"),
    Field("partition", "str", "resources", "SLURM partition (sbatch --partition)", '"gpu"'),
    Field("gres", "str", "resources", "generic resources (sbatch --gres)", '"gpu:1"'),
    Field("gpus", "str_or_int", "resources",
          "GPUs for the job (sbatch --gpus), a number or TYPE:NUMBER", "1"),
    Field("mem", "str_or_int", "resources",
          "memory per node (sbatch --mem), e.g. \"16G\" or megabytes as a number", '"16G"'),
    Field("time", "str_or_int", "resources",
          "time limit (sbatch --time): minutes, \"H:MM:SS\" or \"D-HH:MM:SS\"", '"8:00:00"'),
    Field("cpus_per_task", "pos_int", "resources", "CPUs (sbatch --cpus-per-task)", "4"),
    Field("account", "str", "resources", "account to charge (sbatch --account)", '"mylab"'),
    Field("qos", "str", "resources", "quality of service (sbatch --qos)", '"normal"'),
    Field("constraint", "str", "resources", "node features (sbatch --constraint)", '"a100"'),
    Field("reservation", "str", "resources", "reservation (sbatch --reservation)", '"course"'),
    Field("sbatch_args", "str_list", "resources", "any other sbatch options, one per item",
          '["--exclude=gpu-01"]'),
    Field("conda_env", "str", "environment", "conda environment to activate (name or path)",
          '"jupyter"'),
    Field("modules", "str_list", "environment", "environment modules to load, in order",
          '["miniconda"]'),
    Field("venv", "str", "environment", "Python virtualenv to activate (directory on the cluster)",
          '"~/venvs/lab"'),
    Field("setup", "shell", "environment", "shell commands run before the app starts",
          '"export HF_HOME=/ceph/scratch/$USER/hf"'),
    Field("workdir", "str", "environment", "directory on the cluster the app starts in",
          '"/ceph/scratch/jdoe"'),
    Field("warn_before", "duration", "session",
          "warn this long before the job's time limit (\"0\" turns it off; unset: 10 minutes)",
          '"15m"'),
    Field("lease", "duration", "session",
          "cancel the job when no nodetunnel has kept the session for this long, e.g. after "
          "a lost laptop (unset: no lease)", '"30m"'),
)  # fmt: skip
_FIELDS_BY_NAME = {f.name: f for f in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
_SUGAR = ("login", "gateway")  # become ``jump = [login, gateway]``
_CLUSTER_KEYS = frozenset(FIELD_NAMES) | frozenset(_SUGAR)
#: The settings an app run takes (each is also a command-line option of the app commands).
APP_KEYS = frozenset(f.name for f in FIELDS if f.group != "connection")
_APP_KEYS = APP_KEYS
_TOP_KEYS = frozenset({"default_cluster", "clusters"})

_KIND_TEXT = {
    "hosts": "a list of host names",
    "user": "a user name (string)",
    "path": "a file path (string)",
    "str": "a string",
    "str_or_int": "a string or an integer",
    "pos_int": "a positive integer",
    "str_list": "a list of strings",
    "shell": "a string of shell commands",
    "duration": 'a duration like "30m", "90s" or "1h30m" (a bare number means minutes)',
}

DEFAULT_WARN_BEFORE_S = 600.0
MIN_LEASE_S = 10.0
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def duration_s(text: str) -> float:
    """Seconds in ``"1h30m"``, ``"90s"``, ``"2d"``, ``"45"`` (a bare number: minutes)."""
    t = text.strip().lower()
    if t.isdigit():
        return float(int(t) * 60)
    m = _DURATION.fullmatch(t)
    if not t or m is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 90s or 1h30m")
    d, h, mins, sec = (int(g) if g else 0 for g in m.groups())
    return float(((d * 24 + h) * 60 + mins) * 60 + sec)


PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "swc": MappingProxyType({"jump": ("ssh.swc.ucl.ac.uk", "hpc-gw2"), "partition": "gpu"}),
    }
)
"""Built-in presets, always available. ``sandbox`` joins them when its profile file exists."""

_SANDBOX_PRESET: Mapping[str, Any] = MappingProxyType(
    {"jump": ("login", "gateway"), "partition": "cpu"}
)


# ------------------------------------------------------------------------ paths
def default_config_path() -> Path:
    """``config.toml`` in the platform's user config directory (honours XDG_CONFIG_HOME)."""
    import platformdirs

    return platformdirs.user_config_path("nodetunnel", appauthor=False) / CONFIG_FILENAME


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``explicit``, else ``$NODETUNNEL_CONFIG``, else the default."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(CONFIG_ENV, "")
    if env:
        return Path(env).expanduser()
    return default_config_path()


def _config_path_is_explicit(explicit: str | os.PathLike[str] | None) -> bool:
    return (explicit is not None and str(explicit) != "") or bool(os.environ.get(CONFIG_ENV))


def sandbox_profile_path(sandbox_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``nodetunnel sandbox up`` writes the sandbox profile (``profile.toml``)."""
    if sandbox_dir is None or str(sandbox_dir) == "":
        sandbox_dir = os.environ.get(SANDBOX_DIR_ENV) or DEFAULT_DIR
    return Path(sandbox_dir) / SANDBOX_PROFILE_FILENAME


def sandbox_profile_toml(paths: Paths) -> str:
    """The sandbox's ``profile.toml``: the ``sandbox`` preset for the sandbox at ``paths``.

    ``nodetunnel sandbox up`` writes this to ``paths.root / "profile.toml"``;
    while that file exists, ``--cluster sandbox`` is a known cluster.
    """
    values: dict[str, Any] = {**_SANDBOX_PRESET, "ssh_config": str(paths.ssh_config)}
    lines = [
        "# Generated by nodetunnel sandbox up: the 'sandbox' cluster profile.",
        "# Changes are lost on the next 'sandbox up'; override keys in your own config",
        "# under [clusters.sandbox] instead (see: nodetunnel config init).",
    ]
    lines += [f"{key} = {_toml_value(values[key])}" for key in FIELD_NAMES if key in values]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_str(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch) == "Cc":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------- origins
@dataclasses.dataclass(frozen=True)
class _Origin:
    """Where a layer of values comes from, for provenance and for error messages."""

    source: str
    path: Path | None = None  # the file, for error messages
    text: str | None = None  # its contents, to find line numbers
    table: tuple[str, ...] = ()  # e.g. ("clusters", "mylab")
    base_dir: Path | None = None  # relative paths are relative to this

    def where(self, key: str) -> str:
        """``PATH:LINE: KEY in [TABLE]`` or ``--KEY on the command line``."""
        if self.path is None:
            if self.source == SOURCE_CLI:
                return f"--{key.replace('_', '-')} on the command line"
            return f"{key} in {self.source}"
        line = _locate(self.text or "", self.table, key)
        loc = f"{self.path}:{line}" if line else str(self.path)
        table = f"[{'.'.join(self.table)}]" if self.table else "the top level"
        return f"{loc}: {key} in {table}"

    def error(self, key: str, problem: str, hint: str) -> UsageError:
        return UsageError(f"{self.where(key)} {problem}", hint=hint)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    for typ, name in names.items():
        if type(value) is typ:
            return name
    return type(value).__name__


_HEADER = re.compile(r"^\s*\[\[?(?P<name>[^\]]*)\]\]?\s*(?:#.*)?$")
_KEY_TOKEN = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'|[A-Za-z0-9_-]+")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(tok.strip("\"'") for tok in _KEY_TOKEN.findall(text))


def _locate(text: str, table: tuple[str, ...], key: str) -> int | None:
    """Best-effort 1-based line of ``key`` in ``[table]`` (tomllib keeps no positions)."""
    current: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            current = _dotted(header["name"])
            if current[: len(table) + 1] == (*table, key):
                return number
            continue
        if current != table:
            continue
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        lhs = _dotted(line.split("=", 1)[0])
        if lhs[:1] == (key,):
            return number
    return None


# ------------------------------------------------------------------ validation
def _check_text(
    origin: _Origin,
    key: str,
    value: str,
    what: str,
    *,
    hint: str,
    word: bool = False,
    multiline: bool = False,
    option: bool = False,
) -> None:
    """Reject values that would be read as an option or break a command line.

    ``word``: no whitespace either. ``multiline``: newlines and tabs allowed
    (shell commands). ``option``: the value is meant to start with '-'.
    """
    if value == "":
        raise origin.error(key, f"is empty: {what} cannot be empty", hint)
    if value.startswith("-") and not (option or multiline):
        raise origin.error(
            key,
            f"has {what} {_short_repr(value)}, which starts with '-' and would be read as an "
            "option (for example by ssh)",
            hint,
        )
    ch = control_char(value, allow="\n\t" if multiline else "")
    if ch is not None:
        raise origin.error(
            key,
            f"has {what} {_short_repr(value)}, which contains the control character {ch!r}",
            hint,
        )
    for ch in value:
        if word and (ch.isspace() or not ch.isprintable()):
            raise origin.error(
                key, f"has {what} {_short_repr(value)}, which contains whitespace", hint
            )


def _expect(origin: _Origin, key: str, raw: Any, kind: str) -> UsageError:
    field = _FIELDS_BY_NAME.get(key)
    example = field.example if field else '"..."'
    return origin.error(
        key,
        f"must be {_KIND_TEXT[kind]}, not {_short_repr(raw)} ({_type_name(raw)})",
        hint=f"write it like: {key} = {example}",
    )


def _host_list(origin: _Origin, key: str, raw: Any, *, single: bool = False) -> tuple[str, ...]:
    """Jump hosts: a list, or one string (``"login,gateway"`` as for ssh -J unless ``single``)."""
    hint = (
        'use plain host names in order, e.g. jump = ["login.example.org", "gateway"]; '
        "put ssh options in ~/.ssh/config"
    )
    if isinstance(raw, str):
        items: list[Any] = [raw] if single else [part.strip(" ") for part in raw.split(",")]
    elif single:
        raise origin.error(
            key,
            f"must be a host name (a string), not {_short_repr(raw)} ({_type_name(raw)})",
            hint=f'write it like: {key} = "{key}.example.org"',
        )
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise _expect(origin, key, raw, "hosts")
    if not items:
        raise origin.error(key, "is an empty list of hosts", hint)
    hosts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _expect(origin, key, raw, "hosts")
        _check_text(origin, key, item, "host", hint=hint, word=True)
        if "," in item:
            raise origin.error(
                key, f"has host {_short_repr(item)}, which contains ',' (a host separator)", hint
            )
        hosts.append(item)
    return tuple(hosts)


def _coerce(origin: _Origin, key: str, raw: Any) -> Any:
    """Validate one value of field ``key`` and return it in its Settings form."""
    kind = _FIELDS_BY_NAME[key].kind
    if kind == "hosts":
        return _host_list(origin, key, raw)
    if kind == "pos_int":
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise _expect(origin, key, raw, kind)
        return raw
    if kind == "str_or_int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            if raw < 0:
                raise _expect(origin, key, raw, kind)
            return str(raw)
        if not isinstance(raw, str):
            raise _expect(origin, key, raw, kind)
        example = _FIELDS_BY_NAME[key].example
        _check_text(origin, key, raw, "value", hint=f"write it like: {key} = {example}", word=True)
        return raw
    if kind == "str_list":
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, (list, tuple)) or not all(isinstance(v, str) for v in raw):
            raise _expect(origin, key, raw, kind)
        hint = f"write it like: {key} = {_FIELDS_BY_NAME[key].example}"
        for item in raw:
            # sbatch options start with '-' on purpose; module names must not.
            if key == "sbatch_args":
                if not item.startswith("-"):
                    raise origin.error(
                        key,
                        f"has {_short_repr(item)}, which is not an sbatch option (they start "
                        "with '-', e.g. '--exclude=gpu-01')",
                        hint,
                    )
                _check_text(origin, key, item, "option", hint=hint, option=True)
            else:
                _check_text(origin, key, item, "item", hint=hint, word=True)
        return tuple(raw)
    if kind == "duration":
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            raw = str(raw)
        if not isinstance(raw, str):
            raise _expect(origin, key, raw, kind)
        hint = f"write it like: {key} = {_FIELDS_BY_NAME[key].example}"
        try:
            seconds = duration_s(raw)
        except ValueError:
            raise origin.error(
                key, f"is {_short_repr(raw)}, not a duration like 30m, 90s or 1h30m", hint
            ) from None
        if key == "lease" and seconds < MIN_LEASE_S:
            raise origin.error(
                key,
                f"is {_short_repr(raw)}: a lease under {MIN_LEASE_S:.0f} s would end the job "
                "during a short network drop",
                'give a few minutes at least, e.g. lease = "30m"',
            )
        return raw.strip()
    if not isinstance(raw, str):
        raise _expect(origin, key, raw, kind)
    hint = f"write it like: {key} = {_FIELDS_BY_NAME[key].example}"
    if kind == "user":
        user_hint = 'use the plain user name, e.g. user = "jdoe"'
        _check_text(origin, key, raw, "user name", hint=user_hint, word=True)
        if "@" in raw:
            raise origin.error(
                key, f"has user name {_short_repr(raw)}, which contains '@'", user_hint
            )
        return raw
    if kind == "shell":
        _check_text(origin, key, raw, "command", hint=hint, multiline=True)
        return raw
    if kind == "path":
        _check_text(origin, key, raw, "path", hint=hint)
        path = Path(raw).expanduser()
        if not path.is_absolute() and origin.base_dir is not None:
            path = origin.base_dir / path
        return path
    _check_text(origin, key, raw, "value", hint=hint)
    return raw


def _unknown_key(origin: _Origin, key: str, valid: Sequence[str]) -> UsageError:
    close = difflib.get_close_matches(key, valid, n=1)
    guess = f" (did you mean '{close[0]}'?)" if close else ""
    table = f"[{'.'.join(origin.table)}]" if origin.table else "the top level"
    line = _locate(origin.text or "", origin.table, key)
    loc = f"{origin.path}:{line}" if line else str(origin.path)
    return UsageError(
        f"{loc}: unknown key {_short_repr(key)} in {table}{guess}",
        hint="valid keys there: " + ", ".join(sorted(valid)),
    )


def _profile_table(origin: _Origin, table: Mapping[str, Any], *, app: bool) -> dict[str, Any]:
    """Validate a ``[clusters.NAME]`` (or ``.APP``) table; returns field -> value."""
    valid = sorted(_APP_KEYS) if app else sorted(_CLUSTER_KEYS | set(APPS))
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if not app and key in APPS:
            continue  # the caller handles app sub-tables
        if key not in valid:
            raise _unknown_key(origin, key, valid)
        if key in _SUGAR:
            continue
        values[key] = _coerce(origin, key, raw)
    sugar = [key for key in _SUGAR if key in table]
    if sugar:
        if "jump" in table:
            raise origin.error(
                sugar[0],
                "is given together with 'jump'",
                hint=f"use either jump = [...] or {' and '.join(sugar)}, not both",
            )
        hosts: list[str] = []
        for key in sugar:
            hosts += _host_list(origin, key, table[key], single=True)
        values["jump"] = tuple(hosts)
    return values


# ------------------------------------------------------------------ the file
@dataclasses.dataclass(frozen=True)
class ClusterEntry:
    """One ``[clusters.NAME]`` table of the config file, validated."""

    values: Mapping[str, Any]
    apps: Mapping[str, Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class Config:
    """The config file, validated: its path, whether it exists, default cluster and clusters."""

    path: Path
    exists: bool
    default_cluster: str | None = None
    clusters: Mapping[str, ClusterEntry] = dataclasses.field(default_factory=dict)
    text: str = ""

    @property
    def source(self) -> str:
        return f"config file {self.path}"


def _read_toml(
    path: Path, what: str, hint: str, syntax_hint: str | None = None
) -> tuple[str, dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except IsADirectoryError as exc:
        raise UsageError(f"{what} {path} is a directory, not a file", hint=hint) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}", hint=hint) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start})", hint=hint) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
        lineno = getattr(exc, "lineno", None) or (int(m[1]) if m else None)
        if m:
            msg = msg[: m.start()]
        loc = f"{path}:{lineno}" if lineno else str(path)
        raise UsageError(
            f"{loc}: TOML syntax error in {what}: {msg}",
            hint=syntax_hint or hint,
        ) from exc
    return text, data


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file (``path``, ``$NODETUNNEL_CONFIG`` or the default).

    A missing default file is an empty config; a missing file that was named
    explicitly (argument or environment) is an error.
    """
    file = config_path(path)
    try:
        exists = file.exists() or file.is_symlink()
    except OSError as exc:  # e.g. a directory on the way that we may not enter
        raise UsageError(
            f"config file {file} cannot be read: {exc.strerror}",
            hint=f"check the permissions of {file} and of the directories above it",
        ) from exc
    if not exists:
        if _config_path_is_explicit(path):
            via = "" if path is not None and str(path) != "" else f" (from ${CONFIG_ENV})"
            raise UsageError(
                f"config file {file}{via} does not exist",
                hint=f"create it with 'nodetunnel config init --path {file}', or point "
                f"{'--config' if via == '' else CONFIG_ENV} at an existing file",
            )
        return Config(path=file, exists=False)
    text, data = _read_toml(
        file,
        "config file",
        f"fix or remove {file}",
        "fix the TOML syntax on that line (strings need quotes, lists use [...])",
    )
    top = _Origin(f"config file {file}", file, text, (), file.parent)
    for key in data:
        if key not in _TOP_KEYS:
            raise _unknown_key(top, key, sorted(_TOP_KEYS))
    default = data.get("default_cluster")
    if default is not None and not (isinstance(default, str) and _CLUSTER_NAME.match(default)):
        raise top.error(
            "default_cluster",
            f"must be a cluster name (a string), not {_short_repr(default)}",
            hint='write it like: default_cluster = "mylab"',
        )
    clusters_raw = data.get("clusters", {})
    if not isinstance(clusters_raw, dict):
        raise top.error(
            "clusters",
            f"must be a table of clusters, not {_type_name(clusters_raw)}",
            hint="write each cluster as its own table: [clusters.mylab]",
        )
    clusters: dict[str, ClusterEntry] = {}
    for name, table in clusters_raw.items():
        origin = dataclasses.replace(top, table=("clusters", name))
        if not _CLUSTER_NAME.match(name):
            raise UsageError(
                f"{file}: cluster name {_short_repr(name)} is not allowed: use letters, "
                "digits, '.', '_' and '-', starting with a letter or digit",
                hint=f"rename [clusters.{_toml_str(name)}]",
            )
        if not isinstance(table, dict):
            raise top.error(
                name,
                f"in [clusters] must be a table, not {_type_name(table)}",
                hint=f"write it as a table: [clusters.{name}] followed by its keys",
            )
        values = _profile_table(origin, table, app=False)
        apps: dict[str, Mapping[str, Any]] = {}
        for app in APPS:
            if app not in table:
                continue
            if not isinstance(table[app], dict):
                raise origin.error(
                    app,
                    f"must be a table, not {_type_name(table[app])}",
                    hint=f"write it as a table: [clusters.{name}.{app}]",
                )
            app_origin = dataclasses.replace(top, table=("clusters", name, app))
            apps[app] = MappingProxyType(_profile_table(app_origin, table[app], app=True))
        clusters[name] = ClusterEntry(MappingProxyType(values), MappingProxyType(apps))
    return Config(file, True, default, MappingProxyType(clusters), text)


def _sandbox_available(sandbox_dir: str | os.PathLike[str] | None) -> bool:
    try:
        return sandbox_profile_path(sandbox_dir).is_file()
    except OSError:  # there, but we may not look: reading it reports why
        return True


def _read_sandbox_profile(sandbox_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    path = sandbox_profile_path(sandbox_dir)
    text, data = _read_toml(
        path, "sandbox profile", "run 'nodetunnel sandbox up' again to rewrite it"
    )
    origin = _Origin("preset sandbox", path, text, (), path.parent)
    valid = sorted(_CLUSTER_KEYS)
    for key in data:
        if key not in valid:
            raise _unknown_key(origin, key, valid)
    return _profile_table(origin, data, app=False)


def _preset_names(sandbox_dir: str | os.PathLike[str] | None) -> list[str]:
    """Built-in presets, plus ``sandbox`` while the sandbox's profile file exists."""
    return [*PRESETS, *(["sandbox"] if _sandbox_available(sandbox_dir) else [])]


def _preset_values(name: str, sandbox_dir: str | os.PathLike[str] | None) -> Mapping[str, Any]:
    if name == "sandbox":
        return _read_sandbox_profile(sandbox_dir)
    return PRESETS[name]


def known_clusters(
    config_path: str | os.PathLike[str] | None = None,
    *,
    sandbox_dir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Every cluster name that can be selected -> where it is defined, sorted by name."""
    return _known(load_config(config_path), _preset_names(sandbox_dir))


def _known(config: Config, presets: Sequence[str]) -> dict[str, str]:
    names = sorted(set(presets) | set(config.clusters))
    out = {}
    for name in names:
        where = []
        if name in presets:
            where.append("preset")
        if name in config.clusters:
            where.append("config file")
        out[name] = " + ".join(where)
    return out


# -------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings for one cluster, with the source of every field.

    ``sources[field]`` is ``"default"``, ``"preset NAME"``, ``"config file PATH"``,
    ``"config file PATH (APP section)"`` or ``"command line"``. Unset values are
    ``None`` (or ``()`` for lists): SLURM's, ssh's or the cluster's own default applies.
    """

    cluster: str | None = None
    jump: tuple[str, ...] = ()
    user: str | None = None
    ssh_config: Path | None = None
    job_check_interval_s: int = 60
    partition: str | None = None
    gres: str | None = None
    gpus: str | None = None
    mem: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    reservation: str | None = None
    sbatch_args: tuple[str, ...] = ()
    conda_env: str | None = None
    modules: tuple[str, ...] = ()
    venv: str | None = None
    setup: str | None = None
    workdir: str | None = None
    warn_before: str | None = None
    lease: str | None = None
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)
    config_path: Path | None = dataclasses.field(default=None, compare=False)
    config_exists: bool = dataclasses.field(default=False, compare=False)
    app: str | None = dataclasses.field(default=None, compare=False)

    @staticmethod
    def field_names() -> tuple[str, ...]:
        """Fields with a value and a source, in display order: ``cluster`` then the profile."""
        return ("cluster", *FIELD_NAMES)

    def source(self, name: str) -> str:
        """Where the value of field ``name`` came from."""
        if name not in self.field_names():
            raise KeyError(name)
        return self.sources.get(name, SOURCE_DEFAULT)

    def items(self) -> Iterator[tuple[str, Any, str]]:
        """``(field, value, source)`` for every field, in display order."""
        for name in self.field_names():
            yield name, getattr(self, name), self.source(name)

    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{"field": {"value": ..., "source": ...}}``; lists as lists, paths as strings."""
        return {
            name: {"value": _jsonable(value), "source": source}
            for name, value, source in self.items()
        }

    @property
    def jump_spec(self) -> str | None:
        """The jump hosts as one ``ssh -J`` argument (``"login,gateway"``), or None."""
        return ",".join(self.jump) if self.jump else None

    @property
    def warn_before_s(self) -> float | None:
        """Seconds before the time limit to warn at; None: no warning."""
        seconds = duration_s(self.warn_before) if self.warn_before else DEFAULT_WARN_BEFORE_S
        return seconds or None

    @property
    def lease_s(self) -> float | None:
        return duration_s(self.lease) if self.lease else None

    def job_request(self, job_name: str) -> JobRequest:
        """The resource fields as the scheduler's :class:`JobRequest` (the one sbatch path)."""
        from .scheduler.base import JobRequest

        return JobRequest(
            partition=self.partition, gres=self.gres, gpus=self.gpus, mem=self.mem,
            time=self.time, cpus_per_task=self.cpus_per_task, account=self.account,
            qos=self.qos, constraint=self.constraint, reservation=self.reservation,
            job_name=job_name, extra_args=tuple(self.sbatch_args),
        )  # fmt: skip


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def resolve(
    cluster: str | None,
    cli_overrides: Mapping[str, Any] = _EMPTY,
    config_path: str | os.PathLike[str] | None = None,
    *,
    app: str | None = None,
    sandbox_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """The effective settings for ``cluster``, each field with its source.

    ``cluster`` None means the config file's ``default_cluster``, if any, else
    no cluster (only defaults and command-line values). ``cli_overrides`` maps
    field names to command-line values; ``None`` (and an empty list for list
    fields) means "not given", as click reports an option that was not used.
    ``app`` (one of :data:`APPS`) also applies ``[clusters.NAME.APP]``.
    ``sandbox_dir`` is where to look for the sandbox's ``profile.toml``
    (default: ``$NODETUNNEL_SANDBOX_DIR`` or /var/lib/nodetunnel-sandbox).

    Raises UsageError for a bad config file, an unknown cluster or a bad value.
    Raises ValueError for an unknown ``app`` or override key (a programming error).
    """
    if app is not None and app not in APPS:
        raise ValueError(f"unknown app {app!r}; known: {', '.join(APPS)}")
    unknown = sorted(set(cli_overrides) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {', '.join(FIELD_NAMES)}")
    config = load_config(config_path)
    presets = _preset_names(sandbox_dir)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    name: str | None
    if cluster is not None:
        name = cluster
        sources["cluster"] = SOURCE_CLI
    else:
        name = config.default_cluster
        if name is not None:
            sources["cluster"] = config.source

    if name is not None:
        if name not in presets and name not in config.clusters:
            raise _unknown_cluster(name, config, presets, sandbox_dir, via_default=cluster is None)
        if name in presets:
            for key, value in _preset_values(name, sandbox_dir).items():
                values[key] = value
                sources[key] = f"preset {name}"
        entry = config.clusters.get(name)
        if entry is not None:
            for key, value in entry.values.items():
                values[key] = value
                sources[key] = config.source
            if app is not None and app in entry.apps:
                for key, value in entry.apps[app].items():
                    values[key] = value
                    sources[key] = f"{config.source} ({app} section)"

    cli = _Origin(SOURCE_CLI, base_dir=Path.cwd())
    for key, raw in cli_overrides.items():
        if raw is None or (isinstance(raw, (list, tuple)) and not raw):
            continue  # not given
        values[key] = _coerce(cli, key, raw)
        sources[key] = SOURCE_CLI

    return Settings(
        cluster=name,
        **values,
        sources=MappingProxyType(sources),
        config_path=config.path,
        config_exists=config.exists,
        app=app,
    )


def _unknown_cluster(
    name: str,
    config: Config,
    presets: Sequence[str],
    sandbox_dir: str | os.PathLike[str] | None,
    *,
    via_default: bool,
) -> UsageError:
    if name == "sandbox":
        return UsageError(
            f"the 'sandbox' cluster is not available: no sandbox profile at "
            f"{sandbox_profile_path(sandbox_dir)}",
            hint="start the mini-cluster with 'nodetunnel sandbox up' (as root), then try again",
        )
    known = ", ".join(_known(config, presets)) or "none"
    close = difflib.get_close_matches(name, list(_known(config, presets)), n=1)
    guess = f" (did you mean '{close[0]}'?)" if close else ""
    where = f" (default_cluster in {config.path})" if via_default else ""
    return UsageError(
        f"unknown cluster {_short_repr(name)}{where}{guess}; known clusters: {known}",
        hint=f"pick a known cluster, or define [clusters.{name}] in {config.path} "
        "('nodetunnel config init' writes a commented starter file)",
    )


# ---------------------------------------------------------------- starter file
def starter_config() -> str:
    """A commented starter config: an SWC-like example cluster and every key explained."""
    groups = {
        "connection": "how to reach the cluster, through your own OpenSSH setup",
        "resources": "what to ask SLURM for; unset keys: the cluster's own defaults apply",
        "environment": "how to prepare the app's environment on the compute node",
        "session": "how nodetunnel looks after a running session",
    }
    active = {
        "jump": '["ssh.swc.ucl.ac.uk", "hpc-gw2"]',
        "partition": '"gpu"',
        "gres": '"gpu:1"',
        "mem": '"16G"',
        "time": '"8:00:00"',
        "cpus_per_task": "4",
    }
    lines = [
        "# nodetunnel configuration: per-cluster profiles.",
        "# Written by 'nodetunnel config init'; check the result with 'nodetunnel config'.",
        "#",
        "# A command uses the cluster given with --cluster NAME, else default_cluster.",
        "# A [clusters.NAME] table with the name of a built-in preset ('swc'; 'sandbox'",
        "# after 'nodetunnel sandbox up') overrides that preset key by key, and",
        "# command-line options override everything. Lines starting with '#' are",
        "# comments: remove the '#' to use a key.",
        "",
        "# The cluster to use when no --cluster is given.",
        'default_cluster = "mylab"',
        "",
        "# An SWC-like example: rename it and change the hosts and resources to your site's.",
        "[clusters.mylab]",
    ]
    for group, title in groups.items():
        lines += ["", f"# --- {group}: {title}"]
        for field in FIELDS:
            if field.group != group:
                continue
            lines += ["", f"# {field.name}: {field.help}."]
            if field.name == "jump":
                lines += [
                    '# Instead of jump you may write  login = "..."  and/or  gateway = "..."',
                    "# (login first). Unset: ssh connects to the nodes directly.",
                ]
            value = active.get(field.name)
            lines.append(
                f"{field.name} = {value}" if value else f"# {field.name} = {field.example}"
            )
    lines += [
        "",
        "# Defaults for one app only, here 'nodetunnel jupyter': resource and environment",
        "# keys, which override the cluster's keys above for that app.",
        "# [clusters.mylab.jupyter]",
        '# time = "4:00:00"',
        '# conda_env = "jupyter"',
        "",
        "# A second cluster, reached through one login host (set up in ~/.ssh/config):",
        "# [clusters.other]",
        '# login = "login.other.example.org"',
        '# user = "jdoe"',
        '# partition = "cpu"',
        "",
    ]
    return "\n".join(lines)


def write_starter_config(
    path: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Write :func:`starter_config` to ``path`` (default: :func:`config_path`) with mode 0600.

    A directory that has to be created gets mode 0700. An existing file is
    only replaced with ``force``. Returns the path written.
    """
    file = config_path(path)
    if file.is_dir():
        raise UsageError(
            f"cannot write the config to {file}: it is a directory",
            hint="give a file path, e.g. --path " + str(file / CONFIG_FILENAME),
        )
    if (file.exists() or file.is_symlink()) and not force:
        raise UsageError(
            f"config file {file} already exists; not overwriting it",
            hint="edit it, or add --force to replace it with a fresh starter file",
        )
    directory = file.parent
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
            directory.chmod(0o700)  # mkdir's mode is reduced by the umask
        data = starter_config().encode()
        if force:
            tmp = directory / f".{file.name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.chmod(tmp, 0o600)
                os.replace(tmp, file)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        else:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(file, 0o600)
    except FileExistsError as exc:
        raise UsageError(
            f"config file {file} already exists; not overwriting it",
            hint="edit it, or add --force to replace it with a fresh starter file",
        ) from exc
    except OSError as exc:
        raise UsageError(
            f"cannot write the config file {file}: {exc.strerror}",
            hint="choose a path in a directory you can write to, e.g. --path ~/nodetunnel.toml",
        ) from exc
    return file
