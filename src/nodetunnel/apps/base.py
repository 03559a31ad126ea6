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

    ``launch`` is the app's argv; :class:`ShellVar` words are filled in by the
    job script: ``NT_SOCK`` (the Unix socket path, in a 0700 directory) and
    ``NT_TOKEN_FILE`` (a 0600 file holding the secret token).
    """

    name: str
    program: str  # must be on PATH after environment activation
    launch: tuple[Word, ...]
    env: tuple[tuple[str, ShellVar], ...] = ()  # exported before launch
    status_path: str = "/"  # probed through the tunnel (with the token) before announcing
    url_path: str = "/"  # what the browser opens
    install_hint: str = ""
