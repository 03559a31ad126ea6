"""The session store: one JSON record per session in the user's state directory.

Records are written atomically (temp file + rename) under a lock, with mode
0600 (they hold the session's token), so a ``kill -9`` at any moment leaves
either the old record or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import NodetunnelError, UsageError

RECORD_VERSION = 1
_ID = re.compile(r"nt-[0-9a-f]{8}")


@dataclasses.dataclass
class SessionRecord:
    """Everything needed to list, re-attach and stop a session from any terminal."""

    session_id: str
    app: str
    job_id: str
    jump: list[str]
    cluster: str | None = None
    user: str | None = None
    ssh_includes: list[str] = dataclasses.field(default_factory=list)
    node: str = ""
    remote: str = ""  # socket path or 127.0.0.1:PORT on the node
    local_port: int = 0
    url: str = ""
    token: str = ""
    session_dir: str = ""
    url_path: str = "/"
    status_path: str = "/"
    created: float = dataclasses.field(default_factory=time.time)
    walltime_end: float | None = None
    keep: bool = False
    pid: int | None = None  # the process keeping the tunnel (foreground CLI or supervisor)
    pid_start: int | None = None
    tunnel_pid: int | None = None
    tunnel_start: int | None = None
    reconnects: int = 0
    warn_before_s: float | None = None
    lease_s: float | None = None
    job_check_interval_s: float | None = None  # None (older records): the default
    scheduler: str = "slurm"  # the backend that runs the job (older records: SLURM)

    def to_json(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"unknown record version {data.get('version')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def public(self) -> dict[str, Any]:
        """The record without its secret (for ``list --json``)."""
        data = self.to_json()
        data.pop("token")
        data["url"] = self.url.split("?", 1)[0]  # the token is in the query
        return data


def default_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_path("nodetunnel")) / "sessions"


class SessionStore:
    """Session records under ``root`` (default: the platform's user state directory)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def _ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _path(self, session_id: str) -> Path:
        if not _ID.fullmatch(session_id):
            raise UsageError(
                f"{session_id!r} is not a session id",
                hint="session ids look like nt-1a2b3c4d; see 'nodetunnel list'",
            )
        return self.root / f"{session_id}.json"

    def save(self, record: SessionRecord) -> None:
        path = self._path(record.session_id)
        with self._locked():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(record.to_json(), f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    def remove(self, session_id: str) -> None:
        path = self._path(session_id)
        with self._locked():
            path.unlink(missing_ok=True)

    def log_path(self, session_id: str) -> Path:
        """Where a detached session's keeper writes (kept a while after the session ends)."""
        return self._path(session_id).with_suffix(".log")

    def remove_log(self, session_id: str) -> None:
        self.log_path(session_id).unlink(missing_ok=True)

    def prune_logs(self, *, max_age_s: float) -> None:
        """Remove the logs of sessions that are gone, once older than ``max_age_s``."""
        if not self.root.is_dir():
            return
        cutoff = time.time() - max_age_s
        for log in self.root.glob("nt-*.log"):
            with contextlib.suppress(OSError):
                if not log.with_suffix(".json").exists() and log.stat().st_mtime < cutoff:
                    log.unlink()

    def load(self, session_id: str) -> SessionRecord:
        path = self._path(session_id)
        try:
            return SessionRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise UsageError(
                f"no session {session_id} on this machine",
                hint="see 'nodetunnel list' for the sessions there are",
            ) from None
        except (ValueError, TypeError) as exc:
            raise NodetunnelError(
                f"the record of session {session_id} is unreadable: {exc}",
                hint=f"remove {path} (the job, if any, is not affected)",
            ) from exc

    def all(self) -> list[SessionRecord]:
        """Every readable record, oldest first (unreadable ones are skipped)."""
        if not self.root.is_dir():
            return []
        records = []
        for path in sorted(self.root.glob("nt-*.json")):
            with contextlib.suppress(NodetunnelError):
                records.append(self.load(path.stem))
        return sorted(records, key=lambda r: r.created)

    def matching(self, key: str) -> list[SessionRecord]:
        """Sessions whose id or job id is ``key``, else those whose id starts with it."""
        records = self.all()
        exact = [r for r in records if key in (r.session_id, r.job_id)]
        return exact or [r for r in records if r.session_id.startswith(key)]

    def find(self, key: str) -> SessionRecord:
        """A session by its id, a unique prefix of it, or its job id."""
        matches = self.matching(key)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UsageError(
                f"no session {key!r} on this machine",
                hint="see 'nodetunnel list' for the sessions there are",
            )
        ids = ", ".join(r.session_id for r in matches)
        raise UsageError(f"{key!r} matches several sessions: {ids}", hint="give more of the id")
