"""What a command does with a session's events: JSON lines under --json, notifications."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import click

from .output import echo, flush_stdout, progress, say


class JsonEvents:
    """Under ``--json``: each start-up event as one JSON line on stdout, until ``ready``
    (the result object follows it; later events are not printed)."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self, event: Any) -> None:
        from ..events import READY, STARTUP_KINDS

        if self.done or event.kind not in STARTUP_KINDS:
            return
        self.done = event.kind == READY
        echo(event.json_line())  # a reader that went away loses the lines only
        flush_stdout()


def _bell() -> None:
    with contextlib.suppress(OSError):
        click.echo("\a", err=True, nl=False)


def rings_bell(*, foreground: bool, as_json: bool) -> bool:
    """Whether notifications ring the terminal bell: in the ``foreground`` on a terminal,
    desktop notification service or not; never where a program reads ``--json``."""
    if not foreground or not sys.stderr.isatty():
        return False
    return not as_json or sys.stdout.isatty()


def follow_events(session: Any, *, as_json: bool, notify: bool, foreground: bool) -> None:
    """Give ``session`` an ``on_event`` handler: JSON lines (``as_json``) and notifications
    (``notify``; a terminal bell too in the ``foreground`` on a terminal, see
    :func:`rings_bell`). A notification that no service took is logged where nobody
    watches a terminal (the detached keeper's log), and with ``--debug``."""
    from .. import cli as root
    from ..notify import on_event, session_notifications

    handlers: list[Callable[[Any], None]] = []
    if as_json:
        handlers.append(JsonEvents())
    if notify:
        bell = _bell if rings_bell(foreground=foreground, as_json=as_json) else None
        log = progress if not foreground or root._debug else None
        handlers.append(session_notifications(bell=bell, log=log))

    def failed(exc: Exception) -> None:
        if root._debug:
            say(f"debug: event handler failed: {exc!r}")

    handler = on_event(handlers, on_error=failed)
    if handler is not None:
        session.on_event = handler
