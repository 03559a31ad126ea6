"""What nodetunnel ran (its ``--debug`` output) and what slurmctld counted (``sdiag``)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterable

from .common import SCHEDULER_COMMANDS


@dataclasses.dataclass(frozen=True)
class Command:
    """One command from nodetunnel's ``--debug`` output (``debug: run: ...``/``spawn: ...``)."""

    at: float  # when the line arrived (monotonic), 0 if unknown
    kind: str  # "run" or "spawn"
    argv: tuple[str, ...]

    @property
    def remote(self) -> str | None:
        """The program an ``ssh ... -- 'PROGRAM ARGS'`` command runs on the cluster."""
        if not self.argv or os.path.basename(self.argv[0]) != "ssh" or "--" not in self.argv:
            return None
        after = self.argv[self.argv.index("--") + 1 :]
        if len(after) != 2:
            return None
        words = shlex.split(after[1])
        if "&&" in words and words[:1] == ["printf"]:  # nodetunnel's output marker comes first
            words = words[words.index("&&") + 1 :]
        return words[0] if words else None


_DEBUG_LINE = re.compile(r"^debug: (run|spawn): (.*)$")


def parse_commands(lines: Iterable[tuple[float, str]]) -> list[Command]:
    found = []
    for at, line in lines:
        m = _DEBUG_LINE.match(line.rstrip("\n"))
        if m:
            with contextlib.suppress(ValueError):
                found.append(Command(at, m[1], tuple(shlex.split(m[2]))))
    return found


def commands_in(text: str) -> list[Command]:
    """The commands in captured ``--debug`` output (when each ran is not known)."""
    return parse_commands((0.0, line) for line in text.splitlines())


def scheduler_counts(commands: Iterable[Command]) -> dict[str, int]:
    """How many times each of squeue, sbatch and scancel was run (and their total)."""
    counts = Counter(c.remote for c in commands if c.remote in SCHEDULER_COMMANDS)
    result = {name: counts.get(name, 0) for name in SCHEDULER_COMMANDS}
    result["total"] = sum(result.values())
    return result


def parse_sdiag_user_rpcs(text: str, user: str) -> int | None:
    """The RPC count of ``user`` in sdiag's "Remote Procedure Call statistics by user"."""
    _, found, rest = text.partition("statistics by user")
    if not found:
        return None
    for line in rest.splitlines():
        m = re.match(rf"^\s*{re.escape(user)}\s*\(\s*\d+\)\s*count:\s*(\d+)", line)
        if m:
            return int(m[1])
    return 0  # no RPC from this user since slurmctld started
