"""Golden-file comparison for the unit tests.

``golden(name, text)`` compares ``text`` with ``tests/golden/<name>``. To (re)write
the golden files after an intended change, run::

    NODETUNNEL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit

then read ``git diff tests/golden`` before committing: the golden files are the
review surface for every rendered config.

The fixtures at the end make this machine look like another platform: the whole
unit suite runs with /proc unreadable (``no_proc``, as on macOS and Windows), and
``windows_like`` takes away what Windows lacks (fcntl, os.getuid, POSIX signals).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("NODETUNNEL_UPDATE_GOLDEN") == "1"

Golden = Callable[[str, str], None]


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN_DIR / name
    if UPDATE:
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(
            f"golden file {path} does not exist; create it with NODETUNNEL_UPDATE_GOLDEN=1",
            pytrace=False,
        )
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="rendered",
            )
        )
        pytest.fail(
            f"rendered output differs from golden/{name} "
            f"(if intended: NODETUNNEL_UPDATE_GOLDEN=1 pytest tests/unit):\n{diff}",
            pytrace=False,
        )


@pytest.fixture
def golden() -> Golden:
    """Compare rendered text with a golden file (or write it, with NODETUNNEL_UPDATE_GOLDEN=1)."""
    return check_golden


@pytest.fixture
def golden_input() -> Callable[[str], str]:
    """Read a checked-in input file (e.g. Debian's /etc/pam.d/sshd) from tests/golden."""
    return lambda name: (GOLDEN_DIR / name).read_text()


# ------------------------------------------------------------- other platforms
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "proc_readable: this unit test may read /proc (the suite otherwise may not)"
    )


def _under_proc(path: object) -> bool:
    if isinstance(path, int):  # an open file descriptor
        return False
    try:
        text = os.fsdecode(os.fspath(path))  # type: ignore[call-overload]
    except TypeError:
        return False
    full = os.path.abspath(text)
    return full == "/proc" or full.startswith("/proc/")


def _strict(caller: str) -> bool:
    """Every reader is refused but psutil (the platform layer: on Linux it *is* /proc)."""
    return not caller.startswith("psutil")


def _library(caller: str) -> bool:
    """Only nodetunnel's own modules are refused (tests may look at /proc to check on them).

    Not the sandbox: the mini-cluster is Linux-only by design (namespaces, cgroups, root).
    """
    if caller.startswith("nodetunnel.sandbox"):
        return False
    return caller == "nodetunnel" or caller.startswith("nodetunnel.")


def _refusing(real: Callable[..., Any], refused: Callable[[str], bool]) -> Callable[..., Any]:
    def wrapper(path: object = ".", *args: Any, **kwargs: Any) -> Any:
        if _under_proc(path):
            caller = str(sys._getframe(1).f_globals.get("__name__", ""))
            if refused(caller):
                raise PermissionError(13, "Permission denied (no /proc in this test)", str(path))
        return real(path, *args, **kwargs)

    return wrapper


def _mask_proc(monkeypatch: pytest.MonkeyPatch, refused: Callable[[str], bool]) -> None:
    import builtins
    import io
    import pathlib

    for module, name in (
        (builtins, "open"),
        (io, "open"),
        (os, "open"),
        (os, "listdir"),
        (os, "scandir"),
        (pathlib.Path, "open"),  # write_text and the like go through it
        (pathlib.Path, "read_text"),
        (pathlib.Path, "read_bytes"),
    ):
        monkeypatch.setattr(module, name, _refusing(getattr(module, name), refused))


@pytest.fixture
def no_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of a path under /proc fails, as on macOS and Windows, where there is none.

    Only psutil may still read it: psutil is the platform layer, and on Linux its
    backend *is* /proc (on macOS it asks sysctl, on Windows the Win32 API). So code
    that reads /proc itself fails under this fixture, and code that goes through
    psutil works as it would elsewhere.
    """
    _mask_proc(monkeypatch, _strict)


@pytest.fixture(autouse=True)
def _no_proc_for_nodetunnel(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the whole unit suite, nodetunnel's own code cannot read /proc.

    Tests themselves still may (some check on a process they started that way),
    and ``@pytest.mark.proc_readable`` lifts the mask for one test.
    """
    if request.node.get_closest_marker("proc_readable") is None:
        _mask_proc(monkeypatch, _library)


@pytest.fixture
def windows_like(monkeypatch: pytest.MonkeyPatch, no_proc: None, tmp_path: Path) -> None:
    """What nodetunnel's own code sees on Windows, as far as it can be faked on POSIX.

    ``sys.platform`` is "win32"; there is no ``fcntl`` module (importing it fails),
    no ``os.getuid``/``geteuid``/``getgid``/``getegid``, no ``os.WNOHANG``, no
    SIGKILL/SIGCONT/SIGSTOP, and no /proc. ``os.name`` stays "posix": pathlib and
    subprocess pick their classes from it, and a WindowsPath cannot exist here.

    The libraries nodetunnel uses (psutil, filelock, platformdirs, click, rich) are
    imported first, for the real platform, as they would be on Windows for Windows:
    what is tested is that nodetunnel itself assumes nothing POSIX. Nothing here is
    a real Windows.
    """
    import signal

    import click.testing
    import filelock
    import platformdirs
    import psutil  # type: ignore[import-untyped,unused-ignore]
    import rich.console

    del click, filelock, platformdirs, psutil, rich
    monkeypatch.setitem(sys.modules, "fcntl", None)
    for name in ("getuid", "geteuid", "getgid", "getegid", "WNOHANG"):
        monkeypatch.delattr(os, name, raising=False)
    for name in ("SIGKILL", "SIGCONT", "SIGSTOP"):
        monkeypatch.delattr(signal, name, raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
