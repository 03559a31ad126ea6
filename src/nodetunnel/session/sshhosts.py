"""``Host`` entries for a session's allocated node, for VS Code Remote-SSH and plain ssh.

``nodetunnel ssh-config ID`` adds an entry named ``nodetunnel-ID`` to a file that
nodetunnel manages (next to the session records, mode 0600); the user's
``~/.ssh/config`` includes it with one line, which nodetunnel prints and never
writes itself. The entry names only the node the scheduler allocated to the
session's job, through the session's own jump chain, and it is removed when
the session ends (the file is rewritten from the live sessions).

Where the cluster's connections are shared (see :mod:`nodetunnel.transport.sharing`),
the jump hosts get ``ControlMaster no`` and the ``ControlPath`` of nodetunnel's
shared connections: the ssh that an entry starts for each hop (ProxyJump) rides
the connection nodetunnel holds there, so it asks for no second MFA code. Those
connections live as long as a nodetunnel session (or command) on that cluster
holds them; once the last one has ended, the sockets are gone and ssh logs in
at each hop as usual. While an entry is there, a plain ``ssh`` to a jump host
rides them too, and ends when they close.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import NodetunnelError, UsageError
from ..state import SessionRecord, SessionStore
from ..transport.openssh import _config_word, control_path
from .model import SESSIONS_DIR

ALIAS_PREFIX = "nodetunnel-"


def managed_path(store: SessionStore) -> Path:
    """The file of entries: beside the session records (e.g. ~/.local/state/nodetunnel)."""
    return store.root.parent / "ssh_config"


def _wanted_path(store: SessionStore) -> Path:
    """The ids of the sessions that asked for an entry (kept apart from their records, so
    that a keeper rewriting a record never drops an entry)."""
    return store.root.parent / "ssh_config.sessions"


def _wanted(store: SessionStore) -> list[str]:
    try:
        return [ln for ln in _wanted_path(store).read_text().split() if ln.startswith("nt-")]
    except FileNotFoundError:
        return []


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def alias(record: SessionRecord) -> str:
    return ALIAS_PREFIX + record.session_id


def include_line(path: Path) -> str:
    """The line to put at the top of ``~/.ssh/config`` (before any ``Host``)."""
    return f"Include {_config_word(str(path), 'path')}"


def render(records: Sequence[SessionRecord], shared: Mapping[str, Path] | None = None) -> str:
    """The managed file for ``records`` (pure). Profile extras are included last.

    ``shared`` maps a session id to its cluster's control directory, where its jump
    hosts' shared connections are (only for clusters that share them).
    """
    lines = [
        "# Managed by nodetunnel: one entry per running session that asked for one",
        "# ('nodetunnel ssh-config ID'); rewritten when sessions end. Do not edit.",
    ]
    includes: list[str] = []
    names: list[str] = []
    riding: dict[str, Path] = {}  # a jump host: the directory of its shared connection
    for record in records:
        if not record.node:
            continue
        hops = ",".join(f"{record.user}@{h}" if record.user else h for h in record.jump)
        lines += ["", f"Host {alias(record)}", f"    HostName {record.node}",
                  # The node's key under its own name, shared with plain ssh to it.
                  f"    HostKeyAlias {record.node}",
                  f"    ProxyJump {hops}"]  # fmt: skip
        if record.user:
            lines.append(f"    User {record.user}")
        includes += [p for p in record.ssh_includes if p not in includes]
        names += [h for h in (alias(record), *record.jump) if h not in names]
        control_dir = (shared or {}).get(record.session_id)
        if control_dir is not None:
            for hop in record.jump:  # a hop of two clusters: the first one's connection
                riding.setdefault(hop, control_dir)
    for control_dir in dict.fromkeys(riding.values()):
        # The ssh each hop's ProxyJump starts rides nodetunnel's shared connection while a
        # session on that cluster holds it; else (no socket there) it logs in as usual.
        lines += ["", "Host " + " ".join(_config_word(h, "host") for h, d in riding.items()
                                         if d == control_dir),
                  "    ControlMaster no",
                  f"    ControlPath {control_path(control_dir)}"]  # fmt: skip
    if includes:  # the profile's extra config, for these entries and their jump hosts only
        lines += ["", f"Match host {','.join(names)}"]
        lines += [f"    Include {_config_word(p, 'path')}" for p in includes]
    return "\n".join(lines) + "\n"


def _shared(records: Sequence[SessionRecord]) -> dict[str, Path]:
    """The control directory of each record's cluster, where its connections are shared."""
    from ..transport.base import ClusterRef
    from ..transport.sharing import control_dir_for, private_runtime_dir

    found: dict[str, Path] = {}
    for record in records:
        ref = ClusterRef.of(record)
        if not record.node or not ref.multiplex:
            continue
        try:
            found[record.session_id] = control_dir_for(private_runtime_dir(), ref.key)
        except (NodetunnelError, OSError):  # no private runtime directory: ssh logs in as usual
            continue
    return found


