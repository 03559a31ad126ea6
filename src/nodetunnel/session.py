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
import math
import os
import re
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
from .config import DEFAULT_WARN_BEFORE_S
from .errors import (
    JobFailed,
    NodetunnelError,
    PortInUse,
    SshError,
    TunnelError,
    UsageError,
    WaitTimeout,
)
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
RECONNECT_TIMEOUT_S = 300.0  # in the foreground; a detached session tries as long as the job runs
FAST_RECONNECT_S = 300.0  # retried about every second for this long, then less often
SLOW_RECONNECT_INTERVAL_S = 15.0
RECONNECT_ATTEMPT_S = 4.0
HEARTBEAT_RETRY_S = 5.0
PORT_ATTEMPTS = 5
RUNNING_CHECK_S = 3.0  # while a running job's app starts: how often SLURM is asked
LOG_KEEP_S = 7 * 24 * 3600.0  # a detached session's log, after the session has gone
HEALTH_PROBE_S = 10.0  # an HTTP request through the tunnel this often
HEALTH_PROBE_TIMEOUT_S = 5.0
HEALTH_PROBE_FAILURES = 2  # unanswered in a row: the tunnel is re-opened
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
    warn_before_s: float | None = DEFAULT_WARN_BEFORE_S  # before the time limit (None: never)
    lease_s: float | None = None  # the job ends itself when nobody checks in for this long
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


def choose_local_port(requested: int | None, *, avoid: Sequence[int] = ()) -> int:
    """``requested`` if free (else an error), else 8888 if free, else any free port."""
    if requested is not None:
        if not port_is_free(requested):
            raise PortInUse(
                f"local port {requested} is already in use on this machine",
                hint="choose another with --port, or leave --port out to pick a free one",
            )
        return requested
    if DEFAULT_PORT not in avoid and port_is_free(DEFAULT_PORT):
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
    script = Slurm(ssh).job_script(
        job, render_body(req.app, req.env, session_dir, tcp=req.tcp, lease_s=req.lease_s)
    )
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


def heartbeat_interval_s(lease_s: float) -> float:
    """How often a keeper checks in: three times per lease, at most every 5 minutes."""
    return min(300.0, max(2.0, lease_s / 3))


def _duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def walltime_warning(job_id: str, walltime_end: float) -> str:
    at = time.strftime("%H:%M", time.localtime(walltime_end))
    left = _duration_text(walltime_end - time.time())
    return (
        f"job {job_id} reaches its time limit in {left} (at {at}): SLURM will end it then, "
        "so save your work"
    )


_END_WORDS = {
    JobState.TIMEOUT: "reached its time limit",
    JobState.CANCELLED: "was cancelled",
    JobState.NODE_FAIL: "ended because its node failed",
    JobState.PREEMPTED: "was preempted",
    JobState.OUT_OF_MEMORY: "ran out of memory",
    JobState.COMPLETED: "ended (the app exited)",
    JobState.FAILED: "failed (the app exited with an error)",
}


def job_end_message(job_id: str, state: JobState) -> str:
    words = _END_WORDS.get(state, "ended")
    return f"job {job_id} {words} ({state.value}); the session is over"


def _marked(out: str) -> dict[str, str]:
    """The ``nodetunnel-KEY=VALUE`` lines of remote output (login scripts may print too)."""
    lines = (ln.removeprefix(_MARK) for ln in out.splitlines() if ln.startswith(_MARK))
    return parse_endpoint("\n".join(lines))


def _walltime_end(time_left_s: int | None) -> float | None:
    return time.time() + time_left_s if time_left_s else None


def process_alive(pid: int | None, start: int | None) -> bool:
    return bool(pid and start and ProcessRef(pid, start).alive())


@dataclasses.dataclass(frozen=True)
class ClusterRef:
    """How to reach a cluster's submit host (a profile's connection settings)."""

    name: str | None
    jump: tuple[str, ...]
    user: str | None = None
    ssh_includes: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[tuple[str, ...], str | None, tuple[str, ...]]:
        return (self.jump, self.user, self.ssh_includes)

    @classmethod
    def of(cls, record: SessionRecord) -> ClusterRef:
        return cls(record.cluster, tuple(record.jump), record.user, tuple(record.ssh_includes))


