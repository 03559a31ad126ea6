"""One app session: submit, wait, verify, tunnel, probe — and always clean up.

:class:`Session` is a context manager: whatever happens inside (an error,
Ctrl-C), leaving it closes the tunnel and the shared SSH connections and
cancels the job unless ``keep`` was asked for. The library reports progress
through a callback and never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .apps.base import App
from .errors import NodetunnelError, UsageError
from .payload import Environment, parse_endpoint, render_body
from .proc import NotReady, ProcessRef, spawn, wait_until
from .scheduler.base import JobRequest, JobState, JobStatus
from .scheduler.slurm import Slurm
from .ssh import OpenSSH, SshSettings, default_includes, private_runtime_dir, render_config

Progress = Callable[[str], None]
DEFAULT_PORT = 8888
SESSIONS_DIR = ".nodetunnel/sessions"  # relative to the cluster home


class JobEnded(NodetunnelError):
    """The job ended (failed, was cancelled, hit its time limit) before or while serving."""


@dataclasses.dataclass(frozen=True)
class LaunchRequest:
    app: App
    jump: tuple[str, ...]
    job: JobRequest
    env: Environment = dataclasses.field(default_factory=Environment)
    user: str | None = None
    ssh_includes: tuple[str, ...] = ()
    local_port: int | None = None
    start_timeout_s: float = 600
    keep: bool = False
    ssh: SshSettings = dataclasses.field(default_factory=SshSettings)


@dataclasses.dataclass
class SessionInfo:
    session_id: str
    job_id: str
    node: str
    local_port: int
    url: str
    remote_socket: str
    session_dir: str
    time_left_s: int | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_local_port(requested: int | None) -> int:
    """``requested`` if free (else an error), else 8888 if free, else any free port."""
    if requested is not None:
        if not port_is_free(requested):
            raise UsageError(
                f"local port {requested} is already in use on this machine",
                hint="choose another with --port, or leave --port out to pick a free one",
            )
        return requested
    if port_is_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def probe_http(port: int, path: str, token: str, timeout_s: float = 5) -> int:
    """GET ``path`` on 127.0.0.1:port with the token; the HTTP status, or NotReady."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Authorization": f"token {token}"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise NotReady(f"no HTTP answer on 127.0.0.1:{port}: {exc}") from exc
    finally:
        conn.close()


