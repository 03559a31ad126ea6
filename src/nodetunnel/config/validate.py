"""Checking profile values: where each came from (file, line, key) and what is wrong with it."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..quoting import control_char
from .fields import (
    _APP_KEYS_SORTED,
    _CLUSTER_KEYS,
    _FIELDS_BY_NAME,
    _KIND_TEXT,
    _SUGAR,
    APPS,
    MIN_LEASE_S,
    SOURCE_CLI,
    duration_s,
)


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
    if kind == "bool":
        if not isinstance(raw, bool):
            raise _expect(origin, key, raw, kind)
        return raw
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
    if key == "scheduler":
        from ..scheduler import SCHEDULERS

        _check_text(origin, key, raw, "scheduler", hint=hint, word=True)
        if raw not in SCHEDULERS:
            raise origin.error(
                key,
                f"is {_short_repr(raw)}, a scheduler nodetunnel does not have",
                f"use one of: {', '.join(sorted(SCHEDULERS))}",
            )
        return raw
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
    valid = _APP_KEYS_SORTED if app else sorted(_CLUSTER_KEYS | set(APPS))
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
