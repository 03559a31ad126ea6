"""What an app recipe is."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ShellVar:
    """A word of a launch command that the job script fills in at run time (``"$NAME"``)."""

    name: str
    prefix: str = ""  # literal text before the variable, e.g. "--sock="


Word = str | ShellVar


@dataclasses.dataclass(frozen=True)
class App:
    """How to run one kind of web app on a node, listening privately.

    ``launch`` is the app's argv on a Unix socket; :class:`ShellVar` words are
    filled in by the job script: ``NT_SOCK`` (the socket path, in a 0700
    directory) and ``NT_TOKEN_FILE`` (a 0600 file holding the secret token).
    ``launch_tcp`` is the fallback on ``127.0.0.1:NT_PORT`` (a free port chosen
    on the node), used with ``--tcp`` or where ``socket_check`` (a shell
    condition) says the installed app cannot listen on a socket.
    """

    name: str
    program: str  # must be on PATH after environment activation
    launch: tuple[Word, ...]
    launch_tcp: tuple[Word, ...]
    socket_check: str = "true"
    env: tuple[tuple[str, ShellVar], ...] = ()  # exported before launch
    status_path: str = "/"  # probed through the tunnel (with the token) before announcing
    url_path: str = "/"  # what the browser opens
    install_hint: str = ""