#: The name of every nodetunnel job (see :func:`job_name_for`).
JOB_NAME = re.compile(r"nodetunnel-(?P<app>[a-z0-9_]+)-(?P<session>nt-[0-9a-f]{8})")


def _by_cluster(
    records: Sequence[SessionRecord], clusters: Sequence[ClusterRef] = ()
) -> dict[tuple[tuple[str, ...], str | None, tuple[str, ...]],
          tuple[ClusterRef, list[SessionRecord]]]:  # fmt: skip
    """Records grouped by the cluster connection they need (plus ``clusters``, maybe empty)."""
    groups: dict[tuple[tuple[str, ...], str | None, tuple[str, ...]],
                 tuple[ClusterRef, list[SessionRecord]]] = {}  # fmt: skip
    for record in records:
        ref = ClusterRef.of(record)
        groups.setdefault(ref.key, (ref, []))[1].append(record)
    for ref in clusters:
        groups.setdefault(ref.key, (ref, []))
    return groups


def reconcile(store: SessionStore, clusters: Sequence[ClusterRef] = ()) -> list[dict[str, Any]]:
    """Every session with its job's state: one SLURM query per cluster.

    The clusters asked are those of the stored sessions and ``clusters``. A
    stored session whose job has ended is reported as ENDED and forgotten: a
    tunnel left running for it is ended, its directory on the cluster removed.
    A running nodetunnel job of the user that this machine does not know (one
    started on another laptop) is listed with ``here: False``; ``claim``
    makes it attachable.
    """
    groups = _by_cluster(store.all(), clusters)
    store.prune_logs(max_age_s=LOG_KEEP_S)
    rows: list[dict[str, Any]] = []
    stored = {r.job_id for _, records in groups.values() for r in records}
    for ref, records in groups.values():
        jobs: dict[str, tuple[str, JobStatus]] | None = None
        problem = ""
        try:
            with cluster_link(ref.jump, ref.user, ref.ssh_includes) as ssh:
                slurm = Slurm(ssh)
                jobs = slurm.named_jobs(JOB_NAME)
                # A stored job squeue --me did not show (another partition's view, a
                # renamed job) is asked about by id before it is taken for ended.
                missing = [r.job_id for r in records if r.job_id not in jobs]
                for job_id, status in (slurm.status(missing) if missing else {}).items():
                    jobs[job_id] = ("", status)
                gone = [r.session_dir for r in records if r.session_dir and
                        _status_in(jobs, r.job_id).state.finished]  # fmt: skip
                if gone:  # the ended jobs' private directories on the cluster
                    ssh.run(["rm", "-rf", "--", *gone], check=False, timeout_s=30)
        except NodetunnelError as exc:
            problem = exc.message
        for record in records:
            rows.append(_reconciled(store, record, jobs, problem))
        for job_id, (name, status) in (jobs or {}).items():
            m = JOB_NAME.fullmatch(name)
            if job_id in stored or m is None or status.state.finished:
                continue
            rows.append({
                "session_id": m["session"], "app": m["app"], "cluster": ref.name,
                "job_id": job_id, "state": status.state.value, "node": status.node or "",
                "time_left_s": status.time_left_s, "tunnel": "down", "attached": False,
                "url": "", "local_port": None, "here": False, "problem": problem,
            })  # fmt: skip
    return rows


def _status_in(jobs: dict[str, tuple[str, JobStatus]], job_id: str) -> JobStatus:
    return jobs[job_id][1] if job_id in jobs else JobStatus.ended(job_id)


def _reconciled(
    store: SessionStore,
    record: SessionRecord,
    jobs: dict[str, tuple[str, JobStatus]] | None,
    problem: str,
) -> dict[str, Any]:
    status = _status_in(jobs, record.job_id) if jobs is not None else None
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
        here=True,
        problem=problem,
    )
    return row


