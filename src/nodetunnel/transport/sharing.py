"""One set of shared SSH connections per cluster, for every nodetunnel command.

Each cluster (each distinct way of reaching it: jump chain, user, ssh
includes, ...) has one private control directory, ``RUNTIME/c-<hash>``, where
ssh keeps the ControlMaster sockets of its hops. Every nodetunnel process that
talks to the cluster -- a foreground session, a detached session's keeper,
``list``, ``logs``, ``stop``, ``attach`` -- points its ControlPath there, so
while any of them holds the connections, the others ride them: no new login,
no new MFA prompt.

Lifetime rules:

- A process *holds* the directory while it uses the connections: a file
  ``holders/<pid>-<random>`` that it keeps locked (``flock``). A holder that
  died (killed hard) lets go of its lock with its last file descriptor; the
  next look finds it stale and removes it.
- The connections are closed (``ssh -O exit``) by the *last* holder to let go,
  never by one while another lives: a ``list`` next to a keeper leaves them
  up, the end of the last session on a cluster closes them.
- Letting go and taking hold are serialised by ``lock`` in the directory, so a
  new command never rides a connection that is being closed.
- ControlPersist still bounds a connection nobody closed (e.g. the last holder
  was killed hard): ssh ends it after that many idle seconds.

Windows' OpenSSH has no ControlMaster; without connection sharing
(``multiplex = false``) there is nothing to hold and every command logs in.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import NodetunnelError, UsageError
from ..proc import run

HOLDERS = "holders"


#: ssh creates a control socket as "<ControlPath>.<16 random characters>", then renames it;
#: ControlPath is "<dir>/%C", and %C expands to 40 hex digits.
_CONTROL_PATH_EXTRA = 1 + 40 + 1 + 16
#: sun_path holds 104 bytes on macOS and the BSDs (108 on Linux and Windows), the
#: terminating NUL included; ssh refuses a path that does not leave room for it.
_SUN_PATH_MAX = 104
#: The longest socket path ssh can use on every platform.
_SOCKET_PATH_MAX = _SUN_PATH_MAX - 1


def private_runtime_dir() -> Path:
    """A short, private (0700) directory for control sockets and session files.

    ``$XDG_RUNTIME_DIR/nodetunnel`` where there is one, else ``/tmp/nodetunnel-UID``
    (not ``$TMPDIR``, which is too long for sockets on macOS). On Windows, which has
    neither user ids nor mode bits (nor connection sharing, so no sockets), the
    per-user runtime directory (``%LOCALAPPDATA%\\Temp\\nodetunnel``), private by its ACL.
    """
    if sys.platform == "win32":
        import platformdirs

        root = Path(platformdirs.user_runtime_dir("nodetunnel", appauthor=False))
        with contextlib.suppress(FileExistsError):  # a file there: refused below
            root.mkdir(parents=True, exist_ok=True)
        if not stat.S_ISDIR(root.lstat().st_mode):  # a file, a link or a junction
            raise NodetunnelError(f"{root} is not a directory", hint=f"remove {root} and try again")
        return root
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        root = Path(base) / "nodetunnel"
    else:
        root = Path("/tmp") / f"nodetunnel-{os.getuid()}"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = root.lstat()
    if st.st_uid != os.getuid() or not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o077:
        raise NodetunnelError(
            f"{root} is not a private directory owned by you",
            hint=f"remove {root} (someone else may have created it) and try again",
        )
    return root


def check_control_dir(path: Path) -> None:
    """Refuse a control-socket directory whose socket paths would be too long for ssh."""
    if len(os.fsencode(path)) + _CONTROL_PATH_EXTRA > _SOCKET_PATH_MAX:
        raise UsageError(
            f"the directory {path} is too long for ssh's connection-sharing sockets",
            hint="set XDG_RUNTIME_DIR to a short directory (e.g. /tmp/xdg-$USER), or unset it",
        )


def control_dir_for(runtime_dir: Path, key: object) -> Path:
    """The control directory of the cluster with ``key`` (a ClusterRef's), below ``runtime_dir``."""
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
    return runtime_dir / f"c-{digest}"


def _private_dir(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise NodetunnelError(f"{path} is not a private directory owned by you",
                              hint=f"remove {path} and try again")  # fmt: skip


@contextlib.contextmanager
def _serialised(control_dir: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(control_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a few file operations (or one ssh -O exit)
        yield
    finally:
        os.close(fd)


def _alive(path: Path) -> bool:
    """True if the holder file ``path`` is still locked by a live process (else removed)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    else:
        path.unlink(missing_ok=True)  # its process is gone
        return False
    finally:
        os.close(fd)


class ControlLease:
    """This process's hold on a cluster's shared connections (see the module's rules)."""

    def __init__(self, control_dir: Path) -> None:
        self.control_dir = control_dir
        self._fd: int | None = None
        self._path: Path | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None or not hasattr(os, "getuid"):
            return
        import fcntl

        _private_dir(self.control_dir)
        holders = self.control_dir / HOLDERS
        with _serialised(self.control_dir):
            _private_dir(holders)
            path = holders / f"{os.getpid()}-{secrets.token_hex(4)}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._path = fd, path

    def others(self) -> int:
        """How many other live processes hold the connections."""
        holders = self.control_dir / HOLDERS
        if not holders.is_dir():
            return 0
        return sum(1 for p in holders.iterdir() if p != self._path and _alive(p))

    def release(self, close: Callable[[], None]) -> bool:
        """Let go; the last holder runs ``close`` (``ssh -O exit``). Returns whether it did."""
        if not self.control_dir.is_dir():
            if self._fd is not None:
                os.close(self._fd)
            self._fd = self._path = None
            return False
        closed = False
        with _serialised(self.control_dir):
            if self.others() == 0:
                close()
                closed = True
            if self._path is not None:
                self._path.unlink(missing_ok=True)
            if self._fd is not None:
                os.close(self._fd)
            self._fd = self._path = None
        return closed


def close_masters(control_dir: Path, ssh_binary: str = "ssh") -> None:
    """Ask every shared-connection master with a socket in ``control_dir`` to exit.

    For connections left by a nodetunnel process that was killed hard (their
    ControlPersist would keep them for minutes).
    """
    if not control_dir.is_dir():
        return
    for sock in control_dir.iterdir():
        if sock.is_socket():
            argv = [ssh_binary, "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "x"]
            with contextlib.suppress(NodetunnelError):
                run(argv, timeout_s=10, check=False)


def close_if_unused(control_dir: Path, close: Callable[[], None]) -> bool:
    """Run ``close`` if no live process holds ``control_dir`` (after a holder was killed hard)."""
    if not control_dir.is_dir():
        return False
    with _serialised(control_dir):
        if ControlLease(control_dir).others():
            return False
        close()
        return True


__all__ = [
    "ControlLease",
    "check_control_dir",
    "close_if_unused",
    "close_masters",
    "control_dir_for",
    "private_runtime_dir",
]
