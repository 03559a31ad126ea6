"""How the commands show things: progress lines, JSON, tables and announcements."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any, TextIO

import click

_timestamps = False  # in the background, where the output goes to a log file


def use_timestamps() -> None:
    """From now on, progress lines start with the time (a detached keeper's log)."""
    global _timestamps
    _timestamps = True


def terminal_gone(failed: TextIO | None = None, *, in_handler: bool = False) -> None:
    """Output that can no longer be shown goes to /dev/null instead of failing.

    Called on SIGHUP (``failed`` None: the terminal is gone, both streams go) and on a
    write that fails (only that stream, and the other one if it is the same file: a
    pipe to ``head`` that closed leaves the terminal's progress lines alone). Neither a
    later line nor the interpreter's last flush can then fail (Python would turn that
    into exit code 120).

    ``in_handler``: called from a signal handler, which may have interrupted a write
    to these very streams: only the file descriptors are replaced (a flush there would
    be a reentrant call into the interrupted stream, a RuntimeError); what is left in
    the buffers goes to /dev/null with the next write or the last flush."""
    import os

    streams = [(sys.stdout, 1), (sys.stderr, 2)]
    fds = [fd for stream, fd in streams if stream is not None and _fileno(stream) == fd]
    if failed is not None:
        gone = _fileno(failed)
        fds = [fd for fd in fds if fd == gone or _same_file(fd, gone)]
    if not fds:
        return
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.dup2(devnull, fd)
        finally:
            if devnull > 2:
                os.close(devnull)
    if in_handler:
        return
    for stream, fd in streams:
        if fd in fds:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                stream.flush()  # what a failed write left in the buffer goes to /dev/null


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # closed, or not a file (CliRunner)
        return None


def _same_file(fd: int, other: int | None) -> bool:
    import os

    if other is None:
        return False
    try:
        return os.path.samestat(os.fstat(fd), os.fstat(other))
    except OSError:
        return False


def echo(text: str, *, err: bool = False) -> None:
    """A line on stdout (or stderr); if it cannot be written, that stream is silenced."""
    try:
        click.echo(text, err=err)
    except OSError:  # EIO after a hang-up, EPIPE from a reader that left
        terminal_gone(sys.stderr if err else sys.stdout)


def say(text: str) -> None:
    """One line on stderr; a terminal that is gone (closed, hung up) loses it, nothing else."""
    echo(text, err=True)


def progress(msg: str) -> None:
    if _timestamps:
        say(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}")
    else:
        say(f"· {msg}")


def print_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=True))
    flush_stdout()  # a script may read it while the command keeps running


def flush_stdout() -> None:
    if sys.stdout is None:  # started with stdout closed
        return
    try:
        sys.stdout.flush()
    except OSError:  # the terminal or the reading end is gone: the command goes on
        terminal_gone(sys.stdout)


#: A time limit this long is SLURM's way of printing "none" (INFINITE shows as ~365 days).
UNLIMITED_S = 300 * 24 * 3600


def time_left_text(seconds: int | None) -> str:
    if seconds is None:
        return ""
    if seconds >= UNLIMITED_S:
        return "unlimited"
    if seconds >= 48 * 3600:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    return f"{seconds // 60} min"


def _urls(row: Any) -> str:
    """The session's URLs, one a line: the main app's, then each further app's (``--with``)."""
    extras = row.record.extras if row.record is not None else []
    return "\n".join([row.url, *(f"{e['app']}: {str(e['url']).split('?', 1)[0]}"
                                  for e in extras)])  # fmt: skip


def session_table(rows: list[Any]) -> None:
    """``nodetunnel list``: one line per :class:`~nodetunnel.session.SessionRow`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="nodetunnel sessions", title_justify="left")
    for col in ("id", "app", "cluster", "job", "state", "node", "time left", "tunnel", "url"):
        table.add_column(col, no_wrap=True)  # an id or URL must stay whole, to copy it
    for r in rows:
        tunnel = ("up" if r.tunnel_up else "down") if r.here else "elsewhere"
        if r.reconnects:
            tunnel += f" ({r.reconnects} reconnects)"
        table.add_row(
            r.session_id, r.app, r.cluster or "", r.job_id, r.state, r.node,
            time_left_text(r.time_left_s), tunnel, _urls(r) if r.tunnel_up else r.problem,
        )  # fmt: skip
    # Off a terminal (a pipe, a file) rich would cut the table at 80 columns.
    Console(width=None if sys.stdout.isatty() else 10_000).print(table)


def announce(session: Any, info: Any, *, detached_pid: int | None) -> None:
    """The lines that say a session is ready: its URL, its job, how it ends."""
    left = f", {time_left_text(info.time_left_s)} left" if info.time_left_s else ""
    lease = session.req.lease_s
    until = f" until the job ends or nothing keeps it for {lease / 60:g} min" if lease else ""
    echo(f"\n  {session.app.name} is ready: {info.url}")
    for forward in session.forwards:  # further apps of the job (--with)
        echo(f"  {forward.app.name} is ready: {forward.url(session.token)}")
    echo("")
    if session.app.auth.form is not None:  # its password is made here: only our page logs in
        echo(f"  to log in from another window: nodetunnel open {info.session_id}")
    if detached_pid is not None:
        echo(f"  job {info.job_id} on {info.node}{left}. Runs in the background{until}: "
              f"nodetunnel list; nodetunnel stop {info.session_id}")  # fmt: skip
    else:
        if session.req.keep:
            stop = f"the job keeps running{until} (nodetunnel attach {info.session_id})"
        else:
            stop = "the job is cancelled"
        echo(f"  job {info.job_id} on {info.node}{left}. Ctrl-C to stop; {stop}.")
    flush_stdout()
