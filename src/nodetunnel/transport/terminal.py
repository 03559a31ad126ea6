"""Running the ssh that may ask for a code on the terminal, and nothing else.

A terminal's Ctrl-C (SIGINT) and its hang-up (SIGHUP) go to its whole
*foreground process group*. ssh's ProxyJump helpers (``ssh -W``) are children
of the ssh that opened a hop's shared connection, in its process group; if
that group is nodetunnel's, a Ctrl-C kills them and with them the shared
connection of every hop behind, so the clean-up would have to log in again.

:func:`run_on_terminal` therefore runs such an ssh in a process group of its
own and makes that group the terminal's foreground while it runs (as a shell
does for a job): ssh can show its prompts and read the answer, and a Ctrl-C
typed meanwhile reaches it (and is passed on to nodetunnel as
KeyboardInterrupt). Afterwards nodetunnel takes the foreground back; the
helpers stay in their own, now background, group, where neither Ctrl-C nor
the terminal's hang-up reaches them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence

from ..proc import Completed, run


@contextlib.contextmanager
def _controlling_terminal() -> Iterator[int | None]:
    """The controlling terminal's fd if this process is in its foreground, else None."""
    if not hasattr(os, "tcsetpgrp"):
        yield None
        return
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    try:
        yield fd if os.tcgetpgrp(fd) == os.getpgrp() else None
    except OSError:
        yield None
    finally:
        os.close(fd)


def has_terminal() -> bool:
    """True if a prompt could be shown and answered here (a terminal we are in front of)."""
    with _controlling_terminal() as fd:
        return fd is not None


def _give_terminal(fd: int, pgrp: int) -> None:
    # Done from the background: the terminal would stop us with SIGTTOU unless ignored.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, old)


def run_on_terminal(argv: Sequence[str], *, timeout_s: float) -> Completed:
    """Run ``argv`` in the terminal's foreground in a process group of its own (see above).

    Without a terminal in front of us it runs in a session of its own (nothing
    could be asked anyway). A Ctrl-C during it raises KeyboardInterrupt.
    """
    with _controlling_terminal() as tty:
        if tty is None:
            return run(argv, timeout_s=timeout_s, check=False, new_session=True)
        started = time.monotonic()

        def in_front() -> None:  # in the child, before exec (as a shell does for a job)
            os.setpgrp()
            _give_terminal(tty, os.getpgrp())

        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                preexec_fn=in_front)  # fmt: skip
        ours = os.getpgrp()
        try:
            _give_terminal(tty, proc.pid)  # either side may be first: both do it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)  # if it read the terminal too early
            out, err = proc.communicate(timeout=timeout_s)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            raise
        finally:
            _give_terminal(tty, ours)
        if proc.returncode == -signal.SIGINT:
            raise KeyboardInterrupt
        return Completed(list(argv), proc.returncode, out, err, time.monotonic() - started)


__all__ = ["has_terminal", "run_on_terminal"]
