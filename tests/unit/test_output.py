"""The CLI's output when nobody reads it any more: a closed terminal or reading end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# The child writes lines after its reader is gone, then exits with its own code.
CHILD = """
import sys
from nodetunnel.cli import _exit
from nodetunnel.cli.output import print_json, say
sys.stdin.readline()  # the parent has closed the reading end by now
for i in range(200):
    say("a line for a terminal that is gone " + "x" * 200)
print_json({"still": "going"})
_exit(7)
"""


@pytest.mark.skipif(not hasattr(os, "pipe"), reason="needs pipes")
def test_lines_after_the_reader_is_gone_lose_only_themselves() -> None:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE, stdout=write_end, stderr=write_end,
    )  # fmt: skip
    os.close(write_end)
    os.close(read_end)  # as a closed terminal: every write fails from now on
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    # Not 120 (Python's exit code when its last flush fails), not a traceback: its own code.
    assert proc.wait(timeout=60) == 7
