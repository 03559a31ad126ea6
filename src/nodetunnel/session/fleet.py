"""Operations on many sessions, from any terminal: list, claim, attach, take over, stop, open.

This is the API the CLI and a dashboard share. Each call connects to a
cluster through ``connect`` (default: :func:`cluster_link`, the system
OpenSSH and the cluster's scheduler), which tests replace with the fakes.
Results are typed (:class:`~.model.SessionRow`, :class:`~.model.StopReport`,
records); errors are :mod:`nodetunnel.errors`. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import secrets
import shutil
import signal
import site
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from ..apps import APPS
from ..config import DEFAULT_WARN_BEFORE_S
from ..errors import NodetunnelError, UsageError
from ..proc import ProcessRef
from ..scheduler import make_scheduler
from ..scheduler.base import JobStatus, Scheduler
from ..state import SessionRecord, SessionStore
from ..transport.base import ClusterRef, Transport
from ..transport.sharing import (
    ControlLease,
    close_if_unused,
    close_masters,
    control_dir_for,
    private_runtime_dir,
)
from . import sshhosts
from .extras import from_endpoint as extras_from_endpoint
from .extras import pick
from .lifecycle import default_transport, walltime_end
from .model import JOB_NAME, Endpoint, Listing, SessionRow, StopReport
from .page import redirect_page
from .remote import RemoteDir, remove_dirs

LOG_KEEP_S = 7 * 24 * 3600.0  # a detached session's log, after the session has gone


@dataclasses.dataclass
class Link:
    """A live connection to one cluster: its transport and its scheduler."""

    transport: Transport
    scheduler: Scheduler


Connector = Callable[[ClusterRef], AbstractContextManager[Link]]


@contextlib.contextmanager
def cluster_link(cluster: ClusterRef) -> Iterator[Link]:
    """A short-lived connection to a cluster's submit host (for list, stop, claim, logs)."""
    local_dir = private_runtime_dir() / ("q-" + secrets.token_hex(4))
    transport = default_transport(cluster, local_dir)
    transport.connect()
    try:
        yield Link(transport, make_scheduler(cluster.scheduler, transport))
    finally:
        transport.close()
        shutil.rmtree(local_dir, ignore_errors=True)


def process_alive(pid: int | None, start: int | None) -> bool:
    return bool(pid and start and ProcessRef(pid, start).alive())


def _forget_local(record: SessionRecord) -> None:
    """The session's private directory here, and connections a hard-killed keeper left.

    A connection that was just closing may still be removing its socket while the
    directory goes: a few bounded tries leave nothing behind.
    """
    local_dir = private_runtime_dir() / record.session_id
    shared = control_dir_for(private_runtime_dir(), ClusterRef.of(record).key)
    close_if_unused(shared, lambda: close_masters(shared))  # nobody else rides them
    for _attempt in range(3):
        close_masters(local_dir)
        shutil.rmtree(local_dir, ignore_errors=True)
        if not local_dir.exists():
            return


@contextlib.contextmanager
def holding(refs: Sequence[ClusterRef]) -> Iterator[None]:
    """Keep these clusters' shared connections up meanwhile (see transport.sharing):
    a keeper told to stop then leaves them for the commands that follow."""
    leases = [ControlLease(control_dir_for(private_runtime_dir(), ref.key))
              for ref in refs if ref.multiplex]  # fmt: skip
    try:
        for lease in leases:
            lease.acquire()
        yield
    finally:
        for lease in leases:
            with contextlib.suppress(NodetunnelError, OSError):
                lease.release(functools.partial(close_masters, lease.control_dir))


def by_cluster(
    records: Sequence[SessionRecord], clusters: Sequence[ClusterRef] = ()
) -> list[tuple[ClusterRef, list[SessionRecord]]]:
    """Records grouped by the cluster connection they need (plus ``clusters``, maybe empty)."""
    groups: dict[tuple[object, ...], tuple[ClusterRef, list[SessionRecord]]] = {}
    for record in records:
        ref = ClusterRef.of(record)
        groups.setdefault(ref.key, (ref, []))[1].append(record)
    for ref in clusters:
        groups.setdefault(ref.key, (ref, []))
    return list(groups.values())


