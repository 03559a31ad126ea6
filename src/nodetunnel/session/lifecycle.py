"""One app session: submit, wait, verify, tunnel — and always clean up.

:class:`Session` is a context manager: whatever happens inside (an error,
Ctrl-C), leaving it closes the tunnel and the shared connections and cancels
the job unless ``keep`` was asked for. A second Ctrl-C cannot cut the clean-up
short. It takes its transport and scheduler as parameters (by default the
system OpenSSH and the profile's scheduler), like an httpx client takes its
transport, so the whole lifecycle runs on the fakes in unit tests. The library
reports progress through callbacks and never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from ..apps import APPS
from ..errors import (
    JobFailed,
    NodetunnelError,
    TunnelError,
    UsageError,
)
from ..events import READY, RUNNING, Event
from ..proc import NotReady, ProcessRef, spawn, wait_until
from ..scheduler import make_scheduler
from ..scheduler.base import JobRequest, JobState, Scheduler
from ..state import SessionRecord, SessionStore
from ..transport.base import ClusterRef, Transport
from ..transport.openssh import OpenSSHTransport, SshSettings
from ..transport.sharing import private_runtime_dir
from . import extras as extras_mod
from .extras import Forward
from .jobscript import render_body
from .model import Endpoint, LaunchRequest, SessionInfo, job_name_for
from .page import redirect_page
from .remote import ENDED, JOB_LOG, RemoteDir
from .startup import Fallback, Watch, wait_published, wait_running, while_starting
from .teardown import close_session
from .tunnel import Tunnel, choose_local_port

Progress = Callable[[str], None]
RECONNECT_TIMEOUT_S = 300.0  # in the foreground; a detached session tries as long as the job runs


def walltime_end(time_left_s: int | None) -> float | None:
    return time.time() + time_left_s if time_left_s else None


def default_transport(
    cluster: ClusterRef, local_dir: Path, req: LaunchRequest | None = None
) -> Transport:
    """The system OpenSSH, with this session's private directory and the cluster's settings."""
    settings = dataclasses.replace(req.ssh if req is not None else SshSettings(),
                                   connect_timeout_s=cluster.connect_timeout_s,
                                   multiplex=cluster.multiplex)  # fmt: skip
    return OpenSSHTransport(cluster.jump, local_dir=local_dir, user=cluster.user,
                            ssh_includes=cluster.ssh_includes, settings=settings,
                            share_key=cluster.key)  # fmt: skip


class Session:
    """An app in a batch job on a compute node, forwarded to 127.0.0.1 on this machine."""

    #: Called with each :class:`~nodetunnel.events.Event` (start-up, warnings, the end).
    on_event: Callable[[Event], None] | None = None

    def __init__(
        self,
        req: LaunchRequest,
        *,
        transport: Transport | None = None,
        scheduler: Scheduler | None = None,
        progress: Progress | None = None,
        notice: Progress | None = None,
        store: SessionStore | None = None,
        session_id: str | None = None,
    ) -> None:
        """``progress`` gets the step-by-step lines; ``notice`` (default: ``progress``) the
        ones a user must see even when the steps are not shown: a drop, a time-limit warning.
        """
        self.session_id = session_id or "nt-" + secrets.token_hex(4)
        self.store = store
        self.job_name = job_name_for(req.app, self.session_id)
        self.req = dataclasses.replace(
            req, job=dataclasses.replace(req.job, job_name=self.job_name)
        )
        self.app = req.app
        self._say = progress or (lambda _m: None)
        self._notice = notice or self._say
        needs_secret = any(a.needs_secret for a in (req.app, *req.extras))
        self.token = secrets.token_urlsafe(32) if needs_secret else ""
        self.forwards: list[Forward] = []  # further apps (--with), once their places are known
        self.local_dir = private_runtime_dir() / self.session_id
        self.transport = transport or default_transport(req.cluster, self.local_dir, req)
        self.scheduler = scheduler or make_scheduler(req.cluster.scheduler, self.transport)
        self.remote = RemoteDir(self.transport, self.session_id)
        self._connected = False
        self._submitted = False  # the submit was started (its answer may be lost)
        self.job_id: str | None = None
        self.tunnel: Tunnel | None = None
        self.info: SessionInfo | None = None
        self.reconnects = 0
        self.reconnect_timeout_s = RECONNECT_TIMEOUT_S
        self.record: SessionRecord | None = None
        self.handed_over = False  # detach(): the background process owns everything now
        self.job_ended = False  # watch() saw the job end: nothing to cancel or keep
        self.requeued = False  # watch() saw the job requeued: cancel it, whatever keep says
        self.next_beat = math.inf  # when to check in next for the lease

    @property
    def session_dir(self) -> str:
        return self.remote.path

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
        except KeyboardInterrupt:
            if exc is None:  # held during the clean-up: the user still wants out
                raise
            # An error is already on its way out: it says why, not "interrupted".
        except NodetunnelError as cleanup:
            if exc is None:
                raise
            self._notice(f"clean-up problem: {cleanup.message}")

    @classmethod
    def resume(
        cls,
        record: SessionRecord,
        *,
        transport: Transport | None = None,
        scheduler: Scheduler | None = None,
        progress: Progress | None = None,
        notice: Progress | None = None,
        store: SessionStore,
    ) -> Session:
        """A session for an existing job (from its record), to re-open its tunnel."""
        from .model import JOB_CHECK_INTERVAL_S

        app = APPS.get(record.app)
        if app is None:
            raise UsageError(
                f"session {record.session_id} runs {record.app!r}, which this nodetunnel does "
                "not know",
                hint="update nodetunnel on this machine",
            )
        # The paths of this very session (a command's own, for 'nodetunnel run').
        app = dataclasses.replace(app, url_path=record.url_path or app.url_path,
                                  ready_path=record.status_path or app.ready_path)  # fmt: skip
        req = LaunchRequest(
            app=app,
            cluster=ClusterRef.of(record),
            job=JobRequest(),
            local_port=record.local_port or None,
            keep=True,  # re-attaching never cancels the job; 'nodetunnel stop' does
            warn_before_s=record.warn_before_s,
            lease_s=record.lease_s,
            job_check_interval_s=record.job_check_interval_s or JOB_CHECK_INTERVAL_S,
        )
        session = cls(req, transport=transport, scheduler=scheduler, progress=progress,
                      notice=notice, store=store, session_id=record.session_id)  # fmt: skip
        session.token = record.token
        session.job_id = record.job_id
        session.remote.path = record.session_dir
        session.record = record
        session.forwards = extras_mod.from_record(record.extras, record.session_id)
        return session

    def _connect(self) -> None:
        """Prepare fresh connections; the first command then authenticates each hop."""
        self.transport.connect()
        self.local_dir.mkdir(mode=0o700, exist_ok=True)  # the tunnel's log, the browser page
        self._connected = True

    def _emit(self, kind: str, **data: object) -> None:
        if self.on_event is not None:
            self.on_event(Event(kind, self.session_id, self.job_id, data))

    def _new_tunnel(self, node: str, remote: str) -> Tunnel:
        return Tunnel(self.transport, self.app, self.token, node=node, remote=remote,
                      local_dir=self.local_dir, say=self._say, extras=self.forwards)  # fmt: skip

    def start(self) -> SessionInfo:
        req = self.req
        if req.local_port is not None:
            choose_local_port(req.local_port)  # a taken --port fails before anything is submitted
        # A value that cannot go into the job script fails here, before any connection.
        on_socket = not req.tcp and self.app.listen != "tcp"
        socket_dir = f"/tmp/nt.{secrets.token_hex(8)}" if on_socket else None
        render_body(req.app, req.env, "/HOME/x", scheduler=type(self.scheduler), tcp=req.tcp,
                    lease_s=req.lease_s, socket_dir=socket_dir, extras=req.extras)  # fmt: skip
        self._connect()
        self._say(f"connecting to {self.transport.chain}")
        remote_user = self.remote.create(self.token, where=self.transport.submit_host)
        job = dataclasses.replace(req.job, output=f"{self.session_dir}/{JOB_LOG}")
        # On the socket, the app's directory on the node is named here (socket_dir): the tunnel
        # can then be opened as soon as the job runs, reading nothing through the login host.
        body = render_body(req.app, req.env, self.session_dir, scheduler=type(self.scheduler),
                           tcp=req.tcp, lease_s=req.lease_s, socket_dir=socket_dir,
                           extras=req.extras)  # fmt: skip
        self._submitted = True  # from here on the job may exist (sbatch's answer may be lost)
        job_id = self.job_id = self.scheduler.submit_job(job, body)
        self._say(f"submitted job {job_id}")

        watch = Watch(self, job_id)
        status = wait_running(watch)
        self.forwards = extras_mod.planned(req.extras, socket_dir)
        if socket_dir is not None and not extras_mod.needs_published(req.extras):
            endpoint = Endpoint(status.node or "", socket=f"{socket_dir}/s")
        else:
            status, endpoint = wait_published(watch, status)
            extras_mod.fill_from(self.forwards, endpoint)
        node = endpoint.host
        # Site policy: SSH only to a node the scheduler allocated to this user's running job.
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
                hint="nodetunnel only connects to nodes the scheduler gave the job; please "
                "report this",
            )
        self._say(f"job {job_id} is running on {node}; opening the tunnel")
        try:
            port = self._tunnel_to(endpoint, watch)
        except Fallback as fell:  # an old app version: it listens on a port after all
            endpoint = fell.endpoint
            if endpoint.host != node:
                raise JobFailed(job_id, status.state.value,
                                message=f"job {job_id} reports node {endpoint.host!r}, not {node}",
                                hint="nodetunnel only connects to nodes the scheduler gave the "
                                "job; please report this") from None  # fmt: skip
            self._notice(f"note: {self.app.title} on {node} cannot listen on a Unix socket (an "
                         f"old version?): it listens on 127.0.0.1:{endpoint.port} there, which "
                         "other users with a job on that node can reach")  # fmt: skip
            port = self._tunnel_to(endpoint, watch)
        extras_mod.wait_ready(self, watch)
        if req.lease_s:  # the lease runs from now: check in right away
            from .keeper import beat_if_due

            self.next_beat = 0.0
            beat_if_due(self)
        self.info = SessionInfo(
            session_id=self.session_id,
            job_id=job_id,
            node=node,
            local_port=port,
            url=self.app.url(port, self.token),
            remote=endpoint.remote,
            session_dir=self.session_dir,
            time_left_s=status.time_left_s,
            extras=extras_mod.info(self),
        )
        self.save_record(walltime_end=walltime_end(status.time_left_s))
        self._emit(READY, app=self.app.name, url=self.info.url.split("?", 1)[0],
                   local_port=port, node=node, elapsed_s=watch.elapsed_s())  # fmt: skip
        return self.info

    def _tunnel_to(self, endpoint: Endpoint, watch: Watch) -> int:
        """The tunnel to ``endpoint``, once the app answers through it; returns the port."""
        if self.tunnel is not None:
            self.tunnel.stop_quietly()
        if endpoint.socket is None and self.app.exposed_on_tcp:
            self._notice(f"note: {self.app.title} listens on 127.0.0.1:{endpoint.port} on "
                         f"{endpoint.host} without a password: other users with a job on that "
                         "node can reach it")  # fmt: skip
        tunnel = self.tunnel = self._new_tunnel(endpoint.host, endpoint.remote)
        check = while_starting(watch) if endpoint.socket else None

        def attempt() -> int:
            try:
                return tunnel.open_on_a_port(self.req.local_port, check=check,
                                             reach_timeout_s=watch.left_s())  # fmt: skip
            except TunnelError as exc:
                # Just after the job starts, the node may still refuse us (its prolog runs):
                # try again while the job runs, until the start's deadline.
                tunnel.stop_quietly()
                watch.ask()  # a job that ended raises JobFailed here
                raise NotReady(exc.message) from exc

        return wait_until(attempt, timeout_s=watch.left_s(), what="the tunnel to the node",
                          interval_s=0.5, max_interval_s=2.0, jitter_s=0.2)  # fmt: skip

    def reattach(self) -> SessionInfo:
        """Re-open the tunnel of a running job from its record (same port if it is free)."""
        record = self.record
        if record is None or self.job_id is None:
            raise RuntimeError("reattach() needs a session made by Session.resume()")
        job_id = self.job_id
        self._connect()
        self._say(f"connecting to {self.transport.chain}")
        status = self.scheduler.status_of(job_id)
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
        # Site policy: only the node the scheduler gave this job.
        if record.node not in status.nodes:
            raise JobFailed(
                job_id,
                status.state.value,
                message=f"job {job_id} no longer runs on {record.node} ({list(status.nodes)})",
                hint="stop the session with 'nodetunnel stop' and start a new one",
            )
        self._say(f"job {job_id} is running on {record.node}; opening the tunnel")
        self._emit(RUNNING, node=record.node, elapsed_s=None)
        self.tunnel = self._new_tunnel(record.node, record.remote)
        port = self.tunnel.open_on_a_port(None, prefer=record.local_port)
        extras_mod.wait_again(self)
        self.info = SessionInfo(
            session_id=self.session_id,
            job_id=job_id,
            node=record.node,
            local_port=port,
            url=self.app.url(port, self.token),
            remote=record.remote,
            session_dir=record.session_dir,
            time_left_s=status.time_left_s,
            extras=extras_mod.info(self),
        )
        self.save_record(walltime_end=walltime_end(status.time_left_s))
        self._emit(READY, app=self.app.name, url=self.info.url.split("?", 1)[0],
                   local_port=port, node=record.node, elapsed_s=None)  # fmt: skip
        return self.info

    def watch(self) -> str:
        """Keep the tunnel up until the job ends; return why it ended (see :mod:`.keeper`)."""
        from .keeper import watch

        return watch(self)

    def log_path(self) -> Path:
        """Where a background (detached) session writes its progress."""
        if self.store is not None:
            return self.store.log_path(self.session_id)
        return self.local_dir / f"{self.session_id}.log"

    def detach(
        self, command: Sequence[str], *, env: dict[str, str] | None = None, timeout_s: float = 30
    ) -> ProcessRef:
        """Hand the session to a background process; return it once it has taken over.

        ``command + [session_id]`` is started in its own session with its output
        in :meth:`log_path`; it must take the session over with :meth:`adopt`,
        which records it as the keeper. It reuses this process's shared
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
            if not (self.local_dir / "ssh_config").exists():  # it had taken over, then ended
                self.tunnel = None
                self._connect()  # so that the clean-up can still reach the cluster
            raise
        self.handed_over = True  # the tunnel, connections, job and record are the child's now
        return child

    def adopt(self, from_pid: int) -> SessionInfo:
        """In the background process: take over the session that process ``from_pid`` started.

        Its tunnel and shared connections are kept as they are (no new login);
        the record then names this process as the keeper, which tells
        ``from_pid`` that it may exit. From now on nobody watches the terminal,
        so the tunnel is re-opened for as long as the job may run.
        """
        record = self.record
        if record is None or self.job_id is None:
            raise RuntimeError("adopt() needs a session made by Session.resume()")
        if record.pid != from_pid:
            raise UsageError(
                f"session {self.session_id} is not being handed over by process {from_pid}",
                hint=f"use 'nodetunnel attach {self.session_id}'",
            )
        self.transport.adopt()
        self._connected = True
        self.tunnel = self._new_tunnel(record.node, record.remote)
        proc = None
        if record.tunnel_pid and record.tunnel_start:
            proc = ProcessRef(record.tunnel_pid, record.tunnel_start)
        self.tunnel.adopt(proc, record.local_port)  # a dead one: watch() re-opens it
        left = int(record.walltime_end - time.time()) if record.walltime_end else None
        self.info = SessionInfo(
            session_id=self.session_id, job_id=self.job_id, node=record.node,
            local_port=record.local_port, url=record.url, remote=record.remote,
            session_dir=record.session_dir, time_left_s=left, extras=extras_mod.info(self),
        )  # fmt: skip
        self.reconnect_timeout_s = max(RECONNECT_TIMEOUT_S, left or 7 * 24 * 3600)
        self.save_record(walltime_end=record.walltime_end)  # this tells from_pid to go
        if self.req.lease_s:  # no check-in was possible during the hand-over
            from .keeper import beat_if_due

            self.next_beat = 0.0
            beat_if_due(self)
        self._say(f"session {self.session_id}: keeping the tunnel up in the background "
                  f"(process {os.getpid()})")  # fmt: skip
        return self.info

    def save_record(self, *, walltime_end: float | None) -> None:
        info = self.info
        if self.store is None or info is None:
            return
        me = ProcessRef.of(os.getpid())
        proc = self.tunnel.proc if self.tunnel is not None else None
        record = SessionRecord(
            session_id=self.session_id,
            app=self.app.name,
            job_id=info.job_id,
            **self.req.cluster.record_fields(),
            node=info.node,
            remote=info.remote,
            local_port=info.local_port,
            url=info.url,
            token=self.token,
            session_dir=info.session_dir,
            url_path=self.app.url_path,
            status_path=self.app.ready_path,
            created=self.record.created if self.record else time.time(),
            walltime_end=walltime_end,
            keep=self.req.keep,
            pid=me.pid if me else None,
            pid_start=me.start_ticks if me else None,
            tunnel_pid=proc.pid if proc else None,
            tunnel_start=proc.start_ticks if proc else None,
            reconnects=self.reconnects,
            warn_before_s=self.req.warn_before_s,
            lease_s=self.req.lease_s,
            job_check_interval_s=self.req.job_check_interval_s,
            extras=extras_mod.to_record(self.forwards, self.token),
        )
        self.record = record
        self.store.save(record)

    def close(self) -> None:
        """Tear down in reverse order; every step runs even if an earlier one fails."""
        if self.handed_over:
            return
        close_session(self)

    def browser_file(self) -> Path:
        """A 0600 page that redirects to the URL: opening it keeps the token out of argv."""
        if self.info is None:
            raise RuntimeError("browser_file() needs a started session")
        return redirect_page(self.local_dir / "open.html", self.info.url, self.app.name,
                             self.app.login_form(self.info.url, self.token))  # fmt: skip

    def ended_reason(self) -> str | None:
        """What the job wrote when it ended itself (the lease), if anything."""
        text = self.remote.read(ENDED)
        return text.strip() if text and text.strip() else None


__all__ = ["Session", "default_transport", "redirect_page", "walltime_end"]
