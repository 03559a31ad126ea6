"""The ``nodetunnel`` command: a thin click layer over the library.

This package is the only place that prints or exits. Library errors arrive as
:class:`nodetunnel.errors.NodetunnelError` and leave as one clear message and
an :class:`~nodetunnel.errors.ExitCode`; a traceback only with ``--debug``.
Each command is a few lines over a library call (:mod:`nodetunnel.session`,
:mod:`nodetunnel.config`, :mod:`nodetunnel.sandbox`); one module per command
group (:mod:`.sandbox`, :mod:`.apps`, :mod:`.sessions`, :mod:`.config`), and
:mod:`.output` formats what they show.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .. import __version__
from ..errors import ExitCode, NodetunnelError

_debug = False  # --debug: tracebacks, and the commands run (read by the commands too)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name="nodetunnel")
@click.option(
    "--debug", is_flag=True, help="Show full tracebacks and the commands run, for bug reports."
)
def cli(debug: bool) -> None:
    """Open web apps running on SLURM compute nodes in your laptop's browser.

    nodetunnel submits a batch job that starts the app (JupyterLab,
    Notebook, Streamlit, Dash, TensorBoard, marimo, Panel, Voila, VS Code in
    the browser, or any command: see 'nodetunnel apps'; several in one job
    with --with) on a compute node, listening privately, then forwards it to
    127.0.0.1 on your laptop through your own OpenSSH setup (~/.ssh/config,
    agent, ProxyJump, MFA) and keeps the tunnel healthy.

    \b
    Try it without a cluster (Linux, as root):
      nodetunnel sandbox up        build a mini-cluster on this machine
      nodetunnel sandbox status    see what is running
      nodetunnel sandbox down      remove it again
    """
    global _debug
    _debug = debug
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="debug: %(message)s", stream=sys.stderr)


def _fail(code: int, message: str, hint: str | None = None) -> NoReturn:
    say(f"nodetunnel: error: {message}")
    if hint:
        say(f"  fix: {hint}")
    _exit(int(code))


def _exit(code: int) -> NoReturn:
    """Exit with ``code``, also when the terminal is gone (Python would make that exit 120)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):
            terminal_gone(stream)  # the rest of its buffer goes to /dev/null ...
            try:
                stream.flush()
            except (OSError, ValueError, RuntimeError):
                setattr(sys, name, None)  # ... or, if even that fails, nowhere
    sys.exit(code)


def _terminate(signum: int, _frame: Any) -> None:
    # SIGTERM (e.g. from 'nodetunnel stop') and SIGHUP (the terminal was closed) clean up
    # like Ctrl-C does: the job is cancelled unless --keep, the tunnel is closed.
    if signum == getattr(signal, "SIGHUP", None):
        terminal_gone(in_handler=True)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``nodetunnel`` command."""
    try:
        _main(argv)
    except KeyboardInterrupt:  # another Ctrl-C while nodetunnel was already leaving
        _leaving()
        _exit(ExitCode.INTERRUPTED)


def _leaving() -> None:
    """Once nodetunnel has decided to exit, further Ctrl-C / SIGTERM / SIGHUP change nothing."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def _main(argv: Sequence[str] | None) -> NoReturn:
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _terminate)
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="nodetunnel",
            standalone_mode=False,
        )
    except NodetunnelError as exc:
        if _debug:
            traceback.print_exc()
        _fail(exc.exit_code, exc.message, exc.hint)
    except click.exceptions.Abort:  # click has already ended the ^C line
        _leaving()
        say("interrupted")
        _exit(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        _leaving()
        say("\ninterrupted")
        _exit(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        _exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        _exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    # In non-standalone mode click returns the code of ctx.exit(N) instead of raising.
    _exit(rv if isinstance(rv, int) else ExitCode.OK)


# The command groups register themselves on ``cli``.
from . import apps, config, dashboard, sandbox, sessions  # noqa: E402
from .output import say, terminal_gone  # noqa: E402

__all__ = ["apps", "cli", "config", "dashboard", "main", "sandbox", "sessions"]
