"""What happens to a session, as data: the events a session reports while it starts and runs.

A :class:`~nodetunnel.session.Session` calls its ``on_event`` with each
:class:`Event`; the CLI prints them as JSON lines (``--json``) and turns some
into notifications (:mod:`nodetunnel.notify`), and a dashboard can show them.
Every event has a ``kind`` and the session and job it belongs to; its other
fields depend on the kind (``Event.to_json`` is the documented schema):

=================== =========================================================================
kind                fields
=================== =========================================================================
``submitted``       ``elapsed_s`` (always 0)
``pending``         ``state``, ``reason``, ``estimated_start``, ``position``,
                    ``pending_in_partition``, ``partition``, ``elapsed_s`` (since the submit)
``running``         ``node``, ``elapsed_s``
``ready``           ``url`` (without its token), ``local_port``, ``node``, ``elapsed_s``
``walltime_warning`` ``time_left_s``, ``message``
``ended``           ``state`` (the scheduler's, or ``null``), ``expected``, ``message``
=================== =========================================================================

A value that is not known is ``null`` (``estimated_start`` while SLURM says
N/A; ``position`` where the scheduler cannot tell).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

SUBMITTED = "submitted"
PENDING = "pending"
RUNNING = "running"
READY = "ready"
WALLTIME_WARNING = "walltime_warning"
ENDED = "ended"
#: Every kind, in the order a session goes through them.
KINDS = (SUBMITTED, PENDING, RUNNING, READY, WALLTIME_WARNING, ENDED)
#: The kinds of a session's start-up: under ``--json`` these come before the result object.
STARTUP_KINDS = frozenset({SUBMITTED, PENDING, RUNNING, READY})


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing that happened to session ``session_id`` (job ``job_id``); see the module."""

    kind: str
    session_id: str
    job_id: str | None = None
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; known: {', '.join(KINDS)}")
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def to_json(self) -> dict[str, Any]:
        """``{"event": KIND, "session_id": ..., "job_id": ..., FIELDS...}``."""
        return {"event": self.kind, "session_id": self.session_id, "job_id": self.job_id,
                **self.data}  # fmt: skip

    def json_line(self) -> str:
        """The event as one line of JSON, ``event`` first (``--json`` prints one per event)."""
        return json.dumps(self.to_json())


def parse_json_output(text: str) -> tuple[list[dict[str, Any]], Any]:
    """Split what a ``--json`` start command printed into its events and its result.

    The events are one JSON object per line, each with an ``"event"`` key; the
    result is the last JSON value (it may span lines). Raises ``ValueError``
    when there is no result (yet).
    """
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            break
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)
    events = [v for v in values if isinstance(v, dict) and "event" in v]
    results = [v for v in values if not (isinstance(v, dict) and "event" in v)]
    if not results:
        raise ValueError("no result object in the output (only events so far)")
    return events, results[-1]