def sync(store: SessionStore) -> Path | None:
    """Rewrite the managed file from the live sessions that asked for an entry (atomic, 0600).

    Returns its path, or None when there is nothing to write and no file to update.
    """
    path = managed_path(store)
    wanted = _wanted(store)
    if not wanted and not path.exists():
        return None
    records = [r for r in store.all() if r.session_id in wanted]
    _write_private(path, render(records, _shared(records)))
    live = [r.session_id for r in records]
    if live != wanted:  # the ended sessions' wishes go with them
        _write_private(_wanted_path(store), "".join(f"{sid}\n" for sid in live))
    return path


def add(store: SessionStore, record: SessionRecord) -> tuple[Path, str]:
    """Give ``record`` an entry; return the managed file and the entry's name."""
    if not record.node:
        raise UsageError(
            f"session {record.session_id} has no node yet",
            hint="try again once 'nodetunnel list' shows it RUNNING",
        )
    wanted = _wanted(store)
    if record.session_id not in wanted:
        _write_private(_wanted_path(store), "".join(f"{s}\n" for s in [*wanted, record.session_id]))
    path = sync(store)
    if path is None:  # pragma: no cover - there is a wanted, stored session now
        raise UsageError(
            f"session {record.session_id} is not known here", hint="see 'nodetunnel list'"
        )
    return path, alias(record)


def remote_home(record: SessionRecord) -> str | None:
    """The session's home directory on the cluster: its session directory is made there
    (``$HOME/.nodetunnel/sessions/ID``). None for a record without one."""
    suffix = f"/{SESSIONS_DIR}/{record.session_id}"
    if not record.session_dir.startswith("/") or not record.session_dir.endswith(suffix):
        return None
    return posixpath.normpath(record.session_dir.removesuffix(suffix) or "/")


def remote_folder(record: SessionRecord, folder: str | None, *, laptop_home: str) -> str:
    """The absolute folder on the node for ``--dir folder`` (default: the cluster home).

    ``~`` and ``~/PATH`` mean the cluster home; so does this machine's home directory
    (``laptop_home``), which an unquoted ``~/PATH`` became in this machine's shell before
    nodetunnel saw it. VS Code takes the folder literally, so anything else must be absolute.
    """
    home = remote_home(record)
    laptop_home = posixpath.normpath(laptop_home) if laptop_home.startswith("/") else ""
    rest: str | None = None
    if folder is None or folder == "~":
        rest = ""
    elif folder.startswith("~/"):
        rest = folder[2:]
    elif folder.startswith("/"):
        inside = laptop_home not in ("", "/", home) and (
            folder == laptop_home or folder.startswith(laptop_home + "/")
        )
        if not inside:
            return posixpath.normpath(folder)
        rest = folder[len(laptop_home) :].lstrip("/")
    else:
        raise UsageError(
            f"--dir {folder!r} is not an absolute path: VS Code opens the folder on the node "
            "exactly as given",
            hint="give an absolute path (--dir /path/on/node) or one in your cluster home "
            "(--dir '~/project', quoted)",
        )
    if home is None:
        shown = "the default folder" if folder is None else f"--dir {folder!r}"
        raise UsageError(
            f"{shown} needs the session's home on the cluster, which session "
            f"{record.session_id} does not record",
            hint="give the folder on the node as an absolute path: --dir /path/on/node",
        )
    return posixpath.normpath(posixpath.join(home, rest)) if rest else home