def claim(store: SessionStore, cluster: ClusterRef, key: str) -> SessionRecord:
    """Make a running session started elsewhere (another laptop) known here, to attach to it.

    ``key`` is its session id, a unique prefix of it, or its job id. Its token
    and endpoint are read from its private directory on the cluster.
    """
    with cluster_link(cluster.jump, cluster.user, cluster.ssh_includes) as ssh:
        jobs = Slurm(ssh).named_jobs(JOB_NAME)
        found = []
        for job_id, (name, status) in jobs.items():
            m = JOB_NAME.fullmatch(name)
            if m and not status.state.finished and (key == job_id or m["session"].startswith(key)):
                found.append((job_id, m, status))
        where = f"cluster {cluster.name}" if cluster.name else ssh.submit_host
        if not found:
            raise UsageError(
                f"no session {key!r} on this machine, nor running on {where}",
                hint="see 'nodetunnel list' (with --cluster NAME for sessions started elsewhere)",
            )
        if len(found) > 1:
            ids = ", ".join(m["session"] for _, m, _ in found)
            raise UsageError(f"{key!r} matches several sessions: {ids}", hint="give more of the id")
        ((job_id, m, status),) = found
        if store.matching(job_id):
            return store.find(job_id)  # known here already: never overwrite its record
        script = (
            'd="$HOME/$1/$2"; m="$3"; printf "\\n%sdir=%s\\n" "$m" "$d"; '
            '[ -r "$d/endpoint" ] && while IFS= read -r l; do printf "%s%s\\n" "$m" "$l"; '
            'done < "$d/endpoint"; [ -r "$d/lease" ] && printf "%slease=%s\\n" "$m" "$(cat "$d/lease")"; '
            'printf "%stoken=%s\\n" "$m" "$(cat "$d/token")"'
        )
        out = ssh.run(["sh", "-c", script, "sh", SESSIONS_DIR, m["session"], _MARK]).stdout
    get = _marked(out)
    if not get.get("host") or not get.get("token"):
        raise UsageError(
            f"session {m['session']} (job {job_id}, {status.state.value}) has not started its "
            "app yet",
            hint="try again once 'nodetunnel list' shows it RUNNING",
        )
    from .apps import APPS

    app = APPS.get(m["app"])
    if app is None:
        raise UsageError(
            f"session {m['session']} runs {m['app']!r}, which this nodetunnel does not know",
            hint="update nodetunnel on this machine",
        )
    record = SessionRecord(
        session_id=m["session"], app=app.name, job_id=job_id, jump=list(cluster.jump),
        cluster=cluster.name, user=cluster.user, ssh_includes=list(cluster.ssh_includes),
        node=get["host"], remote=get.get("socket") or f"127.0.0.1:{int(get.get('port', '0'))}",
        token=get["token"], session_dir=get["dir"], url_path=app.url_path,
        status_path=app.status_path, walltime_end=_walltime_end(status.time_left_s), keep=True,
        warn_before_s=DEFAULT_WARN_BEFORE_S,
        lease_s=float(get["lease"]) if get.get("lease", "").isdigit() else None,
    )  # fmt: skip
    store.save(record)
    return record


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


def stop_sessions(
    store: SessionStore, records: Sequence[SessionRecord]
) -> tuple[list[str], list[str]]:
    """End sessions from anywhere: keepers, tunnels, jobs, directories, records.

    Every keeper and tunnel is signalled first, so they shut down together;
    then, per cluster, one connection runs one ``scancel`` and one ``rm``.
    Returns what was stopped and, per cluster that could not be reached, what
    was not (those records are kept, so that ``stop`` can be run again).
    """
    procs = [
        ProcessRef(pid, start)
        for r in records
        for pid, start in ((r.pid, r.pid_start), (r.tunnel_pid, r.tunnel_start))
        if pid and start
    ]
    for proc in procs:
        proc.signal(signal.SIGTERM)  # a keeper cleans up as on Ctrl-C
    for proc in procs:
        proc.stop(timeout_s=10)
    for record in records:
        local_dir = private_runtime_dir() / record.session_id
        close_masters(local_dir)  # if its keeper was killed hard
        shutil.rmtree(local_dir, ignore_errors=True)
    groups = _by_cluster(records)
    done, problems = [], []
    for ref, group in groups.values():
        try:
            with cluster_link(ref.jump, ref.user, ref.ssh_includes) as ssh:
                Slurm(ssh).cancel_jobs([r.job_id for r in group])
                dirs = [r.session_dir for r in group if r.session_dir]
                if dirs:
                    ssh.run(["rm", "-rf", "--", *dirs], check=False, timeout_s=30)
        except NodetunnelError as exc:  # the other clusters' sessions are still stopped
            ids = ", ".join(f"{r.session_id} (job {r.job_id})" for r in group)
            problems.append(f"{ids} on {ref.name or ' -> '.join(ref.jump)}: {exc.message}")
            continue
        for record in group:
            store.remove(record.session_id)
            store.remove_log(record.session_id)
            done.append(f"stopped {record.session_id} (job {record.job_id} cancelled)")
    return done, problems


