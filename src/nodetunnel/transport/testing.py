"""A public fake transport, for tests: the "cluster" is this machine.

:class:`FakeTransport` runs the session core's commands for the submit host
here, with ``HOME`` set to a directory of the test's (so the session directory
protocol runs for real, in a temporary home), and makes each forward a small
local HTTP server on 127.0.0.1:PORT that answers like the app would (its
status is read from a file the test may change). It records every command.
Pair it with a scheduler over :class:`~nodetunnel.scheduler.testing.FakeSlurm`.

Run as ``python -m nodetunnel.transport.testing --port N`` it is that server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import SshError
from ..proc import Completed, run


class FakeTransport:
    """A :class:`~nodetunnel.transport.base.Transport` whose cluster is this machine."""

    def __init__(
        self,
        home: Path,
        *,
        jump: Sequence[str] = ("login", "gateway"),
        status_file: Path | None = None,
        request_log: Path | None = None,
    ) -> None:
        self.home = home
        self.jump = tuple(jump)
        self.status_file = status_file or home / ".fake-app-status"
        self.request_log = request_log or home / ".fake-app-requests"
        self.calls: list[list[str]] = []
        self.connects = 0
        self.adopted = False
        self.closed = 0
        self.shielded_runs = 0
        #: Every forward asked for: (node, local port, what on the node).
        self.forwards: list[tuple[str, int, str]] = []
        #: Set to make every command fail as an unreachable cluster does.
        self.unreachable = False
        home.mkdir(parents=True, exist_ok=True)

    @property
    def submit_host(self) -> str:
        return self.jump[-1]

    @property
    def chain(self) -> str:
        return " -> ".join(self.jump)

    def set_app_status(self, status: int) -> None:
        """What the app answers through every forward from now on."""
        self.status_file.write_text(f"{status}\n")

    def requests(self) -> list[str]:
        """The requests the fake app got: ``METHOD PATH AUTHORIZATION`` lines."""
        if not self.request_log.exists():
            return []
        return self.request_log.read_text().splitlines()

    def connect(self) -> None:
        self.connects += 1

    def adopt(self) -> None:
        self.adopted = True

    def close(self) -> None:
        self.closed += 1

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        self.shielded_runs += 1
        yield

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float = 60,
        check: bool = True,
    ) -> Completed:
        self.calls.append(list(argv))
        if self.unreachable:
            raise SshError(list(argv), 255, "ssh: connect to host login port 22: No route to host",
                           message=f"cannot reach the cluster ({self.chain}): No route to host",
                           hint="check your network or VPN, then try again")  # fmt: skip
        env = {**os.environ, "HOME": str(self.home)}
        return run(argv, input=input, timeout_s=timeout_s, check=check, env=env)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout_s: float = 60,
        check: bool = True,
    ) -> Completed:
        return self.run(argv, input=input, timeout_s=timeout_s, check=check)  # a test may wrap run

    def attached_argv(self, argv: Sequence[str]) -> list[str]:
        return ["env", f"HOME={self.home}", *argv]

    submit_argv = attached_argv

    def run_attached(self, argv: Sequence[str]) -> int:
        from ..proc import run_attached

        return run_attached(self.attached_argv(argv)).returncode

    def stop_all(self) -> None:
        """End every fake app server this transport's forwards started (by PID and start)."""
        from ..proc import ProcessRef

        pids = self.home / ".fake-app-pids"
        for line in pids.read_text().splitlines() if pids.exists() else []:
            pid, start = (int(w) for w in line.split())
            ProcessRef(pid, start).stop(timeout_s=5)

    def forward_argv(
        self, node: str, local_port: int, remote: str, extra: Sequence[tuple[int, str]] = ()
    ) -> list[str]:
        self.forwards.append((node, local_port, remote))
        self.forwards.extend((node, port, far) for port, far in extra)
        ports = [w for port, _ in extra for w in ("--port", str(port))]
        return [sys.executable, "-m", "nodetunnel.transport.testing", "--port", str(local_port),
                *ports,
                "--status-file", str(self.status_file),
                "--log", str(self.request_log)]  # fmt: skip


def serve(ports: Sequence[int], status_file: Path, log: Path) -> int:
    """Answer every GET on 127.0.0.1:PORT, for each of ``ports``, with the status in
    ``status_file`` (default 200)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                status = int(status_file.read_text().strip())
            except (OSError, ValueError):
                status = 200
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # it holds tokens
            with os.fdopen(fd, "a") as f:
                f.write(f"GET {self.path} {self.headers.get('Authorization', '-')}\n")
            body = b"fake app\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    from ..proc import ProcessRef

    me = ProcessRef.of(os.getpid())
    if me is not None:  # so that a test that fails half-way can still end it
        with open(log.parent / ".fake-app-pids", "a") as f:
            f.write(f"{me.pid} {me.start_ticks}\n")
    HTTPServer.allow_reuse_address = True
    servers = []
    for port in ports:
        try:
            servers.append(HTTPServer(("127.0.0.1", port), Handler))
        except OSError as exc:  # as ssh says it
            sys.stderr.write(f"bind [127.0.0.1]:{port}: {exc.strerror}\n"
                             f"channel_setup_fwd_listener_tcpip: cannot listen to port: {port}\n")  # fmt: skip
            return 255
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--status-file", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    sys.exit(serve(args.port, args.status_file, args.log))
