"""nodetunnel's process, state and runtime-directory code with what Windows lacks taken away.

The ``windows_like`` fixture (conftest.py) sets ``sys.platform`` to "win32" and
removes fcntl, os.getuid and friends, os.WNOHANG, SIGKILL/SIGCONT/SIGSTOP and
/proc. It is not Windows: it shows that nodetunnel's own code makes none of
those POSIX assumptions, which is what made even ``--dry-run`` crash there.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nodetunnel.errors import NodetunnelError
from nodetunnel.proc import ProcessRef, reap, spawn, wait_until
from nodetunnel.state import SessionRecord, SessionStore
from nodetunnel.transport.sharing import private_runtime_dir

pytestmark = pytest.mark.usefixtures("windows_like")


def _record(session_id: str = "nt-0123abcd") -> SessionRecord:
    return SessionRecord(session_id=session_id, app="jupyter", job_id="42", jump=["login"])


@pytest.fixture
def fresh_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import nodetunnel.proc, .state and the OpenSSH transport anew (the old ones come back)."""
    import nodetunnel
    import nodetunnel.transport

    for name in ("proc", "state"):
        monkeypatch.setattr(nodetunnel, name, sys.modules[f"nodetunnel.{name}"])
        monkeypatch.delitem(sys.modules, f"nodetunnel.{name}")
    monkeypatch.setattr(
        nodetunnel.transport, "openssh", sys.modules["nodetunnel.transport.openssh"]
    )
    monkeypatch.delitem(sys.modules, "nodetunnel.transport.openssh")


