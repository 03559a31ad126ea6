"""The terminal goes away or insists: a closed terminal (SIGHUP) and Ctrl-C during the clean-up.

Either way the job is cancelled, nothing is left running on the laptop and the
local port is free again.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import subprocess
import termios
import time

from nodetunnel.errors import ExitCode
from nodetunnel.proc import NotReady, wait_until
from nodetunnel.sandbox.cluster import as_user_argv
from nodetunnel.session import port_is_free

from .helpers import ALICE, Cli, end_leftovers, jupyter_argv, squeue, user_processes


def _nothing_left(sandbox, port: int) -> None:
    wait_until(lambda: squeue(sandbox) == [], timeout_s=30, what="the job to be gone")
    wait_until(lambda: user_processes(ALICE) == [], timeout_s=15,
               what="no nodetunnel, tunnel or shared connection left")  # fmt: skip
    assert port_is_free(port)


def test_closing_the_terminal_cancels_the_job_and_closes_the_tunnel(sandbox, laptop_nodetunnel):
    master, slave = os.openpty()

    def controlling_terminal() -> None:  # in the child, after setsid: the pty is its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        as_user_argv(ALICE, jupyter_argv(laptop_nodetunnel)),
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        preexec_fn=controlling_terminal, cwd="/",
    )  # fmt: skip
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 120
        # The result object (pretty-printed, after the one-line progress events).
        while b'\n  "local_port"' not in out or not out.rstrip().endswith(b"}"):
            assert time.monotonic() < deadline, out.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                out += os.read(master, 65536)
        m = re.search(rb'\n  "local_port": (\d+)', out)
        assert m is not None, out
        port = int(m[1])
        assert not port_is_free(port)  # the tunnel listens
        os.close(master)  # the terminal window is closed: the kernel hangs up (SIGHUP)
        master = -1
        code = proc.wait(timeout=60)
        assert code == ExitCode.INTERRUPTED
        _nothing_left(sandbox, port)
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        end_leftovers(ALICE)


def test_ctrl_c_during_the_clean_up_still_cancels_the_job(sandbox, laptop_nodetunnel):
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel))
    try:
        info = cli.read_json()
        port = int(info["local_port"])  # type: ignore[call-overload]
        # Ctrl-C, then Ctrl-C again and again while nodetunnel cleans up (as an impatient
        # user does): every SIGINT goes to the whole process group, ssh children included.
        os.killpg(cli.proc.pid, signal.SIGINT)

        def exited() -> int:
            with_group = cli.proc.poll()
            if with_group is None:
                os.killpg(cli.proc.pid, signal.SIGINT)
                raise NotReady("nodetunnel is still cleaning up")
            return with_group + 1000  # truthy even for exit code 0

        code = wait_until(exited, timeout_s=60, interval_s=0.05, max_interval_s=0.05,
                          what="nodetunnel to exit") - 1000  # fmt: skip
        err = cli.stderr()
        assert code == ExitCode.INTERRUPTED, err
        assert "may still be running" not in err, err
        assert "Traceback" not in err
        _nothing_left(sandbox, port)
    except BaseException:
        cli.stop()
        raise
