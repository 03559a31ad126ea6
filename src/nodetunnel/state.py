"""The session store: one JSON record per session in the user's state directory.

Records are written atomically (temp file + rename) under a lock, with mode
0600 (they hold the session's token), so a ``kill -9`` at any moment leaves
either the old record or the new one, never half of one. The lock is an
operating-system file lock (flock on POSIX, LockFileEx on Windows, through
filelock): it blocks other processes as well as other threads, and it is
released when its holder dies, however it dies.

Every field of a record is checked when it is read: a record that is not JSON,
has a field of the wrong type or was written by a newer nodetunnel is reported
(see :meth:`SessionStore.scan`), never half-used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import re
import time
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import NodetunnelError, PrerequisiteError, UsageError

RECORD_VERSION = 1
_ID = re.compile(r"nt-[0-9a-f]{8}")
#: How long a save or remove waits for another nodetunnel process to finish its own.
LOCK_TIMEOUT_S = 15.0
_REMOVE_IT = "remove it if its job has ended"


class RecordError(ValueError):
    """A session record that cannot be used; ``str()`` is the cause, in a few words."""

    def problem(self) -> str:
        return f"unreadable record ({self}); {_REMOVE_IT}"


class NewerRecordError(RecordError):
    """A record written by a newer nodetunnel (a higher record version)."""

    def problem(self) -> str:
        return f"{self}; use that nodetunnel to see or stop its session"


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
    connect_timeout_s: int | None = None  # the profile's, if it set one
    multiplex: bool | None = None  # None (older records): the platform's default
    #: Further apps in the same job (``--with``), one object each: app, title, remote,
    #: local_port, url, url_path, status_path (older records: none).
    extras: list[dict[str, str | int]] = dataclasses.field(default_factory=list)
    needs: str = ""  # "attach": its keeper stopped for a login only a terminal can answer

    def to_json(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        """The record in ``data``, every field checked; raises :class:`RecordError` if unusable.

        Keys this version does not know are ignored (a later version of the same record
        format may add some); a field that has a default may be missing (an earlier one
        did not write it).
        """
        version = data.get("version")
        if type(version) is int and version > RECORD_VERSION:
            raise NewerRecordError(
                f"written by a newer nodetunnel (record version {version}; this one reads "
                f"version {RECORD_VERSION})"
            )
        if type(version) is not int or version != RECORD_VERSION:
            raise RecordError(f"unknown record version {_shown_value(version)}")
        values = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                if (
                    field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING
                ):
                    raise RecordError(f"field {field.name!r} is missing")
                continue
            value = data[field.name]
            kind = _field_types()[field.name]
            if not _is(value, kind):
                raise RecordError(
                    f"field {field.name!r} should be {_describe(kind)}, not {_shown_value(value)}"
                )
            values[field.name] = value
        if not _ID.fullmatch(values["session_id"]):
            raise RecordError(
                f"field 'session_id' is not a session id: {_shown_value(values['session_id'])}"
            )
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """The record without its secret (for ``list --json``)."""
        data = self.to_json()
        data.pop("token")
        data["url"] = self.url.split("?", 1)[0]  # the token is in the query
        data["extras"] = [{**e, "url": str(e.get("url", "")).split("?", 1)[0]}
                          for e in self.extras]  # fmt: skip
        return data


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(SessionRecord)


def _is(value: object, kind: Any) -> bool:
    """Whether the JSON value ``value`` is of the field type ``kind``."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return any(_is(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_is(v, item) for v in value)
    if typing.get_origin(kind) is dict:
        key, item = typing.get_args(kind)
        return isinstance(value, dict) and all(
            _is(k, key) and _is(v, item) for k, v in value.items()
        )
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:  # JSON writes 5.0 as 5 too; NaN and Infinity are no time or duration
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind is str:
        return isinstance(value, str)
    raise TypeError(f"a session record field cannot be of type {kind!r}")  # caught by the tests


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is list:
        return f"a list of {_describe(typing.get_args(kind)[0]).split(' ', 1)[1]}s"
    if typing.get_origin(kind) is dict:
        return "an object"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number"}
    return names.get(kind, "a string")


