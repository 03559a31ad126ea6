"""Golden-file comparison for the unit tests.

``golden(name, text)`` compares ``text`` with ``tests/golden/<name>``. To (re)write
the golden files after an intended change, run::

    NODETUNNEL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit

then read ``git diff tests/golden`` before committing: the golden files are the
review surface for every rendered config.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("NODETUNNEL_UPDATE_GOLDEN") == "1"

Golden = Callable[[str, str], None]


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN_DIR / name
    if UPDATE:
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(
            f"golden file {path} does not exist; create it with NODETUNNEL_UPDATE_GOLDEN=1",
            pytrace=False,
        )
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="rendered",
            )
        )
        pytest.fail(
            f"rendered output differs from golden/{name} "
            f"(if intended: NODETUNNEL_UPDATE_GOLDEN=1 pytest tests/unit):\n{diff}",
            pytrace=False,
        )


@pytest.fixture
def golden() -> Golden:
    """Compare rendered text with a golden file (or write it, with NODETUNNEL_UPDATE_GOLDEN=1)."""
    return check_golden


@pytest.fixture
def golden_input() -> Callable[[str], str]:
    """Read a checked-in input file (e.g. Debian's /etc/pam.d/sshd) from tests/golden."""
    return lambda name: (GOLDEN_DIR / name).read_text()