class Session:
    """An app in a SLURM job on a compute node, forwarded to 127.0.0.1 on this machine."""

    def __init__(
        self,
        req: LaunchRequest,
        *,
        progress: Progress | None = None,
        notice: Progress | None = None,
        store: SessionStore | None = None,
        cluster: str | None = None,
        session_id: str | None = None,
    ) -> None:
        """``progress`` gets the step-by-step lines; ``notice`` (default: ``progress``) the
        ones a user must see even when the steps are not shown: a drop, a time-limit warning.
        """
        self.session_id = session_id or "nt-" + secrets.token_hex(4)
        self.store = store
        self.cluster = cluster
        self.job_name = job_name_for(req.app, self.session_id)
        self.req = dataclasses.replace(
            req, job=dataclasses.replace(req.job, job_name=self.job_name)
        )
        self._say = progress or (lambda _m: None)
        self._notice = notice or self._say
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
        self._handed_over = False  # detach(): the background process owns everything now
        self._job_ended = False  # watch() saw the job end: nothing to cancel or keep
        self._requeued = False  # watch() saw SLURM requeue the job: cancel it, whatever keep says
        self._next_beat = math.inf  # when to check in next for the lease

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
            self._notice(f"clean-up problem: {cleanup.message}")

    @classmethod
    def resume(
        cls,
        record: SessionRecord,
        *,
        progress: Progress | None = None,
        notice: Progress | None = None,
        store: SessionStore,
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
            warn_before_s=record.warn_before_s,
            lease_s=record.lease_s,
            job_check_interval_s=record.job_check_interval_s or JOB_CHECK_INTERVAL_S,
        )
        session = cls(req, progress=progress, notice=notice, store=store, cluster=record.cluster,
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
            job, render_body(req.app, req.env, session_dir, tcp=req.tcp, lease_s=req.lease_s)
        )
        self._say(f"submitted job {job_id}")

        status, endpoint = self._wait_for_endpoint(job_id)
        if req.lease_s:  # the lease runs from now: check in before the tunnel is even up
            self._next_beat = 0.0
            self._beat_if_due()
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
        self._say(f"job {job_id} is running on {node}; opening the tunnel")
        port = self._open_tunnel_on_a_port(node, remote, req.local_port)
        url = self._url(port)
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
        self._save_record(walltime_end=_walltime_end(status.time_left_s))
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
        self._say(f"job {job_id} is running on {record.node}; opening the tunnel")
        port = self._open_tunnel_on_a_port(record.node, record.remote, None,
                                           prefer=record.local_port)  # fmt: skip
        self.info = SessionInfo(
            session_id=self.session_id,
            job_id=job_id,
            node=record.node,
            local_port=port,
            url=self._url(port),
            remote=record.remote,
            session_dir=record.session_dir,
            time_left_s=status.time_left_s,
        )
        self._save_record(walltime_end=_walltime_end(status.time_left_s))
        return self.info

    def log_path(self) -> Path:
        """Where a background (detached) session writes its progress."""
        if self.store is not None:
            return self.store.log_path(self.session_id)
        return self._local_dir / f"{self.session_id}.log"

    def detach(
        self, command: Sequence[str], *, env: dict[str, str] | None = None, timeout_s: float = 30
    ) -> ProcessRef:
        """Hand the session to a background process; return it once it has taken over.

        ``command + [session_id]`` is started in its own session with its output
        in :meth:`log_path`; it must take the session over with :meth:`adopt`,
        which records it as the keeper. It reuses this process's shared SSH
        connections and tunnel, so nothing is authenticated again. After the
        hand-over, leaving this session's ``with`` block touches nothing; if the
        hand-over fails, the error is raised and the usual clean-up runs.
        """
        if self.store is None or self.info is None:
            raise RuntimeError("detach() needs a started session with a store")
        store, log_path = self.store, self.log_path()
        # Started in the store: never in a directory whose Python files it could import.
        child = spawn([*command, self.session_id], log_path=log_path, env=env, cwd=store.root)

        def taken_over() -> bool:
            record = store.load(self.session_id)
            if (record.pid, record.pid_start) == (child.pid, child.start_ticks):
                return True
            if not child.alive():
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise TunnelError(
                    "the background process ended before it took the session over"
                    + (": " + " / ".join(tail) if tail else ""),
                    hint=f"see {log_path}; run without --detach to keep the session in this "
                    "terminal",
                )
            raise NotReady(f"process {child.pid} has not taken the session over yet")

        try:
            wait_until(taken_over, timeout_s=timeout_s, interval_s=0.05,
                       what="the background process to take the session over")  # fmt: skip
        except BaseException:
            with contextlib.suppress(NodetunnelError):
                child.stop(timeout_s=5)
            if not (self._local_dir / "ssh_config").exists():  # it had taken over, then ended
                self.tunnel = None
                self._connect()  # so that the clean-up can still reach the cluster
            raise
        self._handed_over = True  # the tunnel, connections, job and record are the child's now
        return child

    def adopt(self, from_pid: int) -> SessionInfo:
        """In the background process: take over the session that process ``from_pid`` started.

        Its tunnel and shared SSH connections are kept as they are (no new
        login); the record then names this process as the keeper, which tells
        ``from_pid`` that it may exit. From now on nobody watches the terminal,
        so the tunnel is re-opened for as long as the job may run.
        """
        record = self._record
        if record is None or self.job_id is None:
            raise RuntimeError("adopt() needs a session made by Session.resume()")
        if record.pid != from_pid:
            raise UsageError(
                f"session {self.session_id} is not being handed over by process {from_pid}",
                hint=f"use 'nodetunnel attach {self.session_id}'",
            )
        self._connected = True  # the configs and control sockets in the session dir stay
        if record.tunnel_pid and record.tunnel_start:
            tunnel = ProcessRef(record.tunnel_pid, record.tunnel_start)
            self.tunnel = tunnel if tunnel.alive() else None  # else watch() re-opens it
        left = int(record.walltime_end - time.time()) if record.walltime_end else None
        self.info = SessionInfo(
            session_id=self.session_id, job_id=self.job_id, node=record.node,
            local_port=record.local_port, url=record.url, remote=record.remote,
            session_dir=record.session_dir, time_left_s=left,
        )  # fmt: skip
        self.reconnect_timeout_s = max(RECONNECT_TIMEOUT_S, left or 7 * 24 * 3600)
        self._save_record(walltime_end=record.walltime_end)  # this tells from_pid to go
        if self.req.lease_s:  # no check-in was possible during the hand-over
            self._next_beat = 0.0
            self._beat_if_due()
        self._say(f"session {self.session_id}: keeping the tunnel up in the background "
                  f"(process {os.getpid()})")  # fmt: skip
        return self.info

    def _save_record(self, *, walltime_end: float | None) -> None:
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
            walltime_end=walltime_end,
            keep=self.req.keep,
            pid=me.pid if me else None,
            pid_start=me.start_ticks if me else None,
            tunnel_pid=tunnel.pid if tunnel else None,
            tunnel_start=tunnel.start_ticks if tunnel else None,
            reconnects=self.reconnects,
            warn_before_s=self.req.warn_before_s,
            lease_s=self.req.lease_s,
            job_check_interval_s=self.req.job_check_interval_s,
        )
        self._record = record
        self.store.save(record)

    def close(self) -> None:
        """Tear down in reverse order; every step runs even if an earlier one fails."""
        if self._handed_over:
            return
        problems: list[str] = []
        keep = self.req.keep and not self._job_ended
        with sigint_deferred():
            if self.tunnel is not None:
                try:
                    self.tunnel.stop(timeout_s=3)
                except NodetunnelError as exc:
                    problems.append(f"the tunnel (PID {self.tunnel.pid}): {exc.message}")
                self.tunnel = None
            if self._requeued and self.job_id is not None:
                try:
                    self.slurm.cancel(self.job_id)
                except NodetunnelError as exc:
                    problems.append(f"requeued job {self.job_id} may run again: {exc.message}")
            elif self._submitted and not keep and not self._job_ended:
                try:
                    if self.job_id is not None:
                        self._say(f"cancelling job {self.job_id}")
                        self.slurm.cancel(self.job_id)
                    else:
                        self.slurm.cancel_named(self.job_name)
                except NodetunnelError as exc:
                    what = self.job_id or f"named {self.job_name}"
                    problems.append(f"job {what} may still be running: {exc.message}")
            if self.session_dir and not keep:
                with contextlib.suppress(NodetunnelError):
                    self.ssh.run(["rm", "-rf", "--", self.session_dir], check=False, timeout_s=30)
            if self._connected:
                self.ssh.close()
            shutil.rmtree(self._local_dir, ignore_errors=True)
            if self.store is not None and self._record is not None:
                try:
                    if keep:  # the job runs on, detached: 'nodetunnel attach' resumes it
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
        fields = _marked(out)
        try:
            return fields["dir"], fields["user"]
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
        """Wait for the job to run, then for its app to publish where it listens.

        While the job waits in the queue, SLURM is asked with a backoff up to 3 s.
        Once it runs, the endpoint file is read about every 0.2-1 s (the app is
        moments away) and SLURM is asked only every few seconds, to notice a
        job that died meanwhile.
        """
        last_line = ""
        deadline = time.monotonic() + self.req.start_timeout_s

        def ask() -> JobStatus:
            """SLURM's view, as a progress line; a job or app that failed raises JobFailed."""
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
            return status

        def runs() -> JobStatus:
            status = ask()
            if status.state != JobState.RUNNING:
                raise NotReady(last_line)
            return status

        hint = "the cluster may be busy: raise --timeout, or ask for fewer resources"
        what = f"job {job_id} to start the app"
        status = wait_until(runs, timeout_s=self.req.start_timeout_s, what=what,
                            interval_s=0.3, max_interval_s=3.0, hint=hint)  # fmt: skip
        asked = time.monotonic()

        def published() -> tuple[JobStatus, dict[str, str]]:
            nonlocal status, asked
            if time.monotonic() - asked >= RUNNING_CHECK_S:
                status, asked = ask(), time.monotonic()
            text = self._read_remote("endpoint")
            if text:
                return status, parse_endpoint(text)
            raise NotReady(f"job {job_id} runs; its app has not published its endpoint yet")

        return wait_until(published, timeout_s=max(1.0, deadline - time.monotonic()),
                          what=what, interval_s=0.2, max_interval_s=1.0, hint=hint)  # fmt: skip

    def _open_tunnel_on_a_port(
        self, node: str, remote: str, requested: int | None, *, prefer: int | None = None
    ) -> int:
        """Open the tunnel on ``requested``, else on ``prefer`` or 8888 or any free port.

        Without ``requested``, a port another program takes between the check
        and ssh's bind (e.g. sessions started at the same moment) is no error:
        the next free port is tried instead.
        """
        taken: list[int] = []
        while True:
            if requested is None and prefer and prefer not in taken and port_is_free(prefer):
                port = prefer
            else:
                port = choose_local_port(requested, avoid=taken)
            try:
                self._open_tunnel(node, port, remote)
            except PortInUse:
                self.tunnel = None  # its ssh has exited
                taken.append(port)
                if requested is not None or len(taken) >= PORT_ATTEMPTS:
                    raise
                self._say(f"port {port} was taken just now; trying another")
                continue
            self._say(f"tunnel open on 127.0.0.1:{port}")
            return port

    def _open_tunnel(
        self, node: str, port: int, remote: str, *, reach_timeout_s: float = 60
    ) -> None:
        log = self._local_dir / "tunnel.log"
        offset = log.stat().st_size if log.exists() else 0  # this attempt's lines start here
        with sigint_deferred():  # never leave a tunnel running that close() does not know
            tunnel = self.tunnel = spawn(
                self.ssh.forward_argv(node, port, remote),
                log_path=log,
            )
            # Recorded so that whoever cleans up after a hard kill can end it by PID.
            (self._local_dir / "tunnel.pid").write_text(f"{tunnel.pid} {tunnel.start_ticks}\n")
        self._wait_reachable(tunnel, port, reach_timeout_s, log_offset=offset)

    def _wait_reachable(
        self, tunnel: ProcessRef, port: int, timeout_s: float = 60, *, log_offset: int = 0
    ) -> None:
        path = self.req.app.status_path

        def probe() -> bool:
            if not tunnel.alive():
                with open(self._local_dir / "tunnel.log", "rb") as f:
                    f.seek(log_offset)
                    log = f.read().decode(errors="replace").strip()
                if "Address already in use" in log or "cannot listen" in log:
                    raise PortInUse(
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
        SLURM is asked then, and otherwise every ``job_check_interval_s`` (a
        minute by default). An HTTP probe through the tunnel every few seconds
        catches a tunnel whose ssh lives on but forwards nothing. A dropped
        tunnel is re-opened on the same local port, so the browser tab keeps
        working. Along the way: the warning before the time limit, and the lease
        check-ins.
        """
        info = self.info
        if info is None or self.job_id is None:
            raise RuntimeError("watch() needs a started session")
        job_id = self.job_id
        next_check = time.monotonic() + self.req.job_check_interval_s
        end = self._record.walltime_end if self._record else _walltime_end(info.time_left_s)
        warn_at = end - self.req.warn_before_s if end and self.req.warn_before_s else None
        self._next_beat = time.monotonic() if self.req.lease_s else math.inf
        next_probe, unanswered = time.monotonic() + HEALTH_PROBE_S, 0
        while True:
            tunnel = self.tunnel
            if tunnel is not None and tunnel.alive() and time.monotonic() >= next_probe:
                # A live ssh is not proof of a working tunnel (a frozen process, a half-dead path).
                next_probe = time.monotonic() + HEALTH_PROBE_S
                unanswered = 0 if self._answers(info) else unanswered + 1
                if unanswered >= HEALTH_PROBE_FAILURES:
                    self._notice("the tunnel stopped answering; re-opening it")
                    with contextlib.suppress(NodetunnelError):
                        tunnel.stop(timeout_s=3)
                    unanswered = 0
            if tunnel is not None and tunnel.alive():
                if warn_at is not None and end is not None and time.time() >= warn_at:
                    warn_at = None
                    self._notice(walltime_warning(job_id, end))
                self._beat_if_due()
                if time.monotonic() < next_check:
                    time.sleep(poll_s)
                    continue
                next_check = time.monotonic() + self.req.job_check_interval_s
            finished = self._job_finished(job_id)
            if finished:
                self._job_ended = True
                return finished
            if tunnel is not None and tunnel.alive():
                continue
            self._reconnect(info)

    def _answers(self, info: SessionInfo) -> bool:
        """Whether the app answers through the tunnel at all (any HTTP status will do)."""
        try:
            probe_http(info.local_port, self.req.app.status_path, self.token,
                       timeout_s=HEALTH_PROBE_TIMEOUT_S)  # fmt: skip
        except NotReady:
            return False
        return True

    def _url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}{self.req.app.url_path}?token={self.token}"

    def _beat_if_due(self, *, timeout_s: float = 30) -> None:
        """Check in for the lease when it is time (the job ends itself without check-ins)."""
        lease_s = self.req.lease_s
        if lease_s is None or time.monotonic() < self._next_beat:
            return
        script = 'date +%s > "$1.tmp" && mv -f "$1.tmp" "$1"'
        try:
            self.ssh.run(["sh", "-c", script, "sh", f"{self.session_dir}/heartbeat"],
                         timeout_s=timeout_s)  # fmt: skip
        except NodetunnelError as exc:
            self._notice(f"could not check in for the lease (will retry): {exc.message}")
            self._next_beat = time.monotonic() + HEARTBEAT_RETRY_S
            return
        self._next_beat = time.monotonic() + heartbeat_interval_s(lease_s)

    def _job_finished(self, job_id: str) -> str | None:
        """Why the job has ended, or None if it runs or SLURM cannot be asked now (no network)."""
        try:
            status = self.slurm.status_of(job_id)
        except NodetunnelError as exc:  # no network, a busy controller: ask again later
            if not isinstance(exc, SshError):
                self._notice(f"could not ask SLURM about job {job_id} (will retry): {exc.message}")
            return None
        if status.state in _REQUEUED:  # watch() runs only after the job ran
            self._requeued = True
            return (f"job {job_id} was requeued by SLURM ({status.state.value}); its app is "
                    "gone, so nodetunnel cancels it")  # fmt: skip
        if not status.state.finished:
            return None
        why = job_end_message(job_id, status.state)
        if status.state == JobState.CANCELLED and self.req.lease_s:
            with contextlib.suppress(NodetunnelError):
                ended = self._read_remote("ended")  # written by the job when its lease expired
                if ended and ended.strip():
                    why = f"job {job_id} ended: {ended.strip()}"
        return why

    def _reconnect(self, info: SessionInfo) -> None:
        self._notice("the tunnel dropped; reconnecting")
        started = time.monotonic()
        if self.tunnel is not None:
            with contextlib.suppress(NodetunnelError):
                self.tunnel.stop(timeout_s=3)
            self.tunnel = None

        job_ended = False

        def attempt() -> bool:
            nonlocal job_ended
            self._beat_if_due(timeout_s=10)  # the login node may answer while the node does not
            try:
                # A short attempt: one started while the path was down may wait on TCP
                # retransmissions long after it is back; a fresh one connects at once.
                self._open_tunnel(info.node, info.local_port, info.remote,
                                  reach_timeout_s=RECONNECT_ATTEMPT_S)  # fmt: skip
            except PortInUse as exc:
                self.tunnel = None  # its ssh could not bind the port, and has exited
                old_port = info.local_port
                info.local_port = choose_local_port(None, avoid=[old_port])
                info.url = self._url(info.local_port)
                self._notice(f"port {old_port} was taken by another program meanwhile; the "
                             f"session moves to port {info.local_port}: {info.url}")  # fmt: skip
                raise NotReady(exc.message) from exc
            except NodetunnelError as exc:
                if self.tunnel is not None:
                    with contextlib.suppress(NodetunnelError):
                        self.tunnel.stop(timeout_s=3)
                    self.tunnel = None
                if self._job_finished(info.job_id):
                    job_ended = True
                    return True  # nothing to reconnect to; watch() reports the end
                raise NotReady(exc.message) from exc
            return True

        if self.req.keep:
            hint = "check your network; the job keeps running ('nodetunnel attach' comes back)"
        else:
            hint = "check your network; the job is cancelled now (start with --keep to keep it)"
        fast_s = min(self.reconnect_timeout_s, FAST_RECONNECT_S)
        try:
            # Short and jittered: the tab should work again within seconds of the network.
            wait_until(attempt, timeout_s=fast_s, what="the tunnel to come back",
                       interval_s=0.2, max_interval_s=1.0, jitter_s=0.3, hint=hint)  # fmt: skip
        except WaitTimeout:
            if self.reconnect_timeout_s <= fast_s:
                raise
            # A long outage (a laptop asleep, offline): keep trying, less often.
            self._notice(f"no tunnel for {fast_s / 60:.0f} min; trying every "
                         f"{SLOW_RECONNECT_INTERVAL_S:.0f} s until the job ends")  # fmt: skip
            wait_until(attempt, timeout_s=self.reconnect_timeout_s - fast_s,
                       what="the tunnel to come back", interval_s=SLOW_RECONNECT_INTERVAL_S,
                       max_interval_s=SLOW_RECONNECT_INTERVAL_S, jitter_s=2.0, hint=hint)  # fmt: skip
        if job_ended:
            return
        self.reconnects += 1
        self._notice(f"tunnel back after {time.monotonic() - started:.1f} s")
        tunnel = self._live_tunnel()  # set again by attempt()
        if self.store is not None and self._record is not None and tunnel is not None:
            self._record = dataclasses.replace(
                self._record, tunnel_pid=tunnel.pid, tunnel_start=tunnel.start_ticks,
                reconnects=self.reconnects, local_port=info.local_port, url=info.url,
            )  # fmt: skip
            self.store.save(self._record)

    def _live_tunnel(self) -> ProcessRef | None:
        return self.tunnel
