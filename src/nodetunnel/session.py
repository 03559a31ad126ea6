"""One app session: submit, wait, verify, tunnel, probe — and always clean up.

:class:`Session` is a context manager: whatever happens inside (an error,
Ctrl-C), leaving it closes the tunnel and the shared SSH connections and
cancels the job unless ``keep`` was asked for. A second Ctrl-C cannot cut the
clean-up short. The library reports progress through a callback and never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import http.client
import os
import secrets
import shlex
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from .apps.base import App
from .errors import JobFailed, NodetunnelError, SshError, TunnelError, UsageError
from .payload import SOCKET_DIR_TEMPLATE, Environment, parse_endpoint, render_body
from .proc import NotReady, ProcessRef, spawn, wait_until
from .scheduler.base import JobRequest, JobState, JobStatus
from .scheduler.slurm import Slurm
from .ssh import (
    OpenSSH,
    SshSettings,
    check_control_dir,
    close_masters,
    default_includes,
    private_runtime_dir,
    render_config,
)
from .state import SessionRecord, SessionStore

Progress = Callable[[str], None]
DEFAULT_PORT = 8888
SESSIONS_DIR = ".nodetunnel/sessions"  # relative to the cluster home
JOB_CHECK_INTERVAL_S = 60.0  # while the tunnel is healthy (sites without pam_slurm_adopt)
RECONNECT_TIMEOUT_S = 300.0
RECONNECT_ATTEMPT_S = 4.0
_MARK = "nodetunnel-"  # prefix of the lines we parse from remote output
# A job that ran and is back in the queue (requeued): its app is lost.
_REQUEUED = frozenset(
    {JobState.PENDING, JobState.REQUEUED, JobState.REQUEUE_HOLD, JobState.REQUEUE_FED}
)


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
    tcp: bool = False  # listen on 127.0.0.1:PORT on the node instead of a Unix socket
    ssh: SshSettings = dataclasses.field(default_factory=SshSettings)
    job_check_interval_s: float = JOB_CHECK_INTERVAL_S


@dataclasses.dataclass
class SessionInfo:
    session_id: str
    job_id: str
    node: str
    local_port: int
    url: str
    remote: str  # what the tunnel forwards to on the node: a socket path or 127.0.0.1:PORT
    session_dir: str
    time_left_s: int | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def port_is_free(port: int) -> bool:
    """Whether ssh could listen on 127.0.0.1:port (it sets SO_REUSEADDR, so we do too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while a step that must not be cut short runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def job_name_for(app: App, session_id: str) -> str:
    """A unique job name: a submit whose answer is lost can still be found and cancelled."""
    return f"nodetunnel-{app.name}-{session_id}"


def plan(req: LaunchRequest) -> str:
    """What a session would do: the batch script and the ssh commands (for --dry-run)."""
    session_dir = f"/HOME/{SESSIONS_DIR}/nt-XXXXXXXX"
    job = dataclasses.replace(
        req.job, output=f"{session_dir}/job.log", job_name=job_name_for(req.app, "nt-XXXXXXXX")
    )
    ssh = OpenSSH(req.jump, config_path=Path("SESSION_DIR/ssh_config"), user=req.user)
    script = Slurm(ssh).job_script(job, render_body(req.app, req.env, session_dir, tcp=req.tcp))
    submit = ssh.command_argv(ssh.submit_host, ssh.jump[:-1], list(Slurm.SUBMIT_ARGV))
    port = req.local_port or DEFAULT_PORT
    tunnel = ssh.forward_argv("NODE", port, SOCKET_DIR_TEMPLATE + "/s")
    return "\n".join(
        [
            "# HOME stands for your home directory on the cluster, NODE for the job's node,",
            "# SESSION_DIR for this session's private directory on this machine.",
            f"# batch script, sent on stdin to sbatch on {ssh.submit_host}:",
            script,
            "# submit:",
            shlex.join(submit),
            "# tunnel, once the job runs on NODE:",
            shlex.join(tunnel),
            "",
        ]
    )


def redirect_page(path: Path, url: str, title: str) -> Path:
    """Write a 0600 page at ``path`` that sends the browser to ``url`` (token stays out of argv)."""
    href = html.escape(url, quote=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            f'<!DOCTYPE html><meta http-equiv="refresh" content="0; url={href}">'
            f'<a href="{href}">Open {html.escape(title)}</a>\n'
        )
    return path


def write_ssh_configs(
    local_dir: Path, settings: SshSettings, extra_includes: Sequence[str]
) -> None:
    """A fresh private directory with the session's ssh config and its no-sharing twin."""
    check_control_dir(local_dir)
    close_masters(local_dir)  # left, with the directory, by a process killed hard
    shutil.rmtree(local_dir, ignore_errors=True)
    local_dir.mkdir(mode=0o700)
    includes = default_includes(extra_includes)
    diagnose = dataclasses.replace(settings, multiplex=False, batch_mode=True)
    for name, how in (("ssh_config", settings), ("ssh_config.diagnose", diagnose)):
        fd = os.open(local_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(render_config(control_dir=local_dir, settings=how, includes=includes))


def open_ssh(local_dir: Path, jump: Sequence[str], user: str | None) -> OpenSSH:
    return OpenSSH(
        jump,
        config_path=local_dir / "ssh_config",
        user=user,
        diagnose_config_path=local_dir / "ssh_config.diagnose",
    )


@contextlib.contextmanager
def cluster_link(
    jump: Sequence[str], user: str | None, ssh_includes: Sequence[str] = ()
) -> Iterator[OpenSSH]:
    """A short-lived connection to a cluster's submit host (for list and stop)."""
    local_dir = private_runtime_dir() / ("q-" + secrets.token_hex(4))
    write_ssh_configs(local_dir, SshSettings(), ssh_includes)
    ssh = open_ssh(local_dir, jump, user)
    try:
        yield ssh
    finally:
        ssh.close()
        shutil.rmtree(local_dir, ignore_errors=True)


def process_alive(pid: int | None, start: int | None) -> bool:
    return bool(pid and start and ProcessRef(pid, start).alive())


def reconcile(store: SessionStore) -> list[dict[str, Any]]:
    """Every stored session with its job's state: one SLURM query per cluster.

    Sessions whose job has ended are reported as ENDED and forgotten, and a
    tunnel left running for them is ended.
    """
    groups: dict[tuple[tuple[str, ...], str | None, tuple[str, ...]], list[SessionRecord]] = {}
    for record in store.all():
        key = (tuple(record.jump), record.user, tuple(record.ssh_includes))
        groups.setdefault(key, []).append(record)
    rows: list[dict[str, Any]] = []
    for (jump, user, includes), records in groups.items():
        statuses: dict[str, JobStatus] = {}
        problem = ""
        try:
            with cluster_link(jump, user, includes) as ssh:
                statuses = Slurm(ssh).status([r.job_id for r in records])
        except NodetunnelError as exc:
            problem = exc.message
        for record in records:
            status = statuses.get(record.job_id)
            tunnel_up = process_alive(record.tunnel_pid, record.tunnel_start)
            state = status.state.value if status else "UNKNOWN"
            if status is not None and status.state.finished:
                state = "ENDED"
                if tunnel_up and record.tunnel_pid and record.tunnel_start:
                    with contextlib.suppress(NodetunnelError):
                        ProcessRef(record.tunnel_pid, record.tunnel_start).stop(timeout_s=3)
                if not process_alive(record.pid, record.pid_start):
                    local_dir = private_runtime_dir() / record.session_id
                    close_masters(local_dir)
                    shutil.rmtree(local_dir, ignore_errors=True)
                store.remove(record.session_id)
                tunnel_up = False
            row = record.public()
            row.update(
                state=state,
                time_left_s=status.time_left_s if status else None,
                tunnel="up" if tunnel_up else "down",
                attached=process_alive(record.pid, record.pid_start),
                problem=problem,
            )
            rows.append(row)
    return rows


def job_log_argv(record: SessionRecord, *, follow: bool, lines: int = 100) -> list[str]:
    """The command (for the submit host) that shows the end of a session's job log."""
    return ["tail", "-n", str(lines), *(["-F"] if follow else []), f"{record.session_dir}/job.log"]


def end_orphan_tunnel(record: SessionRecord) -> bool:
    """End a tunnel left by a keeper that died (e.g. kill -9); True if there was one."""
    if process_alive(record.pid, record.pid_start) or not process_alive(
        record.tunnel_pid, record.tunnel_start
    ):
        return False
    if record.tunnel_pid and record.tunnel_start:
        ProcessRef(record.tunnel_pid, record.tunnel_start).stop(timeout_s=5)
    return True


def stop_session(store: SessionStore, record: SessionRecord) -> str:
    """End a session from anywhere: its keeper process, its tunnel, its job, its record."""
    for pid, start in ((record.pid, record.pid_start), (record.tunnel_pid, record.tunnel_start)):
        if pid and start:
            ProcessRef(pid, start).stop(timeout_s=10)  # the keeper cleans up as on Ctrl-C
    local_dir = private_runtime_dir() / record.session_id
    close_masters(local_dir)  # if its keeper was killed hard
    shutil.rmtree(local_dir, ignore_errors=True)
    with cluster_link(record.jump, record.user, record.ssh_includes) as ssh:
        Slurm(ssh).cancel(record.job_id)
        if record.session_dir:
            ssh.run(["rm", "-rf", "--", record.session_dir], check=False, timeout_s=30)
    store.remove(record.session_id)
    return f"stopped {record.session_id} (job {record.job_id} cancelled)"


class Session:
    """An app in a SLURM job on a compute node, forwarded to 127.0.0.1 on this machine."""

    def __init__(
        self,
        req: LaunchRequest,
        *,
        progress: Progress | None = None,
        store: SessionStore | None = None,
        cluster: str | None = None,
        session_id: str | None = None,
    ) -> None:
        self.session_id = session_id or "nt-" + secrets.token_hex(4)
        self.store = store
        self.cluster = cluster
        self.job_name = job_name_for(req.app, self.session_id)
        self.req = dataclasses.replace(
            req, job=dataclasses.replace(req.job, job_name=self.job_name)
        )
        self._say = progress or (lambda _m: None)
        self.token = secrets.token_urlsafe(32)
        self._local_dir = private_runtime_dir() / self.session_id
        self.ssh = open_ssh(self._local_dir, req.jump, req.user)
        self.slurm = Slurm(self.ssh)
        self._connected = False
        self._submitted = False  # sbatch was started (its answer may be lost)
        self.job_id: str | None = None
        self.tunnel: ProcessRef | None = None
        self.info: SessionInfo | None = None
        self.session_dir = ""
        self.reconnects = 0
        self.reconnect_timeout_s = RECONNECT_TIMEOUT_S
        self._record: SessionRecord | None = None

    # ----------------------------------------------------------- lifecycle
    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except NodetunnelError as cleanup:
            if exc is None:
                raise
            self._say(f"clean-up problem: {cleanup.message}")

    @classmethod
    def resume(
        cls, record: SessionRecord, *, progress: Progress | None = None, store: SessionStore
    ) -> Session:
        """A session for an existing job (from its record), to re-open its tunnel."""
        from .apps import APPS

        req = LaunchRequest(
            app=APPS[record.app],
            jump=tuple(record.jump),
            job=JobRequest(),
            user=record.user,
            ssh_includes=tuple(record.ssh_includes),
            local_port=record.local_port or None,
            keep=True,  # re-attaching never cancels the job; 'nodetunnel stop' does
            job_check_interval_s=record.job_check_interval_s or JOB_CHECK_INTERVAL_S,
        )
        session = cls(req, progress=progress, store=store, cluster=record.cluster,
                      session_id=record.session_id)  # fmt: skip
        session.token = record.token
        session.job_id = record.job_id
        session.session_dir = record.session_dir
        session._record = record
        return session

    def _connect(self) -> None:
        """Write this session's ssh configs; the first command then authenticates each hop."""
        write_ssh_configs(self._local_dir, self.req.ssh, self.req.ssh_includes)
        self._connected = True

    def start(self) -> SessionInfo:
        req = self.req
        if req.local_port is not None:
            choose_local_port(req.local_port)  # a taken --port fails before anything is submitted
        self._connect()
        self._say(f"connecting to {' -> '.join(req.jump)}")
        session_dir, remote_user = self._prepare_remote()
        self.session_dir = session_dir
        job = dataclasses.replace(req.job, output=f"{session_dir}/job.log")
        self._submitted = True
        job_id = self.job_id = self.slurm.submit_job(
            job, render_body(req.app, req.env, session_dir, tcp=req.tcp)
        )
        self._say(f"submitted job {job_id}")

        status, endpoint = self._wait_for_endpoint(job_id)
        node = endpoint.get("host", "")
        # Site policy: SSH only to a node SLURM allocated to this user's running job.
        if status.user and status.user != remote_user:
            raise JobFailed(
                job_id,
                status.state.value,
                message=f"job {job_id} belongs to {status.user}, not to you ({remote_user})",
                hint="this should not happen; please report it with the output of --debug",
            )
        if node not in status.nodes:
            raise JobFailed(
                job_id,
                status.state.value,
                message=f"job {job_id} reports node {node!r}, which is not in its node list "
                f"{list(status.nodes)}",
                hint="nodetunnel only connects to nodes SLURM gave the job; please report this",
            )
        # A Unix socket, or (--tcp, old app versions) a loopback port on the node.
        remote = endpoint.get("socket") or f"127.0.0.1:{int(endpoint.get('port', '0'))}"
        port = choose_local_port(req.local_port)
        self._say(f"job {job_id} is running on {node}; opening the tunnel on port {port}")
        self._open_tunnel(node, port, remote)
        url = f"http://127.0.0.1:{port}{req.app.url_path}?token={self.token}"
        self.info = SessionInfo(
            session_id=self.session_id,
            job_id=job_id,
            node=node,
            local_port=port,
            url=url,
            remote=remote,
            session_dir=session_dir,
            time_left_s=status.time_left_s,
        )
        self._save_record(status)
        return self.info

    def reattach(self) -> SessionInfo:
        """Re-open the tunnel of a running job from its record (same port if it is free)."""
        record = self._record
        if record is None or self.job_id is None:
            raise RuntimeError("reattach() needs a session made by Session.resume()")
        job_id = self.job_id
        self._connect()
        self._say(f"connecting to {' -> '.join(self.req.jump)}")
        status = self.slurm.status_of(job_id)
        if status.state != JobState.RUNNING:
            if status.state.finished and self.store is not None:
                self.store.remove(self.session_id)
            raise JobFailed(
                job_id,
                status.state.value,
                message=f"session {self.session_id} cannot be attached: job {job_id} is "
                f"{status.state.value}",
                hint="see 'nodetunnel list' for the sessions that are still running",
            )
        # Site policy: only the node SLURM gave this job.
        if record.node not in status.nodes:
            raise JobFailed(
                job_id,
                status.state.value,
                message=f"job {job_id} no longer runs on {record.node} ({list(status.nodes)})",
                hint="stop the session with 'nodetunnel stop' and start a new one",
            )
        port = record.local_port if record.local_port and port_is_free(record.local_port) else 0
        port = port or choose_local_port(None)
        self._say(f"job {job_id} is running on {record.node}; opening the tunnel on port {port}")
        self._open_tunnel(record.node, port, record.remote)
        self.info = SessionInfo(
            session_id=self.session_id,
            job_id=job_id,
            node=record.node,
            local_port=port,
            url=f"http://127.0.0.1:{port}{self.req.app.url_path}?token={self.token}",
            remote=record.remote,
            session_dir=record.session_dir,
            time_left_s=status.time_left_s,
        )
        self._save_record(status)
        return self.info

    def log_path(self) -> Path:
        """Where a background (detached) session writes its progress."""
        return (self.store.root if self.store else self._local_dir) / f"{self.session_id}.log"

    def hand_over_to(self, pid: int) -> None:
        """Record process ``pid`` (a forked child) as the one keeping this session."""
        child = ProcessRef.of(pid)
        if self.store is None or self._record is None or child is None:
            return
        self._record = dataclasses.replace(self._record, pid=child.pid, pid_start=child.start_ticks)
        self.store.save(self._record)

    def now_in_background(self) -> None:
        """In the forked child: nobody watches now, so reconnect for as long as the job may run."""
        me = ProcessRef.of(os.getpid())
        if self._record is not None and me is not None:  # as the parent recorded it
            self._record = dataclasses.replace(self._record, pid=me.pid, pid_start=me.start_ticks)
        left = self.info.time_left_s if self.info and self.info.time_left_s else None
        self.reconnect_timeout_s = max(RECONNECT_TIMEOUT_S, left or 7 * 24 * 3600)
        self._say(f"session {self.session_id}: keeping the tunnel up in the background")

    def _save_record(self, status: JobStatus) -> None:
        info = self.info
        if self.store is None or info is None:
            return
        me = ProcessRef.of(os.getpid())
        tunnel = self.tunnel
        record = SessionRecord(
            session_id=self.session_id,
            app=self.req.app.name,
            job_id=info.job_id,
            jump=list(self.req.jump),
            cluster=self.cluster,
            user=self.req.user,
            ssh_includes=list(self.req.ssh_includes),
            node=info.node,
            remote=info.remote,
            local_port=info.local_port,
            url=info.url,
            token=self.token,
            session_dir=info.session_dir,
            url_path=self.req.app.url_path,
            status_path=self.req.app.status_path,
            created=self._record.created if self._record else time.time(),
            walltime_end=time.time() + status.time_left_s if status.time_left_s else None,
            keep=self.req.keep,
            pid=me.pid if me else None,
            pid_start=me.start_ticks if me else None,
            tunnel_pid=tunnel.pid if tunnel else None,
            tunnel_start=tunnel.start_ticks if tunnel else None,
            reconnects=self.reconnects,
            job_check_interval_s=self.req.job_check_interval_s,
        )
        self._record = record
        self.store.save(record)

    def close(self) -> None:
        """Tear down in reverse order; every step runs even if an earlier one fails."""
        problems: list[str] = []
        with sigint_deferred():
            if self.tunnel is not None:
                try:
                    self.tunnel.stop(timeout_s=3)
                except NodetunnelError as exc:
                    problems.append(f"the tunnel (PID {self.tunnel.pid}): {exc.message}")
                self.tunnel = None
            if self._submitted and not self.req.keep:
                try:
                    if self.job_id is not None:
                        self._say(f"cancelling job {self.job_id}")
                        self.slurm.cancel(self.job_id)
                    else:
                        self.slurm.cancel_named(self.job_name)
                except NodetunnelError as exc:
                    what = self.job_id or f"named {self.job_name}"
                    problems.append(f"job {what} may still be running: {exc.message}")
            if self.session_dir and not self.req.keep:
                with contextlib.suppress(NodetunnelError):
                    self.ssh.run(["rm", "-rf", "--", self.session_dir], check=False, timeout_s=30)
            if self._connected:
                self.ssh.close()
            shutil.rmtree(self._local_dir, ignore_errors=True)
            if self.store is not None and self._record is not None:
                try:
                    if self.req.keep:  # the job runs on, detached: 'nodetunnel attach' resumes it
                        self.store.save(dataclasses.replace(
                            self._record, pid=None, pid_start=None, tunnel_pid=None,
                            tunnel_start=None))  # fmt: skip
                    else:
                        self.store.remove(self.session_id)
                except (NodetunnelError, OSError) as exc:
                    problems.append(f"the session record: {exc}")
        if problems:
            raise NodetunnelError(
                "clean-up incomplete: " + "; ".join(problems),
                hint="check with 'squeue --me' on the cluster and scancel what is left",
            )

    def browser_file(self) -> Path:
        """A 0600 page that redirects to the URL: opening it keeps the token out of argv."""
        if self.info is None:
            raise RuntimeError("browser_file() needs a started session")
        return redirect_page(self._local_dir / "open.html", self.info.url, self.req.app.name)

    # ------------------------------------------------------------- steps
    def _prepare_remote(self) -> tuple[str, str]:
        """Create the private session directory with the token; return (its path, user name)."""
        script = (
            'umask 077; d="$HOME/$1/$2"; mkdir -p "$d" && chmod 700 "$d" && cat > "$d/token" && '
            'printf "\\n$3dir=%s\\n$3user=%s\\n" "$d" "$(id -un)"'
        )
        out = self.ssh.run(
            ["sh", "-c", script, "sh", SESSIONS_DIR, self.session_id, _MARK], input=self.token
        ).stdout
        # Login scripts may print; only our marked lines count.
        fields = parse_endpoint("\n".join(ln for ln in out.splitlines() if ln.startswith(_MARK)))
        try:
            return fields[_MARK + "dir"], fields[_MARK + "user"]
        except KeyError:
            raise NodetunnelError(
                f"could not create the session directory on {self.ssh.submit_host}: "
                f"unexpected output {out[-300:]!r}",
                hint="check that your home directory there is writable",
            ) from None

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
            status = self.slurm.status_of(job_id)
            line = f"job {job_id}: {status.describe()}"
            if line != last_line:
                last_line = line
                if status.state == JobState.PENDING:  # one estimate per change of reason
                    estimate = self.slurm.start_estimate(job_id)
                    if estimate:
                        line += f", expected to start {estimate}"
                self._say(line)
            error = self._read_remote("error") if status.state != JobState.PENDING else None
            if error or status.state.finished:
                tail = self._log_tail()
                reason = (error or "").strip() or f"the job ended ({status.state.value})"
                raise JobFailed(
                    job_id,
                    status.state.value,
                    message=f"job {job_id} failed before the app was ready: {reason}"
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

    def _open_tunnel(
        self, node: str, port: int, remote: str, *, reach_timeout_s: float = 60
    ) -> None:
        with sigint_deferred():  # never leave a tunnel running that close() does not know
            tunnel = self.tunnel = spawn(
                self.ssh.forward_argv(node, port, remote),
                log_path=self._local_dir / "tunnel.log",
            )
            # Recorded so that whoever cleans up after a hard kill can end it by PID.
            (self._local_dir / "tunnel.pid").write_text(f"{tunnel.pid} {tunnel.start_ticks}\n")
        self._wait_reachable(tunnel, port, reach_timeout_s)

    def _wait_reachable(self, tunnel: ProcessRef, port: int, timeout_s: float = 60) -> None:
        path = self.req.app.status_path

        def probe() -> bool:
            if not tunnel.alive():
                log = (self._local_dir / "tunnel.log").read_text(errors="replace").strip()
                if "Address already in use" in log or "cannot listen" in log:
                    raise UsageError(
                        f"local port {port} was taken just now by another program",
                        hint="run the command again (or choose a port with --port)",
                    )
                last = log.splitlines()[-1] if log else "no output"
                raise TunnelError(
                    f"the SSH tunnel to the node exited: {last}",
                    hint="run again with --debug to see the ssh command, and try it by hand",
                )
            code = probe_http(port, path, self.token)
            if code == 200:
                return True
            raise NotReady(f"HTTP {code} from {path}")

        wait_until(
            probe, timeout_s=timeout_s, what="the app to answer through the tunnel", interval_s=0.05
        )

    def watch(self, *, poll_s: float = 0.5) -> str:
        """Keep the tunnel up until the job ends; return why it ended. Ctrl-C propagates.

        The tunnel's own failure is the main signal: keepalives end it when the
        path dies, and where pam_slurm_adopt is used the job's end ends it too.
        SLURM is asked then, and otherwise every ``job_check_interval_s`` (a minute
        by default). A dropped tunnel is re-opened on the same local port, so the
        browser tab keeps working.
        """
        info = self.info
        if info is None or self.job_id is None:
            raise RuntimeError("watch() needs a started session")
        job_id = self.job_id
        next_check = time.monotonic() + self.req.job_check_interval_s
        while True:
            tunnel = self.tunnel
            if tunnel is not None and tunnel.alive():
                if time.monotonic() < next_check:
                    time.sleep(poll_s)
                    continue
                next_check = time.monotonic() + self.req.job_check_interval_s
            finished = self._job_finished(job_id)
            if finished:
                return finished
            if tunnel is not None and tunnel.alive():
                continue
            self._reconnect(info)

    def _job_finished(self, job_id: str) -> str | None:
        """Why the job has ended, or None if it runs or SLURM cannot be asked now (no network)."""
        try:
            status = self.slurm.status_of(job_id)
        except SshError:
            return None  # the path is down; reconnecting will tell
        if status.state.finished:
            return f"job {job_id} ended ({status.state.value})"
        if status.state in _REQUEUED:  # watch() runs only after the job ran
            return f"job {job_id} was requeued by SLURM ({status.state.value}); its app is gone"
        return None

    def _reconnect(self, info: SessionInfo) -> None:
        self._say("the tunnel dropped; reconnecting")
        started = time.monotonic()
        if self.tunnel is not None:
            with contextlib.suppress(NodetunnelError):
                self.tunnel.stop(timeout_s=3)
            self.tunnel = None

        def attempt() -> bool:
            try:
                # A short attempt: one started while the path was down may wait on TCP
                # retransmissions long after it is back; a fresh one connects at once.
                self._open_tunnel(info.node, info.local_port, info.remote,
                                  reach_timeout_s=RECONNECT_ATTEMPT_S)  # fmt: skip
            except NodetunnelError as exc:
                if self.tunnel is not None:
                    with contextlib.suppress(NodetunnelError):
                        self.tunnel.stop(timeout_s=3)
                    self.tunnel = None
                if self._job_finished(info.job_id):
                    return True  # nothing to reconnect to; watch() reports the end
                raise NotReady(exc.message) from exc
            return True

        wait_until(
            attempt,
            timeout_s=self.reconnect_timeout_s,
            what="the tunnel to come back",
            # Short and jittered: the tab should work again within seconds of the network.
            interval_s=0.2,
            max_interval_s=1.0,
            jitter_s=0.3,
            hint="check your network; the job keeps running (nodetunnel will cancel it on exit "
            "unless --keep was given)",
        )
        self.reconnects += 1
        self._say(f"tunnel back after {time.monotonic() - started:.1f} s")
        tunnel = self._live_tunnel()  # set again by attempt()
        if self.store is not None and self._record is not None and tunnel is not None:
            self._record = dataclasses.replace(
                self._record, tunnel_pid=tunnel.pid, tunnel_start=tunnel.start_ticks,
                reconnects=self.reconnects,
            )  # fmt: skip
            self.store.save(self._record)

    def _live_tunnel(self) -> ProcessRef | None:
        return self.tunnel
