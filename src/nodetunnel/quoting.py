"""The one quoting path for anything a remote shell will parse.

OpenSSH sends the remote command as a single string that the login shell on
the far side splits again. Every argv that crosses SSH goes through
:func:`remote_command`, and nothing else builds remote command strings.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Sequence

from .errors import UsageError


def control_char(value: str, *, allow: str = "") -> str | None:
    """The first control, surrogate or line/paragraph-separator character in ``value``.

    The one check for values that must stay on one line of a script or command
    (``allow`` lists characters that are fine, e.g. newline and tab in shell code).
    """
    for ch in value:
        if ch not in allow and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return ch
    return None


def remote_command(argv: Sequence[str]) -> str:
    """Quote ``argv`` for a POSIX shell so each element arrives as one literal word."""
    if not argv:
        raise ValueError("empty remote command")
    for word in argv:
        if "\x00" in word:
            raise UsageError(
                f"value {word!r} contains a NUL byte, which no shell command can carry",
                hint="remove the NUL character from the option",
            )
    return shlex.join(argv)
