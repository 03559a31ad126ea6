"""A notification backend for tests: it records what was sent, in memory and in a file."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from . import Notification, Notifier


class RecordingNotifier(Notifier):
    """Records every notification in :attr:`sent` and, with ``path``, as JSON lines there.

    ``NODETUNNEL_NOTIFIER=record:PATH`` selects it, so a test can see what a
    nodetunnel process (or its detached keeper) notified. ``available=False``
    plays a machine without a notification service.
    """

    name: ClassVar[str] = "record"

    def __init__(self, path: Path | None = None, *, available: bool = True) -> None:
        self.path = path
        self.available = available
        self.sent: list[Notification] = []

    def send(self, note: Notification) -> bool:
        if not self.available:
            return False
        self.sent.append(note)
        if self.path is not None:
            line = json.dumps({"pid": os.getpid(), **dataclasses.asdict(note)}, sort_keys=True)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with os.fdopen(fd, "a") as f:
                    f.write(line + "\n")
            except OSError:
                return False
        return True


def read_records(path: Path) -> list[dict[str, Any]]:
    """What a :class:`RecordingNotifier` wrote to ``path`` (no file: nothing)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