def reconcile(
    store: SessionStore, clusters: Sequence[ClusterRef] = (), *, connect: Connector = cluster_link
) -> Listing:
    """Every session with its job's state: one scheduler query per cluster.

    The clusters asked are those of the stored sessions and ``clusters``. A
    stored session whose job has ended is reported as ENDED and forgotten: a
    tunnel left running for it is ended, its directory on the cluster removed.
    A running nodetunnel job of the user that this machine does not know (one
    started on another laptop) is listed with ``here=False``; :func:`claim`
    makes it attachable. A cluster that cannot be asked gives rows in state
    UNKNOWN with the ``problem``, and is listed in ``unreachable``.
    """
    records, unreadable = store.scan()
    groups = by_cluster(records, clusters)
    store.prune_logs(max_age_s=LOG_KEEP_S)
    listing = Listing(unreadable=unreadable)
    rows = listing.rows
    stored = {r.job_id for _, records in groups for r in records}
    for ref, records in groups:
        jobs: dict[str, tuple[str, JobStatus]] | None = None
        problem = ""
        try:
            with connect(ref) as link:
                jobs = link.scheduler.named_jobs(JOB_NAME)
                # A stored job the user's listing did not show (another partition's view,
                # a renamed job) is asked about by id before it is taken for ended.
                missing = [r.job_id for r in records if r.job_id not in jobs]
                for job_id, status in (link.scheduler.status(missing) if missing else {}).items():
                    jobs[job_id] = ("", status)
                gone = [r.session_dir for r in records if r.session_dir and
                        _status_in(jobs, r.job_id).state.finished]  # fmt: skip
                remove_dirs(link.transport, gone)  # the ended jobs' directories on the cluster
        except NodetunnelError as exc:
            problem = exc.message
            listing.unreachable.append((ref, problem))
        for record in records:
            rows.append(_reconciled(store, record, jobs, problem))
        for job_id, (name, status) in (jobs or {}).items():
            m = JOB_NAME.fullmatch(name)
            if job_id in stored or m is None or status.state.finished:
                continue
            rows.append(SessionRow(
                session_id=m["session"], app=m["app"], cluster=ref.name, job_id=job_id,
                state=status.state.value, node=status.node or "", time_left_s=status.time_left_s,
                tunnel_up=False, attached=False, here=False, problem=problem,
            ))  # fmt: skip
    sshhosts.sync(store)  # the entries of sessions that ended go with them
    return listing


def _status_in(jobs: dict[str, tuple[str, JobStatus]], job_id: str) -> JobStatus:
    return jobs[job_id][1] if job_id in jobs else JobStatus.ended(job_id)


def _reconciled(
    store: SessionStore,
    record: SessionRecord,
    jobs: dict[str, tuple[str, JobStatus]] | None,
    problem: str,
) -> SessionRow:
    status = _status_in(jobs, record.job_id) if jobs is not None else None
    tunnel_up = process_alive(record.tunnel_pid, record.tunnel_start)
    state = status.state.value if status else "UNKNOWN"
    if status is not None and status.state.finished:
        state = "ENDED"
        if tunnel_up and record.tunnel_pid and record.tunnel_start:
            with contextlib.suppress(NodetunnelError):
                ProcessRef(record.tunnel_pid, record.tunnel_start).stop(timeout_s=3)
        if not process_alive(record.pid, record.pid_start):
            _forget_local(record)
        store.remove(record.session_id)
        tunnel_up = False
    attached = process_alive(record.pid, record.pid_start)
    if record.needs == "attach" and not attached and state != "ENDED":
        problem = problem or f"needs you: run `nodetunnel attach {record.session_id}`"
    return SessionRow(
        session_id=record.session_id, app=record.app, cluster=record.cluster,
        job_id=record.job_id, state=state, node=record.node,
        time_left_s=status.time_left_s if status else None, tunnel_up=tunnel_up,
        attached=attached, here=True, problem=problem,
        url=record.url.split("?", 1)[0], local_port=record.local_port,
        reconnects=record.reconnects, record=record,
    )  # fmt: skip


def claim(
    store: SessionStore, cluster: ClusterRef, key: str, *, connect: Connector = cluster_link
) -> SessionRecord:
    """Make a running session started elsewhere (another laptop) known here, to attach to it.

    ``key`` is its session id, a unique prefix of it, or its job id. Its token
    and endpoint are read from its private directory on the cluster.
    """
    with connect(cluster) as link:
        jobs = link.scheduler.named_jobs(JOB_NAME)
        found = []
        for job_id, (name, status) in jobs.items():
            m = JOB_NAME.fullmatch(name)
            if m and not status.state.finished and (key == job_id or m["session"].startswith(key)):
                found.append((job_id, m, status))
        where = f"cluster {cluster.name}" if cluster.name else link.transport.submit_host
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
        get = RemoteDir(link.transport, m["session"]).claim_info()
    endpoint = Endpoint.from_fields(get)
    if not endpoint.host or not get.get("token"):
        raise UsageError(
            f"session {m['session']} (job {job_id}, {status.state.value}) has not started its "
            "app yet",
            hint="try again once 'nodetunnel list' shows it RUNNING",
        )
    app = APPS.get(m["app"])
    if app is None:
        raise UsageError(
            f"session {m['session']} runs {m['app']!r}, which this nodetunnel does not know",
            hint="update nodetunnel on this machine",
        )
    record = SessionRecord(
        session_id=m["session"], app=app.name, job_id=job_id, **cluster.record_fields(),
        node=endpoint.host, remote=endpoint.remote, token=get["token"], session_dir=get["dir"],
        url_path=app.url_path, status_path=app.ready_path,
        walltime_end=walltime_end(status.time_left_s), keep=True,
        warn_before_s=DEFAULT_WARN_BEFORE_S,
        lease_s=float(get["lease"]) if get.get("lease", "").isdigit() else None,
        extras=extras_from_endpoint(get),
    )  # fmt: skip
    store.save(record)
    return record


