"""The tunnel: 127.0.0.1:PORT on this machine forwarded to the app on its node.

:class:`Tunnel` is a context manager whose exit always closes it. It picks the
local port, starts the transport's forward as a background process (tracked
by PID and start time), and calls it open only once the app answers through
it as the app's recipe says it should.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from ..apps.base import App
from ..errors import NodetunnelError, PortInUse, TunnelError
from ..proc import Completed, NotReady, ProcessRef, spawn, wait_until
from ..transport.base import Transport
from ..transport.sshfailures import needs_prompt, translate_ssh_failure

if TYPE_CHECKING:
    from .extras import Forward

PORT_ATTEMPTS = 5
Say = Callable[[str], None]


def port_is_free(port: int) -> bool:
    """Whether ssh could listen on 127.0.0.1:port (it sets SO_REUSEADDR, so we do too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_local_port(
    requested: int | None, *, preferred: int | None = None, avoid: Sequence[int] = ()
) -> int:
    """``requested`` if free (else an error), else ``preferred`` if free, else any free port."""
    if requested is not None:
        if not port_is_free(requested):
            raise PortInUse(
                f"local port {requested} is already in use on this machine",
                hint="choose another with --port, or leave --port out to pick a free one",
            )
        return requested
    if preferred and preferred not in avoid and port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def probe_http(
    port: int, path: str, headers: dict[str, str] | None = None, timeout_s: float = 5
) -> int:
    """GET ``path`` on 127.0.0.1:port with ``headers``; the HTTP status, or NotReady."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise NotReady(f"no HTTP answer on 127.0.0.1:{port}: {exc}") from exc
    finally:
        conn.close()


PROBE_EVERY_S = 0.1  # the app's readiness through a new tunnel is checked this often...
EAGER_PROBES_S = 20.0  # ...for this long, then with a backoff...
PROBE_MAX_EVERY_S = 0.5  # ...up to this

#: The signals that end nodetunnel as Ctrl-C does (see ``nodetunnel.cli.main``).
INTERRUPTS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM, a closed terminal's SIGHUP) back while a step that must not
    be cut short runs; raise KeyboardInterrupt after it if one came (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # Each held signal once to the handler it was meant for (e.g. the CLI's, which also
    # silences a terminal that hung up), every one of them even if one raises; then the
    # interrupt the handlers would have raised, once.
    for sig in dict.fromkeys(pending):
        handler = previous[sig]
        if callable(handler) and handler is not signal.default_int_handler:
            with contextlib.suppress(KeyboardInterrupt):
                handler(sig, None)
    if pending:
        raise KeyboardInterrupt


def _no_socket_forwarding_hint(app: App) -> str:
    """What to do where the node's sshd will not forward to a Unix socket."""
    if not app.takes_tcp:
        return (f"{app.title} is served here only on a Unix socket; ask the site to allow "
                "socket forwarding (sshd's AllowStreamLocalForwarding)")  # fmt: skip
    guard = ("its token" if app.auth.uses_secret else
             "nothing: other users with a job on the node can reach it")  # fmt: skip
    return (
        "the site forbids socket forwarding: run again with --tcp (the app then listens on "
        f"a port of the node, protected by {guard})"
    )


def _refused_forward(log: Path, offset: int) -> bool:
    """Whether ssh logged that the far side refuses the forward (not: the socket is missing)."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return b"administratively prohibited" in f.read()
    except OSError:
        return False


class Tunnel:
    """One forward to ``remote`` on ``node``, its log and PID file in ``local_dir``."""

    def __init__(
        self,
        transport: Transport,
        app: App,
        token: str,
        *,
        node: str,
        remote: str,
        local_dir: Path,
        say: Say | None = None,
        extras: Sequence[Forward] = (),
    ) -> None:
        self.transport = transport
        self.extras = list(extras)  # further apps, over the same connection
        self.app = app
        self.token = token
        self.node = node
        self.remote = remote
        self.local_dir = local_dir
        self._say = say or (lambda _m: None)
        self.proc: ProcessRef | None = None
        self.port: int | None = None

    @property
    def log_path(self) -> Path:
        return self.local_dir / "tunnel.log"

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def wait_gone(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the forward's ssh to exit; True if it is not running."""
        return self.proc is None or self.proc.wait_gone(timeout_s)

    def adopt(self, proc: ProcessRef | None, port: int) -> None:
        """Continue with a forward another process started (a hand-over)."""
        self.proc = proc if proc is not None and proc.alive() else None
        self.port = port

    def stop(self, timeout_s: float = 3) -> None:
        """End the forward (raises :class:`NodetunnelError` if it cannot be ended)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.stop(timeout_s=timeout_s)

    def open_on_a_port(
        self,
        requested: int | None,
        *,
        prefer: int | None = None,
        reach_timeout_s: float = 60,
        check: Callable[[], None] | None = None,
    ) -> int:
        """Open on ``requested``, else on ``prefer``, the app's preferred port or any free one.

        Without ``requested``, a port another program takes between the check
        and the bind (e.g. sessions started at the same moment) is no error:
        the next free port is tried instead.
        """
        taken: list[int] = []
        while True:
            others = self._choose_extra_ports(
                avoid=[requested or prefer or self.app.preferred_port or 0]
            )
            if (
                requested is None
                and prefer
                and prefer not in taken + others
                and port_is_free(prefer)
            ):
                port = prefer
            else:
                port = choose_local_port(requested, preferred=self.app.preferred_port,
                                         avoid=taken + others)  # fmt: skip
            try:
                self.open(port, reach_timeout_s=reach_timeout_s, check=check)
            except PortInUse:
                self.proc = None  # its ssh has exited
                taken.append(port)
                if requested is not None or len(taken) >= PORT_ATTEMPTS:
                    raise
                self._say(f"port {port} was taken just now; trying another")
                continue
            self._say(f"tunnel open on 127.0.0.1:{port}")
            return port

    def _choose_extra_ports(self, avoid: Sequence[int]) -> list[int]:
        """A free local port for each further app: the one it had if still free, else its
        usual one, else any (never one of another app of the session)."""
        chosen: list[int] = []
        for forward in self.extras:
            keep = forward.local_port and forward.local_port not in chosen
            if not (keep and port_is_free(forward.local_port)):
                forward.local_port = choose_local_port(
                    None, preferred=forward.app.preferred_port, avoid=[*avoid, *chosen]
                )
            chosen.append(forward.local_port)
        return chosen

    def wait_extras(self, timeout_s: float, check: Callable[[], None] | None = None) -> None:
        """Until every further app answers through the tunnel as its recipe says it should."""
        proc = self.proc
        if proc is None:
            raise RuntimeError("wait_extras() needs an open tunnel")
        for forward in self.extras:
            path, port = forward.app.ready_path, forward.local_port
            headers = forward.app.auth_headers(self.token)

            def probe(path: str = path, port: int = port, headers: dict[str, str] = headers,
                      app: App = forward.app) -> bool:  # fmt: skip
                if check is not None:
                    check()
                if not proc.alive():
                    raise TunnelError(
                        "the SSH tunnel to the node exited while the apps started",
                        hint="run again with --debug to see the ssh command, and try it by hand",
                    )
                # As for the main app: the secret goes only to this very forward.
                if proc.listens_on("127.0.0.1", port) is False:
                    raise NotReady(f"the forward does not listen on 127.0.0.1:{port} yet")
                code = probe_http(port, path, headers)
                if app.ready(code):
                    return True
                raise NotReady(f"HTTP {code} from {path} of {app.name}")

            wait_until(probe, timeout_s=timeout_s, what=f"{forward.app.title} to answer through "
                       "the tunnel", interval_s=PROBE_EVERY_S, eager_s=EAGER_PROBES_S,
                       max_interval_s=PROBE_MAX_EVERY_S)  # fmt: skip

    def open(
        self, port: int, *, reach_timeout_s: float = 60, check: Callable[[], None] | None = None
    ) -> None:
        """Start the forward on ``port`` and wait until the app answers through it.

        ``check`` runs at every try (it may raise to end the wait: the job ended ...).
        """
        log = self.log_path
        offset = log.stat().st_size if log.exists() else 0  # this attempt's lines start here
        argv = self.transport.forward_argv(
            self.node,
            port,
            self.remote,
            [(f.local_port, f.remote) for f in self.extras if f.local_port],
        )
        with sigint_deferred():  # never leave a forward running that stop() does not know
            proc = self.proc = spawn(argv, log_path=log)
            # Recorded so that whoever cleans up after a hard kill can end it by PID.
            (self.local_dir / "tunnel.pid").write_text(f"{proc.pid} {proc.start_ticks}\n")
        self.port = port
        self._wait_reachable(proc, port, reach_timeout_s, log_offset=offset, check=check,
                             argv=argv)  # fmt: skip

    def _wait_reachable(
        self,
        proc: ProcessRef,
        port: int,
        timeout_s: float,
        *,
        log_offset: int,
        check: Callable[[], None] | None,
        argv: Sequence[str],
    ) -> None:
        path = self.app.ready_path
        headers = self.app.auth_headers(self.token)

        def probe() -> bool:
            if check is not None:
                check()
            if not proc.alive():
                with open(self.log_path, "rb") as f:
                    f.seek(log_offset)
                    log = f.read().decode(errors="replace").strip()
                if "Address already in use" in log or "cannot listen" in log:
                    raise PortInUse(
                        f"local port {port} was taken just now by another program",
                        hint="run the command again (or choose a port with --port)",
                    )
                if needs_prompt(log):
                    # The tunnel runs away from the terminal (no connection to ride without
                    # sharing): a login that asks for a code fails, and trying again would
                    # only send more empty answers. Not a TunnelError: never retried.
                    done = Completed(list(argv), 255, "", log, 0.0)
                    raise translate_ssh_failure(argv, done, self.transport.chain.split(" -> "),
                                                prompt=False)  # fmt: skip
                last = log.splitlines()[-1] if log else "no output"
                raise TunnelError(
                    f"the SSH tunnel to the node exited: {last}",
                    hint="run again with --debug to see the ssh command, and try it by hand",
                )
            if self.remote.startswith("/") and _refused_forward(self.log_path, log_offset):
                raise TunnelError(
                    f"the node's sshd refuses to forward to a Unix socket ({self.node})",
                    hint=_no_socket_forwarding_hint(self.app),
                )
            # The secret goes only to a listener proven to be this forward: another local
            # program may hold the port until ssh gives up on it.
            if proc.listens_on("127.0.0.1", port) is False:
                raise NotReady(f"the forward does not listen on 127.0.0.1:{port} yet")
            code = probe_http(port, path, headers)
            if self.app.ready(code):
                return True
            raise NotReady(f"HTTP {code} from {path}")

        # Every 0.1 s while the app usually starts (a refused try costs the node's sshd one
        # channel), then less often.
        wait_until(probe, timeout_s=timeout_s, what="the app to answer through the tunnel",
                   interval_s=PROBE_EVERY_S, eager_s=EAGER_PROBES_S,
                   max_interval_s=PROBE_MAX_EVERY_S)  # fmt: skip

    def answers(self, timeout_s: float) -> bool:
        """Whether the app answers through the tunnel at all (any HTTP status will do)."""
        if self.port is None:
            return False
        try:
            probe_http(self.port, self.app.ready_path, self.app.auth_headers(self.token),
                       timeout_s=timeout_s)  # fmt: skip
        except NotReady:
            return False
        return True

    def stop_quietly(self) -> None:
        with contextlib.suppress(NodetunnelError):
            self.stop()
