"""Any web app: your command, told where to listen through placeholders or its environment.

``nodetunnel run -- python -m http.server --bind 127.0.0.1 {port}`` listens on
a free loopback port of the node; ``nodetunnel run -- myapp --uds {socket}``
on a Unix socket in the job's private directory. The command also finds them
as ``$NT_PORT`` / ``$NT_SOCKET``. Without a placeholder it gets the socket (or,
with ``--tcp``, the port) through the environment only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .base import App, ShellVar, Word

PLACEHOLDERS = {"{socket}": "NT_SOCK", "{port}": "NT_PORT"}

RUN = App(
    name="run",
    title="your app",
    program="",
    launch=(),
    launch_tcp=(),
    exports_endpoint=True,
    ready_path="/",
    ready_statuses=frozenset(range(200, 400)),  # a page, or a redirect to one
    url_path="/",
    summary="Run any web app (your command) in a SLURM job and open it in your browser.",
    examples=(
        "--cluster swc -- python -m http.server --bind 127.0.0.1 {port}",
        "--cluster swc --ready /healthz -- uvicorn main:app --uds {socket}",
        "--cluster swc --url /status -- dask scheduler --host 127.0.0.1 --port 0 "
        "--dashboard-address 127.0.0.1:{port}",
    ),
)


class CommandError(ValueError):
    """A command that cannot be used as given (the message says why)."""


def _word(word: str) -> Word:
    found = [(word.find(p), p) for p in PLACEHOLDERS if p in word]
    if not found:
        return word
    if len(found) > 1 or word.count(found[0][1]) > 1:
        raise CommandError(f"{word!r} has more than one placeholder; give each its own word")
    at, placeholder = found[0]
    return ShellVar(PLACEHOLDERS[placeholder], prefix=word[:at],
                    suffix=word[at + len(placeholder):])  # fmt: skip


def command_app(
    command: Sequence[str], *, ready_path: str = "/", url_path: str = "/", tcp: bool = False
) -> App:
    """The recipe for one command (see the module doc)."""
    if not command or not command[0].strip():
        raise CommandError("no command given: put it after --, e.g. -- python app.py")
    for path in (ready_path, url_path):
        if not path.startswith("/"):
            raise CommandError(f"{path!r} is not a path on the app's server (it starts with /)")
    words = tuple(_word(w) for w in command)
    names = {w.name for w in words if isinstance(w, ShellVar)}
    if "NT_SOCK" in names and ("NT_PORT" in names or tcp):
        raise CommandError("the command uses {socket}: it cannot listen on a port too (--tcp)")
    listen = "tcp" if "NT_PORT" in names or tcp else "socket"
    return dataclasses.replace(
        RUN, title=command[0], program=command[0], launch=words, launch_tcp=words, listen=listen,
        ready_path=ready_path, url_path=url_path,
        install_hint="check the command, and the environment it needs (--venv, --conda-env, "
        "--module, --setup)",
    )  # fmt: skip