class Session:
    """An app in a SLURM job on a compute node, forwarded to 127.0.0.1 on this machine."""

    def __init__(self, req: LaunchRequest, *, progress: Progress | None = None) -> None:
        self.req = req
        self._say = progress or (lambda _m: None)
        self.session_id = "nt-" + secrets.token_hex(4)
        self.token = secrets.token_urlsafe(32)
        self._local_dir = private_runtime_dir() / self.session_id
        self._ssh_config = self._local_dir / "ssh_config"
        self.ssh = OpenSSH(req.jump, config_path=self._ssh_config, user=req.user)
        self.slurm = Slurm(self.ssh)
        self._connected = False
        self.job_id: str | None = None
        self.tunnel: ProcessRef | None = None
        self.info: SessionInfo | None = None
        self.session_dir = ""

    # ----------------------------------------------------------- lifecycle
    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> SessionInfo:
        req = self.req
        if req.local_port is not None:
            choose_local_port(req.local_port)  # a taken --port fails before anything is submitted
        self._local_dir.mkdir(mode=0o700)
        config = self._ssh_config
        config.write_text(
            render_config(
                control_dir=self._local_dir,
                settings=req.ssh,
                includes=default_includes(req.ssh_includes),
            )
        )
        os.chmod(config, 0o600)
        self._connected = True
        self._say(f"connecting to {' -> '.join(req.jump)}")
        session_dir, remote_user = self._prepare_remote()
        self.session_dir = session_dir
        job = dataclasses.replace(req.job, output=f"{session_dir}/job.log")
        script = self.slurm.job_script(job, render_body(req.app, req.env, session_dir))
        job_id = self.job_id = self.slurm.submit(script, request=job)
        self._say(f"submitted job {job_id}")

        status, endpoint = self._wait_for_endpoint(job_id)
        node = endpoint.get("host", "")
        # Site policy: SSH only to a node SLURM allocated to this user's job.
        if status.user and status.user != remote_user:
            raise JobEnded(f"job {job_id} belongs to {status.user}, not {remote_user}")
        if node not in status.nodes:
            raise JobEnded(
                f"job {job_id} reports host {node!r}, which is not in its nodes {status.nodes}",
                hint="the node's hostname differs from SLURM's node name; please report this",
            )
        socket_path = endpoint["socket"]
        port = choose_local_port(req.local_port)
        self._say(f"job {job_id} is running on {node}; opening the tunnel on port {port}")
        tunnel = self.tunnel = spawn(
            self.ssh.forward_argv(node, port, socket_path), log_path=self._local_dir / "tunnel.log"
        )
        # Recorded so that whoever cleans up after a hard kill can end it by PID.
        (self._local_dir / "tunnel.pid").write_text(f"{tunnel.pid} {tunnel.start_ticks}\n")
        self._wait_reachable(tunnel, port)
        url = f"http://127.0.0.1:{port}{req.app.url_path}?token={self.token}"
        self.info = SessionInfo(
            session_id=self.session_id,
            job_id=job_id,
            node=node,
            local_port=port,
            url=url,
            remote_socket=socket_path,
            session_dir=session_dir,
            time_left_s=status.time_left_s,
        )
        return self.info

    def close(self) -> None:
        """Tear down in reverse order; every step runs even if an earlier one fails."""
        if self.tunnel is not None:
            with contextlib.suppress(NodetunnelError):
                self.tunnel.stop(timeout_s=3)
            self.tunnel = None
        if self.job_id is not None and not self.req.keep:
            with contextlib.suppress(NodetunnelError):
                self._say(f"cancelling job {self.job_id}")
                self.slurm.cancel(self.job_id)
        if self._connected:
            self.ssh.close()
        shutil.rmtree(self._local_dir, ignore_errors=True)

    # ------------------------------------------------------------- steps
    def _prepare_remote(self) -> tuple[str, str]:
        """Create the private session directory with the token; return (its path, user name)."""
        script = (
            'umask 077; d="$HOME/$1/$2"; mkdir -p "$d" && chmod 700 "$d" && '
            'cat > "$d/token" && printf "%s\\n%s\\n" "$d" "$(id -un)"'
        )
        out = self.ssh.run(
            ["sh", "-c", script, "sh", SESSIONS_DIR, self.session_id], input=self.token
        ).stdout.splitlines()
        return out[0], out[1]

    def _read_remote(self, name: str) -> str | None:
        done = self.ssh.run(["cat", f"{self.session_dir}/{name}"], check=False, timeout_s=30)
        return done.stdout if done.returncode == 0 else None

    def _log_tail(self) -> str:
        done = self.ssh.run(
            ["tail", "-n", "15", f"{self.session_dir}/job.log"], check=False, timeout_s=30
        )
        return done.stdout.strip()

    def _wait_for_endpoint(self, job_id: str) -> tuple[JobStatus, dict[str, str]]:
        last_line = ""

        def probe() -> tuple[JobStatus, dict[str, str]] | None:
            nonlocal last_line
            status = self.slurm.status([job_id])[job_id]
            if status.state == JobState.PENDING:
                line = (
                    f"job {job_id} is waiting in the queue ({status.reason or 'no reason given'})"
                )
            else:
                line = f"job {job_id} is {status.state.value.lower()}" + (
                    f" on {','.join(status.nodes)}" if status.nodes else ""
                )
            if line != last_line:
                self._say(line)
                last_line = line
            error = self._read_remote("error") if status.state != JobState.PENDING else None
            if error or not status.state.active:
                tail = self._log_tail()
                reason = (error or "").strip() or f"the job ended ({status.state.value})"
                raise JobEnded(
                    f"job {job_id} failed before the app was ready: {reason}"
                    + (f"\n--- end of the job log ---\n{tail}" if tail else ""),
                    hint="fix the cause above and run the command again",
                )
            if status.state == JobState.RUNNING:
                text = self._read_remote("endpoint")
                if text:
                    return status, parse_endpoint(text)
            raise NotReady(line)

        return wait_until(
            probe,
            timeout_s=self.req.start_timeout_s,
            what=f"job {job_id} to start the app",
            interval_s=0.3,
            max_interval_s=3.0,
            hint="the cluster may be busy: raise --timeout, or ask for fewer resources",
        )

    def _wait_reachable(self, tunnel: ProcessRef, port: int) -> None:
        path = self.req.app.status_path

        def probe() -> bool:
            if not tunnel.alive():
                log = (self._local_dir / "tunnel.log").read_text(errors="replace").strip()
                if "Address already in use" in log or "cannot listen" in log:
                    raise UsageError(
                        f"local port {port} was taken just now by another program",
                        hint="run the command again (or choose a port with --port)",
                    )
                raise JobEnded(f"the SSH tunnel to the node exited: {log.splitlines()[-1:] or '?'}")
            code = probe_http(port, path, self.token)
            if code == 200:
                return True
            raise NotReady(f"HTTP {code} from {path}")

        wait_until(
            probe, timeout_s=60, what="the app to answer through the tunnel", interval_s=0.05
        )

    def watch(self, *, poll_s: float = 0.5) -> str:
        """Block until the tunnel exits; return why. Ctrl-C propagates.

        SLURM is not polled while the tunnel is healthy: the node's sshd session
        belongs to the job (pam_slurm_adopt), so the job's end ends the tunnel,
        and keepalives end it when the path dies. Then one query tells which.
        """
        tunnel, job_id = self.tunnel, self.job_id
        if tunnel is None or job_id is None:
            raise RuntimeError("watch() needs a started session")
        while tunnel.alive():
            time.sleep(poll_s)
        status = self.slurm.status([job_id])[job_id]
        if not status.state.active:
            return f"job {job_id} ended ({status.state.value})"
        return "the SSH tunnel dropped"
