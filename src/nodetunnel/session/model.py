"""The session core's data: what to start, what runs, where it listens, what a list shows."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..apps.base import App
from ..config import DEFAULT_WARN_BEFORE_S
from ..scheduler.base import JobRequest
from ..state import SessionRecord
from ..transport.base import ClusterRef
from ..transport.openssh import SshSettings

SESSIONS_DIR = ".nodetunnel/sessions"  # relative to the cluster home
JOB_CHECK_INTERVAL_S = 60.0  # while the tunnel is healthy (sites without pam_slurm_adopt)

#: The name of every nodetunnel job (see :func:`job_name_for`).
JOB_NAME = re.compile(r"nodetunnel-(?P<app>[a-z0-9_]+)-(?P<session>nt-[0-9a-f]{8})")


@dataclasses.dataclass(frozen=True)
class Environment:
    """How to prepare the app's environment on the node, in this order."""

    modules: tuple[str, ...] = ()
    conda_env: str | None = None
    venv: str | None = None
    setup: str | None = None  # shell code run as-is, e.g. "source ~/.bashrc_cluster"
    workdir: str | None = None


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines as a dict (the ``endpoint`` file's format)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def job_name_for(app: App, session_id: str) -> str:
    """A unique job name: a submit whose answer is lost can still be found and cancelled."""
    return f"nodetunnel-{app.name}-{session_id}"


@dataclasses.dataclass(frozen=True)
class LaunchRequest:
    """Everything one new session needs: the app, the cluster, the job and the options."""

    app: App
    cluster: ClusterRef
    job: JobRequest
    env: Environment = dataclasses.field(default_factory=Environment)
    local_port: int | None = None
    start_timeout_s: float = 600
    keep: bool = False
    tcp: bool = False  # listen on 127.0.0.1:PORT on the node instead of a Unix socket
    ssh: SshSettings = dataclasses.field(default_factory=SshSettings)
    warn_before_s: float | None = DEFAULT_WARN_BEFORE_S  # before the time limit (None: never)
    lease_s: float | None = None  # the job ends itself when nobody checks in for this long
    job_check_interval_s: float = JOB_CHECK_INTERVAL_S
    extras: tuple[App, ...] = ()  # further apps in the same job (--with)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the app listens on its node: a Unix socket path, or a loopback port."""

    host: str
    socket: str | None = None
    port: int | None = None
    #: Every line of the ``endpoint`` file (further apps: ``socket1=``, ``port2=`` ...).
    fields: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def remote(self) -> str:
        """What the tunnel forwards to on the node (``ssh -L``'s right-hand side)."""
        return self.socket or f"127.0.0.1:{self.port or 0}"

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Endpoint:
        port = fields.get("port", "")
        return cls(fields.get("host", ""), fields.get("socket") or None,
                   int(port) if port.isdigit() else None, dict(fields))  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """The ``endpoint`` file the job writes (``key=value`` lines)."""
        return cls.from_fields(parse_key_values(text))


@dataclasses.dataclass
class SessionInfo:
    """A started session, as announced: the job, the node and the URL."""

    session_id: str
    job_id: str
    node: str
    local_port: int
    url: str
    remote: str  # what the tunnel forwards to on the node: a socket path or 127.0.0.1:PORT
    session_dir: str
    time_left_s: int | None
    #: Further apps of the job (``--with``): name, title, local_port, url, remote.
    extras: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SessionRow:
    """One line of ``nodetunnel list``: a session and its job's state, as SLURM sees it now.

    ``state`` is the scheduler's state, ``ENDED`` (gone; the session is
    forgotten) or ``UNKNOWN`` (the cluster could not be asked: ``problem`` says
    why). ``here`` is False for a session started on another machine.
    """

    session_id: str
    app: str
    cluster: str | None
    job_id: str
    state: str
    node: str
    time_left_s: int | None
    tunnel_up: bool
    attached: bool
    here: bool
    problem: str = ""
    url: str = ""  # without the secret
    local_port: int | None = None
    reconnects: int = 0
    record: SessionRecord | None = None

    def to_json(self) -> dict[str, Any]:
        data = self.record.public() if self.record is not None else {
            "session_id": self.session_id, "app": self.app, "cluster": self.cluster,
            "job_id": self.job_id, "node": self.node, "url": self.url,
            "local_port": self.local_port,
        }  # fmt: skip
        data.update(state=self.state, time_left_s=self.time_left_s,
                    tunnel="up" if self.tunnel_up else "down", attached=self.attached,
                    here=self.here, problem=self.problem)  # fmt: skip
        return data


@dataclasses.dataclass
class Listing:
    """What ``list`` found: the rows, and each cluster that could not be asked, with why."""

    rows: list[SessionRow] = dataclasses.field(default_factory=list)
    unreachable: list[tuple[ClusterRef, str]] = dataclasses.field(default_factory=list)
    #: Records on this machine that could not be read (one line each, naming the file).
    unreadable: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class StopReport:
    """What ``stop`` did: the sessions stopped, and per unreachable cluster what was not."""

    stopped: list[SessionRecord] = dataclasses.field(default_factory=list)
    failed: list[tuple[ClusterRef, list[SessionRecord], str]] = dataclasses.field(
        default_factory=list
    )
