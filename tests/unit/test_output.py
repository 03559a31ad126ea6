"""The CLI's output when nobody reads it any more: a closed terminal or reading end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nodetunnel.proc import wait_until

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


# A hang-up while the JSON is being written (to a reader that does not read): the write
# is interrupted and the command still ends with 130, its output going nowhere. (The
# handler touching the interrupted stream itself, a reentrant flush, showed only under
# load in tests/integration/test_terminal.py; this test does not provoke it.)
CHILD_HANG_UP_MID_WRITE = """
import signal, sys
from nodetunnel.cli import _exit, _terminate
from nodetunnel.cli.output import print_json
signal.signal(signal.SIGHUP, _terminate)
print("writing", file=sys.stderr, flush=True)
try:
    print_json({"x": "y" * 4_000_000})  # blocks: nobody reads the pipe
except KeyboardInterrupt:
    _exit(130)
_exit(0)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_a_hang_up_in_the_middle_of_a_write_still_interrupts(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", CHILD_HANG_UP_MID_WRITE], stdout=write_end,
                            stderr=subprocess.PIPE)  # fmt: skip
    os.close(write_end)
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == b"writing\n"
        # Until the pipe is full and the child is blocked in its write (64 KiB here).
        wait_until(lambda: _pipe_is_full(read_end), timeout_s=30, what="the child to block")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == 130, proc.stderr.read().decode()
    finally:
        os.close(read_end)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _pipe_is_full(fd: int) -> bool:
    import fcntl
    import termios

    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buf, sys.byteorder) >= 65536
