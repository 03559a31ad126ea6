"""What a setting is: one row of the field table that profiles, the CLI and jobs share.

A :class:`Field` names a setting once; from it come the profile key and its
validation (:mod:`nodetunnel.config`), the command-line option
(:mod:`nodetunnel.cli`) and, for resources, the job request field
(:class:`nodetunnel.scheduler.base.JobRequest`, whose fields carry their
:class:`Field` as metadata). Pure data: nothing here imports another module of
nodetunnel.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: Value kinds a field may have (see ``nodetunnel.config`` for how each is checked).
KINDS = frozenset(
    {
        "hosts",
        "user",
        "path",
        "str",
        "str_or_int",
        "pos_int",
        "str_list",
        "shell",
        "duration",
        "bool",
    }
)
GROUPS = ("connection", "resources", "environment", "session")


@dataclasses.dataclass(frozen=True)
class Field:
    """One setting: its key, value kind, group, explanation and command-line option.

    ``flags`` are the option's names (``("-p", "--partition")``); empty for a
    profile-only key. ``flag_help`` is the option's help text (default: ``help``).
    A ``str_list`` field's option may be repeated; ``flag_dest`` is the
    parameter name click passes when it differs from ``name``.
    """

    name: str
    kind: str
    group: str
    help: str
    example: str  # a TOML right-hand side, for the starter file and hints
    flags: tuple[str, ...] = ()
    flag_help: str | None = None
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.group not in GROUPS:
            raise ValueError(f"field {self.name}: bad kind {self.kind!r} or group {self.group!r}")

    @property
    def option_help(self) -> str:
        return self.flag_help or (self.help[0].upper() + self.help[1:] + ".")


def resource(
    kind: str,
    help: str,
    example: str,
    *,
    flags: tuple[str, ...] = (),
    flag_help: str | None = None,
    metavar: str | None = None,
    key: str | None = None,
    default: Any = None,
) -> Any:
    """A job-request dataclass field that is also a resource setting (profile key, option).

    ``key`` is the profile key when it differs from the dataclass field's name.
    """
    meta = {"field": (key, kind, help, example, flags, flag_help, metavar)}
    return dataclasses.field(default=default, metadata=meta)


def resource_fields(cls: type) -> list[tuple[str, Field]]:
    """``(dataclass attribute, Field)`` for each resource field of ``cls``, in order."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("field")
        if spec is None:
            continue
        key, kind, help, example, flags, flag_help, metavar = spec
        field = Field(key or f.name, kind, "resources", help, example, flags, flag_help, metavar)
        out.append((f.name, field))
    return out
