"""The CLI's output when nobody reads it any more: a closed terminal or reading end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


# The JSON's reader leaves (``nodetunnel jupyter --json | head -1``): the progress lines
# on the terminal (here a file) go on.
CHILD_READER_LEAVES = """
import sys
from nodetunnel.cli import _exit
from nodetunnel.cli.output import print_json, say
sys.stdin.readline()
say("before")
print_json({"x": "y" * 100000})
say("after the reader left")
_exit(5)
"""


def test_a_reader_that_leaves_silences_only_its_own_stream(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    err = tmp_path / "stderr"
    with open(err, "wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_READER_LEAVES],
            stdin=subprocess.PIPE, stdout=write_end, stderr=err_file,
        )  # fmt: skip
    os.close(write_end)
    os.close(read_end)
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 5
    assert err.read_text().split("\n")[:2] == ["before", "after the reader left"]


def test_no_stdout_at_all_is_no_error() -> None:
    # Started with stdout closed (``>&-``): Python has no sys.stdout.
    code = ("import os, sys; os.close(1); sys.stdout = None; "
            "from nodetunnel.cli import _exit; from nodetunnel.cli.output import print_json, "
            "say, terminal_gone; print_json({'a': 1}); terminal_gone(); say('still here'); "
            "_exit(4)")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert res.returncode == 4, res.stderr
    assert "Traceback" not in res.stderr
