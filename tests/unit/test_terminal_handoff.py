"""An ssh that may prompt gets the terminal to itself; its helpers then stay out of reach."""

from __future__ import annotations

import sys
import textwrap

import pexpect

from nodetunnel.transport.terminal import has_terminal, run_on_terminal

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from nodetunnel.transport.terminal import has_terminal, run_on_terminal
    # Reads its answer from the terminal like ssh; leaves a helper behind in its group.
    child = ("printf 'code: ' >/dev/tty; read x </dev/tty; "
             "sleep 30 </dev/null >/dev/null 2>&1 & echo $! > " + sys.argv[1] + "; "
             "echo got=$x pgid=$(ps -o pgid= $$)")
    print("terminal", has_terminal(), flush=True)
    try:
        done = run_on_terminal(["sh", "-c", child], timeout_s=20)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise SystemExit(130)
    print("out", done.stdout.strip(), "ours", os.getpgrp(), "rc", done.returncode, flush=True)
    print("front", os.tcgetpgrp(0) == os.getpgrp(), flush=True)
    """
)


def test_the_prompt_is_answered_and_the_terminal_comes_back(tmp_path) -> None:
    pid_file = tmp_path / "helper.pid"
    child = pexpect.spawn(sys.executable, ["-c", SCRIPT, str(pid_file)], encoding="utf-8",
                          timeout=20)  # fmt: skip
    try:
        child.expect("terminal True")
        child.expect("code: ")
        child.sendline("abc")
        child.expect(r"out got=abc pgid=\s*(\d+) ours (\d+) rc 0")
        helper_group, ours = child.match.group(1), child.match.group(2)
        assert helper_group != ours  # the helper is out of the terminal's Ctrl-C
        child.expect("front True")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        if pid_file.exists():
            import os
            import signal

            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_ctrl_c_at_the_prompt_interrupts_nodetunnel(tmp_path) -> None:
    child = pexpect.spawn(sys.executable, ["-c", SCRIPT, str(tmp_path / "p")], encoding="utf-8",
                          timeout=20)  # fmt: skip
    try:
        child.expect("terminal True")
        child.expect("code: ")
        child.sendintr()
        child.expect("interrupted")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130


def test_without_a_terminal_it_just_runs() -> None:
    if has_terminal():  # run from a terminal: nothing to show here
        return
    done = run_on_terminal(["sh", "-c", "echo hi"], timeout_s=10)
    assert (done.returncode, done.stdout) == (0, "hi\n")
