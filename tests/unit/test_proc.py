"""nodetunnel.proc: run, wait_until and ProcessRef, against real local programs.

Every test here runs with /proc unreadable (the ``no_proc`` fixture), as on macOS
and Windows: only psutil, the platform layer, may still read it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from nodetunnel import proc as proc_module
from nodetunnel.errors import (
    CommandError,
    CommandNotFound,
    CommandTimeout,
    ExitCode,
    WaitTimeout,
)
from nodetunnel.proc import NotReady, ProcessRef, run, spawn, spawn_reading, wait_until

PY = sys.executable
#: Never a PID: above Linux's PID_MAX_LIMIT (2**22) and macOS's 99999, and not a multiple of 4.
NO_SUCH_PID = 2**22 + 1

pytestmark = pytest.mark.usefixtures("no_proc")


# -------------------------------------------------------------------------- run
def test_run_success_returns_output() -> None:
    done = run([PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], timeout_s=10)
    assert done.returncode == 0
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"
    assert done.argv == [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    assert done.duration_s >= 0


def test_run_attached_passes_stderr_on_and_keeps_its_end(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proc_module, "ATTACHED_STDERR_KEPT", 10)
    script = "import sys; print('out'); sys.stderr.write('é' * 20 + 'the end'); sys.exit(3)"
    done = proc_module.run_attached([sys.executable, "-c", script])
    out, err = capfd.readouterr()
    assert (done.returncode, done.stdout) == (3, "")
    assert out == "out\n"  # the terminal's, as it came
    assert err == "é" * 20 + "the end"
    assert done.stderr == "ééé" + "the end"


def test_run_attached_missing_program_raises_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound):
        proc_module.run_attached([str(tmp_path / "nope")])


def test_run_accepts_path_arguments(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("hello")
    # Typed Sequence[str], but os.PathLike arguments are converted with os.fspath.
    assert run(["cat", tmp_path / "f"], timeout_s=10).stdout == "hello"  # type: ignore[list-item]


def test_run_passes_input_on_stdin() -> None:
    text = "line 1\nline 2 with 'quotes' and ünïcode\n"
    assert run(["cat"], timeout_s=10, input=text).stdout == text


def test_run_without_input_gives_empty_stdin() -> None:
    # No input: stdin is /dev/null, so a program reading it does not hang.
    assert run(["cat"], timeout_s=10).stdout == ""


def test_run_nonzero_exit_raises_command_error() -> None:
    script = "import sys; print('boom: it broke', file=sys.stderr); sys.exit(3)"
    with pytest.raises(CommandError) as info:
        run([PY, "-c", script, "arg with space"], timeout_s=10)
    err = info.value
    assert type(err) is CommandError
    assert err.returncode == 3
    assert err.argv == [PY, "-c", script, "arg with space"]
    assert "'arg with space'" in err.command_line  # shell-quoted, copy-pasteable
    assert err.stderr_tail == "boom: it broke"
    msg = str(err)
    assert "exit code 3" in msg
    assert "boom: it broke" in msg
    assert PY in msg
    assert err.exit_code == ExitCode.COMMAND


def test_run_error_keeps_only_the_stderr_tail() -> None:
    script = (
        "import sys\nfor i in range(1, 101): print(f'err-{i:03d}', file=sys.stderr)\nsys.exit(1)"
    )
    with pytest.raises(CommandError) as info:
        run([PY, "-c", script], timeout_s=10)
    tail = info.value.stderr_tail.splitlines()
    assert tail[-1] == "err-100"
    assert "err-001" not in info.value.stderr_tail
    assert 1 <= len(tail) < 100
    assert tail == [f"err-{i:03d}" for i in range(101 - len(tail), 101)]  # the last lines, in order
    assert "err-001" not in str(info.value)
    assert "err-100" in str(info.value)


def test_run_error_falls_back_to_stdout_when_stderr_is_empty() -> None:
    with pytest.raises(CommandError) as info:
        run([PY, "-c", "print('only on stdout'); raise SystemExit(2)"], timeout_s=10)
    assert "only on stdout" in str(info.value)


def test_run_check_false_returns_the_failure() -> None:
    done = run(
        [PY, "-c", "import sys; sys.stderr.write('bad'); sys.exit(7)"], timeout_s=10, check=False
    )
    assert done.returncode == 7
    assert done.stderr == "bad"


def test_run_missing_program_raises_command_not_found() -> None:
    with pytest.raises(CommandNotFound) as info:
        run(["nodetunnel-no-such-program-xyz", "--flag"], timeout_s=10)
    err = info.value
    assert isinstance(err, CommandError)
    assert "nodetunnel-no-such-program-xyz" in err.message
    assert err.hint
    assert err.returncode is None


def test_run_missing_program_uses_the_given_hint() -> None:
    with pytest.raises(CommandNotFound) as info:
        run(["nodetunnel-no-such-program-xyz"], timeout_s=10, not_found_hint="apt-get install xyz")
    assert info.value.hint == "apt-get install xyz"


def test_run_missing_working_directory_is_not_reported_as_missing_program(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as info:
        run(["true"], timeout_s=10, cwd=tmp_path / "nope")
    assert not isinstance(info.value, CommandNotFound)
    assert "working directory" in info.value.message


def test_run_non_executable_file(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    if os.geteuid() == 0 and os.access(script, os.X_OK):
        pytest.skip("root may execute anything here")
    with pytest.raises(CommandError, match="cannot be executed"):
        run([str(script)], timeout_s=10)


def test_run_timeout_kills_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        run(["sleep", "5"], timeout_s=0.2)
    assert time.monotonic() - started < 2
    err = info.value
    assert err.timeout_s == 0.2
    assert "sleep 5" in err.message
    assert "0.2 s" in err.message
    assert err.exit_code == ExitCode.TIMEOUT


def test_run_timeout_reports_stderr_so_far() -> None:
    with pytest.raises(CommandTimeout) as info:
        run(["sh", "-c", "echo still starting >&2; exec sleep 5"], timeout_s=0.5)
    assert "still starting" in info.value.message


def test_run_passes_env_and_cwd(tmp_path: Path) -> None:
    done = run(
        ["sh", "-c", 'printf "%s %s" "$NT_TEST" "$(pwd)"'],
        timeout_s=10,
        env={"NT_TEST": "value", "PATH": os.environ["PATH"]},
        cwd=tmp_path,
    )
    assert done.stdout == f"value {tmp_path}"


def test_run_rejects_empty_argv() -> None:
    with pytest.raises(ValueError, match="empty"):
        run([], timeout_s=1)


# ------------------------------------------------------------------- wait_until
def test_wait_until_returns_the_first_truthy_value() -> None:
    answers: Iterator[object] = iter([None, 0, "", [], "ready"])
    assert wait_until(lambda: next(answers), timeout_s=5, what="x", interval_s=0.001) == "ready"


def test_wait_until_returns_at_once_when_ready() -> None:
    calls = []

    def probe() -> int:
        calls.append(1)
        return 42

    started = time.monotonic()
    assert wait_until(probe, timeout_s=5, what="x") == 42
    assert calls == [1]
    assert time.monotonic() - started < 1


def test_wait_until_timeout_names_what_and_the_last_reason() -> None:
    n = 0

    def probe() -> None:
        nonlocal n
        n += 1
        raise NotReady(f"attempt {n}: port closed")

    with pytest.raises(WaitTimeout) as info:
        wait_until(probe, timeout_s=0.2, what="the widget to answer", hint="look at widget.log")
    err = info.value
    assert err.what == "the widget to answer"
    assert err.last == f"attempt {n}: port closed"
    assert "the widget to answer" in str(err)
    assert f"attempt {n}: port closed" in str(err)
    assert "0.2 s" in str(err)
    assert err.hint == "look at widget.log"
    assert err.exit_code == ExitCode.TIMEOUT


def test_wait_until_timeout_without_reason() -> None:
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: False, timeout_s=0.05, what="nothing")
    assert info.value.last is None
    assert "last check" not in str(info.value)


def test_wait_until_keeps_the_last_reason_after_a_plain_false() -> None:
    answers = iter([NotReady("first"), None])

    def probe() -> None:
        a = next(answers, None)
        if isinstance(a, Exception):
            raise a

    with pytest.raises(WaitTimeout, match="first"):
        wait_until(probe, timeout_s=0.1, what="x")


def test_wait_until_propagates_other_exceptions_at_once() -> None:
    calls = 0

    def probe() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("daemon died")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="daemon died"):
        wait_until(probe, timeout_s=5, what="x")
    assert calls == 1
    assert time.monotonic() - started < 1


def test_wait_until_backs_off() -> None:
    calls = 0

    def probe() -> bool:
        nonlocal calls
        calls += 1
        return False

    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        wait_until(probe, timeout_s=0.5, what="x")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3
    assert 2 <= calls < 30


def test_wait_until_holds_its_first_interval_while_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from nodetunnel import proc

    clock = [0.0]
    pauses: list[float] = []

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return clock[0]

        @staticmethod
        def sleep(seconds: float) -> None:
            pauses.append(round(seconds, 3))
            clock[0] += seconds

    monkeypatch.setattr(proc, "time", Clock)
    with pytest.raises(WaitTimeout):
        wait_until(lambda: False, timeout_s=3, what="x", interval_s=0.2, eager_s=1.0,
                   max_interval_s=0.5)  # fmt: skip
    # 0.2 s apart for the first second, then growing 1.6-fold, capped at 0.5 s.
    assert pauses[:6] == [0.2] * 6
    assert pauses[6:8] == [0.32, 0.5]
    assert max(pauses) == 0.5


def test_wait_until_with_zero_timeout_probes_once() -> None:
    calls = []
    with pytest.raises(WaitTimeout):
        wait_until(lambda: calls.append(1), timeout_s=0, what="x")
    assert calls == [1]


# ------------------------------------------------------------------- ProcessRef
@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def test_process_ref_of_own_process_is_alive() -> None:
    ref = ProcessRef.of(os.getpid())
    assert ref is not None
    assert ref.pid == os.getpid()
    assert ref.start_ticks > 0
    assert ref.alive()
    assert ProcessRef.of(os.getpid()) == ref  # the start time is stable


def test_process_ref_with_wrong_start_time_is_not_alive() -> None:
    ref = ProcessRef.of(os.getpid())
    assert ref is not None
    impostor = ProcessRef(ref.pid, ref.start_ticks + 1)
    assert not impostor.alive()
    assert not impostor.signal(0)  # and is never signalled


def test_finished_child_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    ref = ProcessRef.of(proc.pid)  # not reaped yet, so the process table still has it
    assert ref is not None
    proc.wait(timeout=5)
    assert not ref.alive()
    assert not ProcessRef(proc.pid, 0).alive()
    assert ProcessRef.of(proc.pid) is None
    assert not ref.signal(15)
    ref.stop(timeout_s=0.1)  # a no-op on a dead process


def test_zombie_child_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    ref = ProcessRef.of(proc.pid)
    assert ref is not None
    # Wait until it has exited but is not reaped (a zombie), without reaping it.
    wait_until(
        lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE,
        timeout_s=5,
        what="the child to exit",
    )
    assert not ref.alive()
    proc.wait(timeout=5)


def test_process_ref_of_missing_pid_is_none() -> None:
    assert ProcessRef.of(NO_SUCH_PID) is None
    assert not ProcessRef(NO_SUCH_PID, 1).alive()


def test_stop_ends_a_sleeping_child(sleeper: subprocess.Popen[bytes]) -> None:
    ref = ProcessRef.of(sleeper.pid)
    assert ref is not None
    assert ref.alive()
    started = time.monotonic()
    ref.stop(timeout_s=3)
    assert time.monotonic() - started < 2
    assert not ref.alive()
    sleeper.wait(timeout=2)  # already reaped by ProcessRef; must not hang


def test_stop_ends_a_frozen_child_at_once(sleeper: subprocess.Popen[bytes]) -> None:
    ref = ProcessRef.of(sleeper.pid)
    assert ref is not None
    os.kill(sleeper.pid, signal.SIGSTOP)
    started = time.monotonic()
    ref.stop(timeout_s=3)  # SIGTERM alone would wait for a SIGCONT
    assert time.monotonic() - started < 2
    assert not ref.alive()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = (
        "import signal, time, pathlib, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([PY, "-c", script, str(ready)])
    try:
        wait_until(ready.exists, timeout_s=10, what="the child to ignore SIGTERM")
        ref = ProcessRef.of(proc.pid)
        assert ref is not None
        started = time.monotonic()
        ref.stop(timeout_s=0.3)
        assert not ref.alive()
        assert time.monotonic() - started < 3
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def test_process_ref_handles_odd_command_names(tmp_path: Path) -> None:
    # The command name (in parentheses in Linux's /proc/PID/stat) may contain ") (" and spaces.
    odd = tmp_path / "a) b (c"
    sleep = shutil.which("sleep")
    assert sleep is not None
    odd.symlink_to(sleep)
    proc = subprocess.Popen([str(odd), "30"])
    try:
        ref = ProcessRef.of(proc.pid)
        own = ProcessRef.of(os.getpid())
        assert ref is not None
        assert own is not None
        # Started after us, so its start time is not before ours.
        assert ref.start_ticks >= own.start_ticks
        assert ref.alive()
        ref.stop(timeout_s=3)
        assert not ref.alive()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def test_spawn_starts_a_tracked_background_process(tmp_path: Path) -> None:
    log = tmp_path / "log"
    ref = spawn(["sh", "-c", "echo started; exec sleep 30"], log_path=log)
    try:
        assert ref.alive()
        assert ref.start_ticks > 0
        wait_until(lambda: log.read_text() == "started\n", timeout_s=5, what="the log line")
        # In its own session, so a Ctrl-C to our process group does not reach it.
        assert os.getsid(ref.pid) == ref.pid
    finally:
        ref.stop(timeout_s=3)
    assert not ref.alive()


def test_spawn_missing_program(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound):
        spawn(["nodetunnel-no-such-program-xyz"], log_path=tmp_path / "log")


# ------------------------------------------ ProcessRef without /proc, via psutil
def test_no_proc_fixture_hides_proc_from_everyone_but_psutil() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("this machine has no /proc to hide")
    with pytest.raises(PermissionError):
        Path("/proc/self/stat").read_text()
    with pytest.raises(PermissionError), open("/proc/self/stat"):
        pass
    with pytest.raises(PermissionError):
        os.listdir("/proc")
    assert psutil.Process(os.getpid()).status()  # psutil, the platform layer, still works


def test_spawned_process_is_tracked_and_stopped_without_proc(tmp_path: Path) -> None:
    ref = spawn(["sleep", "30"], log_path=tmp_path / "log")
    try:
        assert ProcessRef.of(ref.pid) == ref
        assert ref.alive()
        assert ref.signal(0)
    finally:
        ref.stop(timeout_s=3)
    assert not ref.alive()
    assert not ref.signal(0)
    again = ProcessRef.of(ref.pid)
    assert again is None or again != ref


def test_start_ticks_is_the_same_from_another_process_and_through_json() -> None:
    me = ProcessRef.of(os.getpid())
    assert me is not None
    assert isinstance(me.start_ticks, int)
    script = (
        "import dataclasses, json, sys\n"
        "from nodetunnel.proc import ProcessRef\n"
        "print(json.dumps(dataclasses.asdict(ProcessRef.of(int(sys.argv[1])))))\n"
    )
    done = run([PY, "-c", script, str(os.getpid())], timeout_s=30)
    assert ProcessRef(**json.loads(done.stdout)) == me
    assert ProcessRef(**json.loads(json.dumps(dataclasses.asdict(me)))) == me
    assert ProcessRef.of(os.getpid()) == me


def test_start_ticks_does_not_move_with_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On Linux, psutil's create_time() is the boot time (which moves when NTP or a person
    # sets the clock) plus the ticks since boot; start_ticks must not move with it.
    if not psutil.LINUX:
        pytest.skip("only Linux derives the start time from the boot time")
    me = ProcessRef.of(os.getpid())
    assert me is not None
    created = psutil.Process(os.getpid()).create_time()
    fake = tmp_path / "proc"  # a procfs whose boot time is 7 s later, as after a clock step
    fake.mkdir()
    (fake / "stat").write_text(f"btime {round(psutil.boot_time()) + 7}\n")
    (fake / str(os.getpid())).symlink_to(f"/proc/{os.getpid()}")
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(fake))
    psutil.boot_time()  # psutil 5.9 keeps the boot time it read last: have it read the new one
    assert psutil.Process(os.getpid()).create_time() == pytest.approx(created + 7, abs=0.02)
    assert ProcessRef.of(os.getpid()) == me
    assert me.alive()


def test_start_ticks_keeps_the_linux_kernel_count(sleeper: subprocess.Popen[bytes]) -> None:
    # Records written when nodetunnel read /proc/PID/stat itself (clock ticks since boot) stay valid.
    if not psutil.LINUX or os.sysconf("SC_CLK_TCK") != 100:
        pytest.skip("Linux with USER_HZ = 100 only")
    ref = ProcessRef.of(sleeper.pid)
    assert ref is not None
    ticks_since_boot = psutil.Process(sleeper.pid).create_time() - psutil.boot_time()
    assert ref.start_ticks == round(ticks_since_boot * 100)


@pytest.mark.parametrize("pid", [0, -1, -os.getpid()])
def test_process_group_numbers_are_never_a_process(pid: int) -> None:
    # os.kill(0 or -N, sig) would signal a whole process group.
    assert ProcessRef.of(pid) is None
    assert not ProcessRef(pid, 1).alive()
    assert not ProcessRef(pid, 1).signal(signal.SIGTERM)


def test_spawn_of_a_program_that_exits_at_once(tmp_path: Path) -> None:
    ref = spawn(["true"], log_path=tmp_path / "log")
    wait_until(lambda: not ref.alive(), timeout_s=5, what="true to exit")
    ref.stop(timeout_s=1)  # nothing to do


def test_spawn_of_a_process_gone_before_it_could_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where a platform shows no zombie, a child that exited at once is a dead ref, as on Linux.
    calls = []

    def unreadable(pid: int) -> None:
        if not calls:  # spawn() looks only once the child has exited
            wait_until(
                lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                timeout_s=5,
                what="true to exit",
            )
        calls.append(pid)

    monkeypatch.setattr(proc_module, "_probe", unreadable)
    ref = spawn(["true"], log_path=tmp_path / "log")
    assert not ref.alive()
    assert not ref.signal(signal.SIGTERM)
    ref.stop(timeout_s=1)


def test_spawn_stops_a_process_it_cannot_track(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))  # type: ignore[call-overload]
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(proc_module, "_probe", lambda pid: None)
    with pytest.raises(CommandError, match="cannot be tracked"):
        spawn(["sleep", "30"], log_path=tmp_path / "log")
    (child,) = started
    assert child.returncode is not None  # killed and collected, not left running


def test_missing_psutil_is_a_prerequisite_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from nodetunnel.errors import PrerequisiteError

    monkeypatch.setitem(sys.modules, "psutil", None)
    with pytest.raises(PrerequisiteError, match="psutil") as info:
        ProcessRef.of(os.getpid())
    assert info.value.hint


def test_spawn_log_is_private(tmp_path: Path) -> None:
    import stat as stat_mod

    old = os.umask(0o022)
    try:
        ref = spawn(["true"], log_path=tmp_path / "p.log")
    finally:
        os.umask(old)
    assert stat_mod.S_IMODE((tmp_path / "p.log").stat().st_mode) == 0o600
    ref.stop(timeout_s=5)


def test_spawn_of_a_program_that_cannot_be_executed_is_one_clear_error(tmp_path: Path) -> None:
    program = tmp_path / "not-executable"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o644)
    with pytest.raises(CommandError) as err:
        spawn([str(program)], log_path=tmp_path / "p.log")
    assert "cannot start" in err.value.message
    assert str(program) in err.value.message


def test_wait_gone_wakes_when_the_process_ends_and_not_before() -> None:
    import threading

    child = subprocess.Popen(["sleep", "60"])
    try:
        ref = ProcessRef.of(child.pid)
        assert ref is not None
        assert ref.wait_gone(0.2) is False  # still running when the time is up
        threading.Timer(0.2, child.terminate).start()
        assert ref.wait_gone(30) is True
    finally:
        child.kill()
        child.wait()
    assert ref.wait_gone(0) is True  # already gone: at once


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_wait_gone_with_and_without_pidfds(monkeypatch: pytest.MonkeyPatch, pidfd: bool) -> None:
    if pidfd and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd_open on this platform")
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    child = subprocess.Popen(["sleep", "60"])
    try:
        ref = ProcessRef.of(child.pid)
        assert ref is not None
        assert ref.wait_gone(0.1) is False
        child.terminate()
        child.wait()
        assert ref.wait_gone(5) is True
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------------- spawn_reading
def test_spawn_reading_gives_its_output_as_it_comes() -> None:
    proc = spawn_reading([PY, "-c", "import sys, os; print('out'); print('err', file=sys.stderr);"
                          " print(not hasattr(os, 'getsid') or os.getsid(0) == os.getpid())"])  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = proc.stdout.read().decode().split()
    finally:
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert sorted(lines[:2]) == ["err", "out"]
    assert lines[2] == "True"  # a session of its own: the terminal's Ctrl-C does not reach it


def test_spawn_reading_a_missing_program_is_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound):
        spawn_reading([str(tmp_path / "no-such-program")])
