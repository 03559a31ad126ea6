"""nodetunnel.proc: run, wait_until and ProcessRef, against real local programs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetunnel.errors import (
    CommandError,
    CommandNotFound,
    CommandTimeout,
    ExitCode,
    WaitTimeout,
)
from nodetunnel.proc import NotReady, ProcessRef, run, spawn, wait_until

PY = sys.executable
HAVE_PROC = Path("/proc/self/stat").exists()


# -------------------------------------------------------------------------- run
def test_run_success_returns_output() -> None:
    done = run([PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], timeout_s=10)
    assert done.returncode == 0
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"
    assert done.argv == [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    assert done.duration_s >= 0


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


def test_wait_until_with_zero_timeout_probes_once() -> None:
    calls = []
    with pytest.raises(WaitTimeout):
        wait_until(lambda: calls.append(1), timeout_s=0, what="x")
    assert calls == [1]


# ------------------------------------------------------------------- ProcessRef
needs_proc = pytest.mark.skipif(not HAVE_PROC, reason="needs /proc")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


@needs_proc
def test_process_ref_of_own_process_is_alive() -> None:
    ref = ProcessRef.of(os.getpid())
    assert ref is not None
    assert ref.pid == os.getpid()
    assert ref.start_ticks > 0
    assert ref.alive()
    assert ProcessRef.of(os.getpid()) == ref  # the start time is stable


@needs_proc
def test_process_ref_with_wrong_start_time_is_not_alive() -> None:
    ref = ProcessRef.of(os.getpid())
    assert ref is not None
    impostor = ProcessRef(ref.pid, ref.start_ticks + 1)
    assert not impostor.alive()
    assert not impostor.signal(0)  # and is never signalled


@needs_proc
def test_finished_child_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    ref = ProcessRef.of(proc.pid)  # not reaped yet, so /proc still has it
    assert ref is not None
    proc.wait(timeout=5)
    assert not ref.alive()
    assert not ProcessRef(proc.pid, 0).alive()
    assert ProcessRef.of(proc.pid) is None
    assert not ref.signal(15)
    ref.stop(timeout_s=0.1)  # a no-op on a dead process


@needs_proc
def test_zombie_child_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    ref = ProcessRef.of(proc.pid)
    assert ref is not None
    # Wait until it has exited but is not reaped (a zombie), without reaping it.
    wait_until(
        lambda: Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
        timeout_s=5,
        what="the child to exit",
    )
    assert not ref.alive()
    proc.wait(timeout=5)


@needs_proc
def test_process_ref_of_missing_pid_is_none() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert ProcessRef.of(pid_max) is None
    assert not ProcessRef(pid_max, 1).alive()


@needs_proc
def test_stop_ends_a_sleeping_child(sleeper: subprocess.Popen[bytes]) -> None:
    ref = ProcessRef.of(sleeper.pid)
    assert ref is not None
    assert ref.alive()
    started = time.monotonic()
    ref.stop(timeout_s=3)
    assert time.monotonic() - started < 2
    assert not ref.alive()
    sleeper.wait(timeout=2)  # already reaped by ProcessRef; must not hang


@needs_proc
def test_stop_ends_a_frozen_child_at_once(sleeper: subprocess.Popen[bytes]) -> None:
    ref = ProcessRef.of(sleeper.pid)
    assert ref is not None
    os.kill(sleeper.pid, signal.SIGSTOP)
    started = time.monotonic()
    ref.stop(timeout_s=3)  # SIGTERM alone would wait for a SIGCONT
    assert time.monotonic() - started < 2
    assert not ref.alive()


@needs_proc
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


@needs_proc
def test_process_ref_handles_odd_command_names(tmp_path: Path) -> None:
    # The command name in /proc/PID/stat is in parentheses and may contain ") (" and spaces.
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


@needs_proc
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
