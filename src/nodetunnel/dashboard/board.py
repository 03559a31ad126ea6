"""What the dashboard shows: one card per session, from the same query ``nodetunnel list`` makes.

:class:`Board` holds the last :func:`~nodetunnel.session.fleet.reconcile` result
(one scheduler query per cluster, and one more while any of its jobs waits, for
their places in the queue: :func:`pending_of`), the sessions being started from the form,
and the ones that ended by themselves (shown with their cause until dismissed).
It refreshes only when asked and never more often than ``interval_s`` (15 s,
as a ``list`` in a loop would): the web layer asks only while a page is open.
Local changes (a stop, a start that finished) show at once, without a query.
Thread-safe; nothing here prints.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from ..config import DEFAULT_WARN_BEFORE_S
from ..errors import NodetunnelError
from ..events import ENDED, RUNNING, WALLTIME_WARNING
from ..scheduler.base import JobState, JobStatus, PendingInfo, Scheduler
from ..session.fleet import Connector, Link, cluster_link, process_alive, reconcile
from ..session.keeper import job_end_message
from ..session.model import SessionRow
from ..state import SessionRecord, SessionStore
from ..transport.base import ClusterRef

REFRESH_INTERVAL_S = 15.0  # at most one query per cluster this often, while a page is open
ENDED_KEEP_S = 3600.0  # a session that ended by itself stays on the page this long
EVENTS_KEPT = 20  # the page lists this many recent events


@dataclasses.dataclass(frozen=True)
class Pending:
    """Why a job waits and when it may start (the scheduler's ``PendingInfo``, or its status)."""

    reason: str | None = None
    estimated_start: str | None = None
    position: int | None = None
    pending_in_partition: int | None = None


def pending_of(scheduler: Scheduler, statuses: Mapping[str, JobStatus]) -> dict[str, Pending]:
    """The pending jobs among ``statuses`` (the listing's): each one's reason, estimate and
    place in its partition's queue, from :meth:`Scheduler.pending_infos` (one more query
    for all of them, none when no job waits); for a job that query does not show, or if
    it fails, what the listing's status already says (reason and start estimate; no
    position).
    """
    waiting = {job_id: st for job_id, st in statuses.items() if st.state is JobState.PENDING}
    if not waiting:
        return {}
    infos: dict[str, PendingInfo] = {}
    with contextlib.suppress(NodetunnelError):
        infos = scheduler.pending_infos(list(waiting))
    out = {}
    for job_id, status in waiting.items():
        info = infos.get(job_id)
        out[job_id] = (Pending(info.reason, info.estimated_start, info.position,
                               info.pending_in_partition) if info is not None
                       else Pending(status.reason, status.start_estimate))  # fmt: skip
    return out


class _Observed:
    """A scheduler that remembers every job status the listing saw (state, reason, estimate)."""

    def __init__(self, inner: Scheduler) -> None:
        self.inner = inner
        self.seen: dict[str, JobStatus] = {}

    def named_jobs(self, pattern: Any) -> dict[str, tuple[str, JobStatus]]:
        jobs = self.inner.named_jobs(pattern)
        self.seen.update({job_id: status for job_id, (_, status) in jobs.items()})
        return jobs

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found = self.inner.status(job_ids)
        self.seen.update(found)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclasses.dataclass
class Start:
    """A session being started from the form (its job may be pending for a while)."""

    session_id: str
    app: str
    cluster: str | None
    lines: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None


class Board:
    """The cards and their refreshes (see the module docstring)."""

    def __init__(
        self,
        store: SessionStore,
        clusters: Sequence[ClusterRef] = (),
        *,
        connect: Connector = cluster_link,
        interval_s: float = REFRESH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clusters = list(clusters)
        self.interval_s = interval_s
        self._connect = connect
        self._clock = clock
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self.version = 0  # grows with every change a page should see
        self.on_change: Callable[[], None] | None = None  # called (any thread) after a change
        self.refreshes = 0
        self.last_refresh: float | None = None
        self.refreshed_at: float | None = None  # wall clock, for the page
        self._rows: list[SessionRow] = []
        self._statuses: dict[tuple[str | None, str], JobStatus] = {}
        self._pending: dict[tuple[str | None, str], Pending] = {}
        self._ended: dict[str, dict[str, Any]] = {}
        self._starts: dict[str, Start] = {}
        self._gone: set[str] = set()  # stopped here since the last refresh
        self.problems: list[str] = []
        #: What happened to the sessions, newest last: the events nodetunnel notifies of (a
        #: job that waited started, the time-limit warning, an end nobody asked for here).
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ refreshing
    def seconds_until_due(self) -> float:
        if self.last_refresh is None:
            return 0.0
        return max(0.0, self.last_refresh + self.interval_s - self._clock())

    def refresh_if_due(self) -> bool:
        """One query per cluster, unless the last one is younger than ``interval_s``."""
        with self._refreshing:
            if self.seconds_until_due() > 0:
                return False
            self.refresh()
            return True

    def refresh(self) -> None:
        seen: dict[str | None, _Observed] = {}
        pending: dict[tuple[str | None, str], Pending] = {}

        @contextlib.contextmanager
        def observed(ref: ClusterRef) -> Iterator[Link]:
            with self._connect(ref) as link:
                sched = seen[ref.name] = _Observed(link.scheduler)
                yield Link(link.transport, cast(Scheduler, sched))
                for job_id, place in pending_of(link.scheduler, sched.seen).items():  # same link
                    pending[(ref.name, job_id)] = place

        with self._lock:  # also when the query fails: the next try waits its turn
            self.last_refresh = self._clock()
        try:
            listing = reconcile(self.store, self.clusters, connect=observed)
        except (NodetunnelError, OSError) as exc:  # reconcile reports a cluster's own errors
            with self._lock:
                self.problems = [f"could not list the sessions: {exc}"]
                self._bump()
            return
        now = time.time()
        with self._lock:
            self.refreshed_at = now
            self.refreshes += 1
            self._statuses = {(name, j): st for name, o in seen.items() for j, st in o.seen.items()}
            self._pending = pending
            self._gone.clear()
            self.problems = [f"could not ask {ref.where}: {why}" for ref, why in
                             listing.unreachable] + list(listing.unreadable)  # fmt: skip
            before = {r.session_id: r.state for r in self._rows}
            rows = []
            for row in listing.rows:
                self._note_events(row, before.get(row.session_id), now)
                if row.state == "ENDED":
                    if row.session_id not in self._starts:
                        self._ended[row.session_id] = self._card(row, now)
                    continue
                rows.append(row)
            self._rows = rows
            cutoff = now - ENDED_KEEP_S
            self._ended = {k: c for k, c in self._ended.items() if c["ended_at"] > cutoff}
            self._bump()

    def _note_events(self, row: SessionRow, was: str | None, now: float) -> None:
        """The events of one session between the last query and this one."""
        sid, job = row.session_id, row.job_id
        if was == "PENDING" and row.state == "RUNNING":
            self._event(now, sid, RUNNING, f"job {job} ({row.app}) started on {row.node}")
        warn_s = row.record.warn_before_s if row.record is not None else DEFAULT_WARN_BEFORE_S
        if (row.state == "RUNNING" and row.time_left_s is not None and warn_s
                and row.time_left_s <= warn_s and sid not in self._warned):  # fmt: skip
            self._warned.add(sid)
            self._event(now, sid, WALLTIME_WARNING,
                        f"job {job} ({row.app}) ends in {max(0, row.time_left_s) // 60} min")  # fmt: skip
        if row.state == "ENDED" and was is not None and was != "ENDED":
            status = self._statuses.get((row.cluster, job))
            state = status.state if status is not None and status.state.finished else JobState.ENDED
            self._event(now, sid, ENDED, job_end_message(job, state).removesuffix(
                "; the session is over"))  # fmt: skip

    def _event(self, at: float, session_id: str, kind: str, message: str) -> None:
        self._events.append({"at": at, "id": session_id, "kind": kind, "message": message})

    def events(self) -> list[dict[str, Any]]:
        """The recent events (JSON-ready), newest last."""
        with self._lock:
            return list(self._events)

    # ------------------------------------------------------------- local changes
    def _bump(self) -> None:
        self.version += 1
        if self.on_change is not None:
            self.on_change()

    def changed(self) -> None:
        with self._lock:
            self._bump()

    def begin_start(self, session_id: str, app: str, cluster: str | None) -> None:
        with self._lock:
            self._starts[session_id] = Start(session_id, app, cluster)
            self._bump()

    def start_progress(self, session_id: str, line: str) -> None:
        with self._lock:
            start = self._starts.get(session_id)
            if start is not None:
                start.lines = [*start.lines[-4:], line]
                self._bump()

    def start_done(self, session_id: str) -> None:
        with self._lock:
            self._starts.pop(session_id, None)
            self._bump()

    def start_failed(self, session_id: str, message: str) -> None:
        with self._lock:
            start = self._starts.get(session_id)
            if start is not None:
                start.error = message
                self._bump()

    def stopped(self, session_ids: Sequence[str]) -> None:
        with self._lock:
            self._gone.update(session_ids)
            self._bump()

    def dismiss(self, session_id: str) -> bool:
        with self._lock:
            found = self._ended.pop(session_id, None) is not None
            start = self._starts.get(session_id)
            if start is not None and start.error is not None:
                del self._starts[session_id]
                found = True
            self._bump()
            return found

    # --------------------------------------------------------------------- cards
    def cards(self) -> list[dict[str, Any]]:
        """Every session as a card (JSON-ready; no secrets), newest last."""
        now = time.time()
        records = {r.session_id: r for r in self.store.scan()[0]}
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for row in self._rows:
                if row.session_id in self._gone or (row.here and row.session_id not in records):
                    continue
                if row.here:
                    row = dataclasses.replace(row, record=records[row.session_id])
                out[row.session_id] = self._card(row, now)
            for sid, record in records.items():  # started since the last query
                if sid not in out and sid not in self._gone:
                    out[sid] = self._card(_row_of(record), now)
            for sid, start in self._starts.items():
                card = out.get(sid) or self._card(SessionRow(
                    session_id=sid, app=start.app, cluster=start.cluster, job_id="",
                    state="STARTING", node="", time_left_s=None, tunnel_up=False,
                    attached=False, here=True), now)  # fmt: skip
                if sid in records and start.error is None:
                    continue  # it has a record: started (the thread is handing it over)
                card.update(starting=True, progress=list(start.lines), error=start.error,
                            tunnel="starting", can_stop=False, can_open=False,
                            can_ssh=False, can_attach=False, dismissable=start.error is not None)  # fmt: skip
                if start.error is not None:
                    card.update(state="FAILED", state_text="failed to start")
                out[sid] = card
            cards = list(out.values()) + [c for s, c in self._ended.items() if s not in out]
        return sorted(cards, key=lambda c: (c["ended"], c["created"], c["id"]))

    def _card(self, row: SessionRow, now: float) -> dict[str, Any]:
        record = row.record
        key = (row.cluster, row.job_id)
        status = self._statuses.get(key)
        state = row.state
        card: dict[str, Any] = {
            "id": row.session_id, "app": row.app, "cluster": row.cluster or "",
            "job_id": row.job_id, "node": row.node, "state": state, "state_text": state,
            "here": row.here, "tunnel": ("up" if row.tunnel_up else "down") if row.here
            else "elsewhere", "attached": row.attached, "reconnects": row.reconnects,
            "url": row.url if row.tunnel_up else "", "apps": _apps(row), "problem": row.problem,
            "pending": None,
            "ended": False, "ended_at": None, "cause": "", "ends_at": None, "starts_at": None,
            "warn_before_s": DEFAULT_WARN_BEFORE_S, "created": now, "starting": False,
            "progress": [], "error": None, "dismissable": False,
            "can_open": row.here and row.tunnel_up, "can_stop": row.here,
            "can_ssh": row.here and bool(row.node), "can_logs": row.here and bool(
                record and record.session_dir),
            # attach: a running session nothing keeps here, or one started elsewhere
            "can_attach": state == "RUNNING" and not row.attached and not row.tunnel_up,
        }  # fmt: skip
        if record is not None:
            card["created"] = record.created
            card["warn_before_s"] = record.warn_before_s
            card["starts_at"] = record.created
            if record.walltime_end:
                card["ends_at"] = record.walltime_end
        if row.time_left_s is not None and self.refreshed_at is not None and state == "RUNNING":
            card["ends_at"] = self.refreshed_at + row.time_left_s
        if state == "PENDING":
            info = self._pending.get(key) or Pending(
                status.reason if status else None, status.start_estimate if status else None
            )
            card["pending"] = dataclasses.asdict(info)
            card["state_text"] = f"PENDING ({info.reason})" if info.reason else "PENDING"
        if state == "ENDED":
            ended = status.state if status is not None and status.state.finished else JobState.ENDED
            card.update(ended=True, ended_at=now, dismissable=True, can_open=False,
                        can_stop=False, can_ssh=False, can_logs=False, can_attach=False, url="",
                        apps=[{**a, "url": ""} for a in card["apps"]], tunnel="down",
                        cause=job_end_message(row.job_id, ended).removesuffix(
                            "; the session is over"))  # fmt: skip
            card["state_text"] = f"ENDED: {card['cause']}"
        return card


def _apps(row: SessionRow) -> list[dict[str, Any]]:
    """Every app of the session, the main one first (more with ``--with``): its name, its
    number (as ``nodetunnel open ID N`` takes it) and its URL without the secret (while the
    tunnel is up)."""
    extras = row.record.extras if row.record is not None else []
    apps = [(row.app, row.url), *((str(e.get("app", "")), str(e.get("url", ""))) for e in extras)]
    return [{"name": name, "number": n, "url": url.split("?", 1)[0] if row.tunnel_up else ""}
            for n, (name, url) in enumerate(apps, 1)]  # fmt: skip


def _row_of(record: SessionRecord) -> SessionRow:
    """A session saved since the last query: it started, so its job runs."""
    left = int(record.walltime_end - time.time()) if record.walltime_end else None
    tunnel = process_alive(record.tunnel_pid, record.tunnel_start)
    return SessionRow(
        session_id=record.session_id, app=record.app, cluster=record.cluster,
        job_id=record.job_id, state="RUNNING", node=record.node, time_left_s=left,
        tunnel_up=tunnel, attached=process_alive(record.pid, record.pid_start), here=True,
        url=record.url.split("?", 1)[0], local_port=record.local_port,
        reconnects=record.reconnects, record=record,
    )  # fmt: skip


__all__ = [
    "ENDED_KEEP_S",
    "EVENTS_KEPT",
    "REFRESH_INTERVAL_S",
    "Board",
    "Pending",
    "Start",
    "pending_of",
]
