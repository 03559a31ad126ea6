"""Further apps in a session's job (``--with``): each on its own socket or port on the node,
forwarded by the session's one tunnel to its own local port.

The main app is the session's :attr:`~.lifecycle.Session.app`; a :class:`Forward`
is one further app: its recipe, where it listens on the node and the local
port it is forwarded to. The job script starts them (see
:func:`~.jobscript.render_body`); records keep them as plain JSON objects
(:func:`to_record`, :func:`from_record`), so a record without any stays valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..apps import APPS
from ..apps.base import App
from ..errors import UsageError, WaitTimeout
from ..proc import NotReady
from .jobscript import extra_on_port
from .model import Endpoint
from .startup import RUNNING_CHECK_S

if TYPE_CHECKING:
    from .lifecycle import Session
    from .startup import Watch


@dataclasses.dataclass
class Forward:
    """One further app of a session: where it listens on the node, where it is reached here."""

    app: App
    remote: str = ""  # a socket path, or 127.0.0.1:PORT on the node
    local_port: int = 0  # 0: not chosen yet

    def url(self, token: str) -> str:
        return self.app.url(self.local_port, token)


def needs_published(extras: Sequence[App]) -> bool:
    """Whether a further app listens on a port the node chooses (read from ``endpoint``)."""
    return any(extra_on_port(app) for app in extras)


def planned(extras: Sequence[App], socket_dir: str | None) -> list[Forward]:
    """The forwards, with each socket's path where the laptop named the directory."""
    return [Forward(app, f"{socket_dir}/s{n}" if socket_dir and not extra_on_port(app) else "")
            for n, app in enumerate(extras, 1)]  # fmt: skip


def fill_from(forwards: Sequence[Forward], endpoint: Endpoint) -> None:
    """Where each further app listens, from the job's ``endpoint`` file."""
    for n, forward in enumerate(forwards, 1):
        socket = endpoint.fields.get(f"socket{n}")
        port = endpoint.fields.get(f"port{n}", "")
        if socket:
            forward.remote = socket
        elif port.isdigit():
            forward.remote = f"127.0.0.1:{port}"
        if not forward.remote:
            raise UsageError(
                f"the job did not say where its app {n} ({forward.app.name}) listens",
                hint="see the job log ('nodetunnel logs ID'); please report this",
            )


def from_endpoint(fields: dict[str, str]) -> list[dict[str, str | int]]:
    """The further apps a job's ``endpoint`` names, as record entries (a session claimed from
    another machine; local ports are chosen when its tunnel opens)."""
    out: list[dict[str, str | int]] = []
    n = 1
    while f"app{n}" in fields:
        socket, port = fields.get(f"socket{n}", ""), fields.get(f"port{n}", "")
        out.append({"app": fields[f"app{n}"], "title": fields[f"app{n}"], "local_port": 0,
                    "remote": socket or (f"127.0.0.1:{port}" if port.isdigit() else ""),
                    "url": "", "url_path": fields.get(f"url{n}", "/"),
                    "status_path": fields.get(f"ready{n}", "/")})  # fmt: skip
        n += 1
    return out


def exposed(forward: Forward) -> bool:
    """On a loopback port without a secret: anyone with a job on the node could reach it."""
    return not forward.remote.startswith("/") and forward.app.exposed_on_tcp


def to_record(forwards: Sequence[Forward], token: str) -> list[dict[str, str | int]]:
    return [{"app": f.app.name, "title": f.app.title, "remote": f.remote,
             "local_port": f.local_port, "url": f.url(token), "url_path": f.app.url_path,
             "status_path": f.app.ready_path} for f in forwards]  # fmt: skip


def from_record(items: Sequence[dict[str, str | int]], session_id: str) -> list[Forward]:
    """The forwards a record keeps (an app this nodetunnel does not know is refused)."""
    out = []
    for item in items:
        app = APPS.get(str(item.get("app", "")))
        if app is None:
            raise UsageError(
                f"session {session_id} also runs {item.get('app')!r}, which this nodetunnel "
                "does not know",
                hint="update nodetunnel on this machine",
            )
        app = dataclasses.replace(app, title=str(item.get("title") or app.title),
                                  url_path=str(item.get("url_path") or app.url_path),
                                  ready_path=str(item.get("status_path") or app.ready_path))  # fmt: skip
        port = item.get("local_port", 0)
        out.append(Forward(app, str(item.get("remote", "")), port if isinstance(port, int) else 0))
    return out


def info(session: Session) -> list[dict[str, Any]]:
    """The further apps of a session, as announced (``--json``; URLs as the main one's)."""
    return [dict(item) for item in to_record(session.forwards, session.token)]


def wait_ready(session: Session, watch: Watch) -> None:
    """Until each further app answers through the tunnel (the job may still start them);
    an app on a port without a password is named in a one-line note first."""
    tunnel = session.tunnel
    if not session.forwards or tunnel is None:
        return
    for forward in session.forwards:
        if exposed(forward):
            session._notice(f"note: {forward.app.title} listens on {forward.remote} on "
                            f"{tunnel.node} without a password: other users with a job on "
                            "that node can reach it")  # fmt: skip
    asked = time.monotonic()

    def check() -> None:  # a job that ended (an app failed) raises JobFailed
        nonlocal asked
        if time.monotonic() - asked >= RUNNING_CHECK_S:
            asked = time.monotonic()
            with contextlib.suppress(NotReady):
                watch.ask()

    tunnel.wait_extras(watch.left_s(), check=check)
    for forward in session.forwards:
        session._say(f"{forward.app.name} answers on 127.0.0.1:{forward.local_port}")


def wait_again(session: Session, timeout_s: float = 30) -> None:
    """After an attach: each further app answers again; one that does not (it may have
    exited while the main app runs on) is named, and the session goes on without it."""
    if not session.forwards or session.tunnel is None:
        return
    try:
        session.tunnel.wait_extras(timeout_s)
    except WaitTimeout as exc:
        session._notice(f"note: {exc.message}; the other apps of the session work")


def pick(names: Sequence[str], wanted: str) -> int:
    """Which of a session's apps ``wanted`` names: its name, or its number (1 is the main app).

    Returns the index into ``names``.
    """
    if wanted.isdigit() and 1 <= int(wanted) <= len(names):
        return int(wanted) - 1
    if wanted in names:
        return names.index(wanted)
    listed = ", ".join(f"{i} ({name})" for i, name in enumerate(names, 1))
    raise UsageError(f"the session has no app {wanted!r}", hint=f"its apps are: {listed}")
