"""Running the dashboard: a uvicorn server on 127.0.0.1, in the foreground or detached.

The server's socket is bound here before uvicorn starts (a free port, or
``--port``), so the URL is known and right. Its token is made in the serving
process and written, with its PID and port, to a 0600 file beside the session
records (``dashboard.json``): that is how ``--detach`` learns the URL from its
background process, how a second ``nodetunnel dashboard`` finds the running
one, and how ``nodetunnel dashboard stop`` ends it (by PID and start time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import NodetunnelError, PortInUse, UsageError
from ..proc import NotReady, ProcessRef, spawn, wait_until
from ..session.lifecycle import redirect_page
from ..state import SessionStore
from ..transport.base import ClusterRef
from .board import REFRESH_INTERVAL_S, Board

STATE_FILE = "dashboard.json"
DETACH_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Running:
    """A dashboard that runs: its process, port and token (read from its 0600 file)."""

    pid: int
    pid_start: int
    port: int
    token: str

    @property
    def url(self) -> str:
        """The URL that logs a browser in (it carries the token once)."""
        return f"http://127.0.0.1:{self.port}/?key={self.token}"

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def alive(self) -> bool:
        return ProcessRef(self.pid, self.pid_start).alive()


def state_path(store: SessionStore) -> Path:
    return store.root.parent / STATE_FILE


def running(store: SessionStore) -> Running | None:
    """The dashboard that runs for this user, if any (a stale file is removed)."""
    path = state_path(store)
    try:
        data = json.loads(path.read_text())
        found = Running(int(data["pid"]), int(data["pid_start"]), int(data["port"]),
                        str(data["token"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not found.alive():
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return found


def _write_state(store: SessionStore, me: Running) -> Path:
    path = state_path(store)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dataclasses.asdict(me), f)
    os.replace(tmp, path)
    return path


def bind(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port``, else a free one); never another address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on 127.0.0.1 is already in use",
                hint="pick another --port, or leave it out for a free one",
            ) from None
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                         hint="pick another --port") from None  # fmt: skip
    sock.listen(64)
    return sock


def open_browser(store: SessionStore, me: Running) -> None:
    """Open the dashboard through a 0600 page, so the token stays out of the browser's argv."""
    import webbrowser

    page = redirect_page(store.root.parent / "dashboard-open.html", me.url, "the dashboard")
    webbrowser.open(page.as_uri())


def serve(
    clusters: Sequence[ClusterRef],
    *,
    port: int | None = None,
    config_file: str | None = None,
    interval_s: float = REFRESH_INTERVAL_S,
    store: SessionStore | None = None,
    ready: Callable[[Running], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C, SIGTERM); ``ready`` gets its URL first."""
    import uvicorn

    from .web import Auth, make_app

    store = store or SessionStore()
    other = running(store)
    if other is not None:
        raise UsageError(
            f"a dashboard already runs for you at {other.address} (process {other.pid})",
            hint="'nodetunnel dashboard' without --port opens it; 'nodetunnel dashboard stop' "
            "ends it",
        )
    sock = bind(port)
    token = secrets.token_urlsafe(32)
    me_ref = ProcessRef.of(os.getpid())
    me = Running(os.getpid(), me_ref.start_ticks if me_ref else 0, sock.getsockname()[1], token)
    board = Board(store, clusters, interval_s=interval_s)
    app = make_app(board, store, Auth(token, me.port), config_file=config_file)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=1, ws="none")  # fmt: skip
    server = uvicorn.Server(config)
    path = _write_state(store, me)
    try:
        if ready is not None:
            ready(me)
        server.run(sockets=[sock])
    finally:
        sock.close()
        from .actions import abandon_starts

        abandon_starts()  # a start under way is cleaned up, its job cancelled
        with contextlib.suppress(OSError):
            if running(store) in (None, me):
                path.unlink()


def detach(argv: Sequence[str], env: dict[str, str], store: SessionStore) -> Running:
    """Start ``argv`` (this program serving the dashboard) in the background; return it ready.

    Ready means: its file names it and it listens on the port written there.
    """
    store.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = store.root.parent / "dashboard.log"
    child = spawn(argv, log_path=log_path, env=env, cwd=store.root.parent)

    def up() -> Running:
        found = running(store)
        if (
            found is not None
            and found.pid == child.pid
            and (child.listens_on("127.0.0.1", found.port) is not False)
        ):
            return found
        if not child.alive():
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise NodetunnelError(
                "the background dashboard ended before it was ready"
                + (": " + " / ".join(tail) if tail else ""),
                hint=f"see {log_path}; run 'nodetunnel dashboard' without --detach to see why",
            )
        raise NotReady(f"process {child.pid} is not listening yet")

    try:
        return wait_until(up, timeout_s=DETACH_TIMEOUT_S, what="the background dashboard",
                          interval_s=0.05, max_interval_s=0.5)  # fmt: skip
    except BaseException:
        with contextlib.suppress(NodetunnelError):
            child.stop(timeout_s=5)
        raise


def stop(store: SessionStore | None = None) -> Running | None:
    """End the running dashboard (by PID and start time); None if none ran."""
    store = store or SessionStore()
    found = running(store)
    if found is None:
        return None
    ProcessRef(found.pid, found.pid_start).stop(timeout_s=10)
    with contextlib.suppress(OSError):
        state_path(store).unlink()
    return found


def self_argv(args: Sequence[str]) -> list[str]:
    """This nodetunnel, run again with ``args`` (for --detach)."""
    return [sys.executable, "-m", "nodetunnel", *args]


__all__ = ["Running", "bind", "detach", "open_browser", "running", "self_argv", "serve", "stop"]