@dataclasses.dataclass
class AttachPlan:
    """What ``attach`` found: the session's record, whether it was just claimed from the
    cluster, and the PID of a tunnel a dead keeper left (now ended), if any."""

    record: SessionRecord
    claimed: bool = False
    ended_orphan: int | None = None


def prepare_attach(
    store: SessionStore,
    key: str,
    clusters: Sequence[ClusterRef] = (),
    *,
    connect: Connector = cluster_link,
) -> AttachPlan:
    """Find the session to attach to: known here, else claimed from the first of ``clusters``.

    Refuses a session another live process keeps; ends a tunnel left by a
    keeper that was killed (its port is needed again).
    """
    if not store.matching(key) and clusters:
        plan = AttachPlan(claim(store, clusters[0], key, connect=connect), claimed=True)
    else:
        plan = AttachPlan(store.find(key))
    record = plan.record
    if process_alive(record.pid, record.pid_start):
        raise UsageError(
            f"session {record.session_id} is attached already (by process {record.pid})",
            hint=f"its URL is in 'nodetunnel list'; 'nodetunnel stop {record.session_id}' ends it",
        )
    if end_orphan_tunnel(record):
        plan.ended_orphan = record.tunnel_pid
    return plan


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
    store: SessionStore, records: Sequence[SessionRecord], *, connect: Connector = cluster_link
) -> StopReport:
    """End sessions from anywhere: keepers, tunnels, jobs, directories, records.

    Every keeper and tunnel is signalled first, so they shut down together;
    then, per cluster, one connection runs one cancel and one ``rm``. The
    records of a cluster that could not be reached are kept, so that ``stop``
    can be run again.
    """
    procs = [
        ProcessRef(pid, start)
        for r in records
        for pid, start in ((r.pid, r.pid_start), (r.tunnel_pid, r.tunnel_start))
        if pid and start
    ]
    groups = by_cluster(records)
    with holding([ref for ref, _ in groups] if connect is cluster_link else []):
        return _stop(store, records, procs, groups, connect)


def _stop(
    store: SessionStore,
    records: Sequence[SessionRecord],
    procs: list[ProcessRef],
    groups: list[tuple[ClusterRef, list[SessionRecord]]],
    connect: Connector,
) -> StopReport:
    signalled = [proc for proc in procs if proc.signal(signal.SIGTERM)]  # a keeper cleans up
    for proc in signalled:  # as on Ctrl-C; once is enough (a second would cut it short)
        proc.stop(timeout_s=10, signalled=True)
    for record in records:
        _forget_local(record)  # and connections, if its keeper was killed hard
    report = StopReport()
    for ref, group in groups:
        try:
            with connect(ref) as link:
                link.scheduler.cancel_jobs([r.job_id for r in group])
                remove_dirs(link.transport, [r.session_dir for r in group if r.session_dir])
        except NodetunnelError as exc:  # the other clusters' sessions are still stopped
            report.failed.append((ref, list(group), exc.message))
            continue
        for record in group:
            store.remove(record.session_id)
            store.remove_log(record.session_id)
            _forget_local(record)  # again: nothing may have come back meanwhile
            report.stopped.append(record)
    sshhosts.sync(store)
    return report


def open_page(store: SessionStore, record: SessionRecord, app: str | None = None) -> Path:
    """A 0600 page that opens the session's URL (the token stays out of any argv); with
    ``app``, that app's URL (a name or a number, see :func:`app_url`)."""
    if not process_alive(record.tunnel_pid, record.tunnel_start):
        raise UsageError(
            f"session {record.session_id} has no tunnel on this machine now",
            hint=f"run 'nodetunnel attach {record.session_id}' to bring it back",
        )
    name, url = app_url(record, app)
    recipe = APPS.get(name)
    login = recipe.login_form(url, record.token) if recipe is not None else None
    return redirect_page(store.page_path(record.session_id), url, name, login)


def app_url(record: SessionRecord, app: str | None = None) -> tuple[str, str]:
    """The name and URL (with its token) of one of the session's apps: ``None`` or ``1`` is
    the main app, ``2``... or a name a further one (``--with``)."""
    apps = [(record.app, record.url), *((str(e["app"]), str(e["url"])) for e in record.extras)]
    if app is None:
        return apps[0]
    return apps[pick([name for name, _ in apps], app)]


def keeper_command(
    *, debug: bool = False, notify: bool | None = None
) -> tuple[list[str], dict[str, str]]:
    """This program, re-executed to keep a session in the background (see Session.detach);
    ``notify`` given: it notifies (``--notify``) or not, else as the profile says."""
    from .. import __file__ as package_init

    env = dict(os.environ)
    root = str(Path(package_init).resolve().parent.parent)  # the same nodetunnel, wherever it is
    usual = {*site.getsitepackages(), site.getusersitepackages(),
             *env.get("PYTHONPATH", "").split(os.pathsep)}  # fmt: skip
    if root not in usual:  # e.g. run from a source tree: the ssh it starts keep their path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "nodetunnel", *(["--debug"] if debug else []),
            "attach", "--no-browser", "--take-over", str(os.getpid())]  # fmt: skip
    if notify is not None:
        argv.append("--notify" if notify else "--no-notify")
    return argv, env