def _shown_value(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _shown_path(path: Path) -> str:
    """``path`` with the home directory written ``~`` (as in one-line problems)."""
    with contextlib.suppress(RuntimeError, ValueError):
        return str(Path("~") / path.relative_to(Path.home()))
    return str(path)


def _read(path: Path) -> SessionRecord:
    """The record in the file ``path``; raises :class:`RecordError`, or FileNotFoundError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except UnicodeDecodeError:
        raise RecordError("not JSON") from None
    except OSError as exc:
        raise RecordError(f"cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise RecordError("not JSON") from None
    if not isinstance(data, dict):
        raise RecordError("not a JSON object")
    record = SessionRecord.from_json(data)
    if record.session_id != path.stem:
        raise RecordError(f"it names session {record.session_id}, not {path.stem}")
    return record


def _file_lock(path: Path) -> Any:
    try:
        import filelock
    except ImportError as exc:
        raise PrerequisiteError(
            "the Python package filelock, which nodetunnel needs to lock its session store, "
            "is missing",
            hint="reinstall nodetunnel (pip install nodetunnel), or: pip install 'filelock>=3.12'",
        ) from exc
    return filelock.FileLock(str(path), mode=0o600)


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
        """Hold the store's lock: one writer at a time, across threads and processes."""
        from .proc import NotReady, wait_until

        self._ensure()
        lock = _file_lock(self.root / ".lock")
        import filelock  # imported by _file_lock, or it raised PrerequisiteError

        def take() -> bool:
            try:
                lock.acquire(blocking=False)
            except filelock.Timeout:
                raise NotReady("another nodetunnel process holds it") from None
            return True

        wait_until(
            take,
            timeout_s=LOCK_TIMEOUT_S,
            what=f"the lock of the session store {self.root}",
            max_interval_s=0.05,
            hint="another nodetunnel command is saving a session; try again when it is done",
        )
        try:
            yield
        finally:
            lock.release()

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
        """Forget a session: its record and the page that opened its URL (both hold its token)."""
        path = self._path(session_id)
        with self._locked():
            path.unlink(missing_ok=True)
            self.page_path(session_id).unlink(missing_ok=True)

    def page_path(self, session_id: str) -> Path:
        """Where ``nodetunnel open`` writes the 0600 page that opens the session's URL."""
        return self._path(session_id).with_name(f"{session_id}.open.html")

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
            return _read(path)
        except FileNotFoundError:
            raise UsageError(
                f"no session {session_id} on this machine",
                hint="see 'nodetunnel list' for the sessions there are",
            ) from None
        except NewerRecordError as exc:
            raise NodetunnelError(
                f"the record of session {session_id} is unreadable here: {exc}",
                hint="use the newer nodetunnel to see or stop this session, or upgrade this one",
            ) from exc
        except RecordError as exc:
            raise NodetunnelError(
                f"the record of session {session_id} is unreadable: {exc}",
                hint=f"remove {path} (the job, if any, is not affected)",
            ) from exc

    def scan(self) -> tuple[list[SessionRecord], list[str]]:
        """Every readable record, oldest first, and one line per record that is not.

        Each problem names the file and the cause, e.g. ``~/.local/state/nodetunnel/
        sessions/nt-1234abcd.json: unreadable record (not JSON); remove it if its job
        has ended``. Files whose names are not session ids are not records, and are left alone.
        """
        if not self.root.is_dir():
            return [], []
        records, problems = [], []
        for path in sorted(self.root.glob("nt-*.json")):
            if not _ID.fullmatch(path.stem):
                continue
            try:
                records.append(_read(path))
            except FileNotFoundError:  # removed since the listing
                continue
            except RecordError as exc:
                problems.append(f"{_shown_path(path)}: {exc.problem()}")
        return sorted(records, key=lambda r: r.created), problems

    def all(self) -> list[SessionRecord]:
        """Every readable record, oldest first (:meth:`scan` also says which are not)."""
        return self.scan()[0]

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
