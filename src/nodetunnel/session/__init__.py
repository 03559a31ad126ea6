"""The session core: one app in one job, forwarded to this machine, and the fleet of them.

* :mod:`.model` — the data: :class:`LaunchRequest`, :class:`SessionInfo`,
  :class:`Endpoint`, :class:`SessionRow`, :class:`StopReport`.
* :mod:`.remote` — the session directory on the cluster (both sides).
* :mod:`.jobscript` — the job script, from the app, the scheduler and :mod:`.remote`.
* :mod:`.tunnel` — :class:`Tunnel`, the forward to the app (a context manager).
* :mod:`.lifecycle` — :class:`Session`: start, reattach, detach, adopt, close.
* :mod:`.keeper` — keeping a session: watch, reconnect, warnings, the lease.
* :mod:`.fleet` — list, claim, attach, stop: what the CLI and a dashboard call.
"""

from __future__ import annotations

from .lifecycle import Session
from .model import (
    JOB_CHECK_INTERVAL_S,
    JOB_NAME,
    SESSIONS_DIR,
    Endpoint,
    Environment,
    LaunchRequest,
    Listing,
    SessionInfo,
    SessionRow,
    StopReport,
    job_name_for,
)
from .plan import plan
from .tunnel import Tunnel, choose_local_port, port_is_free, probe_http, sigint_deferred

__all__ = [
    "JOB_CHECK_INTERVAL_S",
    "JOB_NAME",
    "SESSIONS_DIR",
    "Endpoint",
    "Environment",
    "LaunchRequest",
    "Listing",
    "Session",
    "SessionInfo",
    "SessionRow",
    "StopReport",
    "Tunnel",
    "choose_local_port",
    "job_name_for",
    "plan",
    "port_is_free",
    "probe_http",
    "sigint_deferred",
]