def _collect(ref: ProcessRef) -> None:
    """Collect a child that has exited (here nobody else will: os.WNOHANG is gone)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(ref.pid, 0)


def test_the_fixture_takes_away_what_windows_lacks() -> None:
    assert sys.platform == "win32"
    with pytest.raises(ImportError):
        import fcntl  # noqa: F401
    assert not hasattr(os, "getuid")
    assert not hasattr(os, "WNOHANG")
    assert not hasattr(signal, "SIGKILL")
    if Path("/proc/self/stat").exists():
        with pytest.raises(PermissionError):
            Path("/proc/self/stat").read_text()


@pytest.mark.usefixtures("fresh_modules")
def test_the_modules_import_without_fcntl_or_getuid(tmp_path: Path) -> None:
    state = importlib.import_module("nodetunnel.state")
    proc = importlib.import_module("nodetunnel.proc")
    ssh = importlib.import_module("nodetunnel.transport.openssh")
    store = state.SessionStore(tmp_path)
    store.save(state.SessionRecord(session_id="nt-0123abcd", app="x", job_id="1", jump=["a"]))
    assert store.load("nt-0123abcd").job_id == "1"
    me = proc.ProcessRef.of(os.getpid())
    assert me is not None
    assert me.alive()
    assert ssh.SshSettings(multiplex=False).multiplex is False


# ------------------------------------------------------------------------ state
def test_save_load_remove(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    rec = _record()
    store.save(rec)
    assert store.load("nt-0123abcd") == rec
    assert store.scan() == ([rec], [])
    store.remove("nt-0123abcd")
    assert store.all() == []


def test_lock_keeps_a_second_thread_waiting(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    order: list[str] = []

    def save() -> None:
        store.save(_record())
        order.append("saved by the second thread")

    with store._locked():
        worker = threading.Thread(target=save)
        worker.start()
        time.sleep(0.3)
        order.append("released by the first")
    worker.join(10)
    assert order == ["released by the first", "saved by the second thread"]
    assert store.load("nt-0123abcd").job_id == "42"


def test_lock_keeps_another_process_waiting(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    done = tmp_path / "done"
    script = (
        "import pathlib, sys\n"
        "from nodetunnel.state import SessionRecord, SessionStore\n"
        "store = SessionStore(pathlib.Path(sys.argv[1]))\n"
        "store.save(SessionRecord(session_id='nt-0000000b', app='x', job_id='2', jump=['a']))\n"
        "pathlib.Path(sys.argv[2]).write_text('saved')\n"
    )
    with store._locked():
        other = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(done)])
        time.sleep(1.0)
        waiting = other.poll() is None and not done.exists()
    # (Popen.wait(timeout=...) needs os.WNOHANG, gone here; Popen.poll does not.)
    assert wait_until(lambda: other.poll() is not None, timeout_s=30, what="the other save")
    assert other.returncode == 0
    assert waiting, "the other process did not wait for the lock"
    assert done.read_text() == "saved"
    assert [r.session_id for r in store.all()] == ["nt-0000000b"]


# ------------------------------------------------------------------------- proc
def test_spawn_alive_stop(tmp_path: Path) -> None:
    log = tmp_path / "log"
    ref = spawn(["sh", "-c", "echo started; exec sleep 30"], log_path=log)
    try:
        assert ProcessRef.of(ref.pid) == ref
        assert ref.alive()
        assert ref.signal(0)  # a no-op probe: on Windows, os.kill(pid, 0) would end it
        assert ref.alive()
        wait_until(lambda: log.read_text() == "started\n", timeout_s=5, what="the log line")
        ref.stop(timeout_s=5)  # SIGTERM; no SIGCONT, no SIGKILL to send
        assert not ref.alive()
    finally:
        if ref.alive():
            os.kill(ref.pid, 9)
            wait_until(lambda: not ref.alive(), timeout_s=5, what="the child to be killed")
        _collect(ref)


def test_a_process_that_ignores_sigterm_gets_it_again(tmp_path: Path) -> None:
    # On Windows, SIGTERM is TerminateProcess and cannot be ignored; here it can, so stop()
    # sends it twice and then reports the survivor (it never reaches for a missing SIGKILL).
    ready = tmp_path / "ready"
    script = (
        "import signal, time, pathlib, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "time.sleep(30)\n"
    )
    ref = spawn([sys.executable, "-c", script, str(ready)], log_path=tmp_path / "log")
    try:
        wait_until(ready.exists, timeout_s=10, what="the child to ignore SIGTERM")
        with pytest.raises(NodetunnelError, match=f"PID {ref.pid} to exit"):
            ref.stop(timeout_s=0.2)
    finally:
        os.kill(ref.pid, 9)
        wait_until(lambda: not ref.alive(), timeout_s=5, what="the child to be killed")
        _collect(ref)


def test_reap_is_a_no_op_without_waitpid_flags() -> None:
    proc = subprocess.Popen(["true"])
    reap(proc.pid)  # nothing to collect on Windows: returns, does not raise
    assert wait_until(lambda: proc.poll() is not None, timeout_s=5, what="true to exit")
    assert proc.returncode == 0  # still ours to collect: reap took nothing


# ------------------------------------------------------------ private_runtime_dir
def test_private_runtime_dir_is_the_per_user_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    asked: list[tuple[object, ...]] = []
    local = tmp_path / "AppData" / "Local" / "Temp" / "nodetunnel"

    def user_runtime_dir(*args: object, **kwargs: object) -> str:
        asked.append((*args, *kwargs.values()))
        return str(local)

    monkeypatch.setattr(platformdirs, "user_runtime_dir", user_runtime_dir)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # not a Windows setting: not used
    root = private_runtime_dir()
    assert root == local
    assert root.is_dir()
    assert asked == [("nodetunnel", False)]
    assert private_runtime_dir() == root  # a second call reuses it


def test_private_runtime_dir_checks_no_owner_or_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    local = tmp_path / "nodetunnel"
    local.mkdir(mode=0o755)  # mode bits mean nothing on Windows (an ACL protects the folder)
    local.chmod(0o755)
    monkeypatch.setattr(platformdirs, "user_runtime_dir", lambda *a, **k: str(local))
    assert private_runtime_dir() == local


def test_private_runtime_dir_refuses_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    local = tmp_path / "nodetunnel"
    local.write_text("not a directory")
    monkeypatch.setattr(platformdirs, "user_runtime_dir", lambda *a, **k: str(local))
    with pytest.raises(NodetunnelError, match="is not a directory") as info:
        private_runtime_dir()
    assert info.value.hint


# ---------------------------------------------------------------------- the CLI
def test_dry_run_imports_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The defect as a user met it: even 'nodetunnel jupyter --dry-run' crashed on Windows,
    # importing fcntl. Every nodetunnel module is imported anew, under the fixture.
    from click.testing import CliRunner

    import nodetunnel

    for name in [m for m in sys.modules if m.startswith("nodetunnel.")]:
        if name.count(".") == 1:
            monkeypatch.setattr(nodetunnel, name.split(".")[1], sys.modules[name])
        monkeypatch.delitem(sys.modules, name)
    for var in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    cli = importlib.import_module("nodetunnel.cli")
    # click picks its Windows console code from sys.platform when it writes, which cannot work
    # here: the platform name goes back for the run (fcntl, getuid and /proc stay masked).
    monkeypatch.setattr(sys, "platform", os.uname().sysname.lower())
    result = CliRunner().invoke(cli.cli, ["jupyter", "--cluster", "swc", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "sbatch --parsable" in result.output
    assert sys.modules["fcntl"] is None  # still masked: nothing needed it


def test_the_mini_cluster_says_in_one_line_that_it_needs_linux(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodetunnel.errors import PrerequisiteError
    from nodetunnel.sandbox.prereqs import check_prerequisites

    with pytest.raises(PrerequisiteError) as err:
        check_prerequisites()
    assert "Linux" in err.value.message
