"""The ``nodetunnel`` command: help, version, usage errors, and error -> exit code mapping.

Two ways in: click's CliRunner on ``nodetunnel.cli.cli`` (parsing and help, as
click sees it) and ``nodetunnel.cli.main([...])`` (the real entry point, which
turns library errors into one message, a fix line and an exit code).
See conftest.py: nothing here may touch a real sandbox.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import nodetunnel
from nodetunnel.cli import cli, main
from nodetunnel.errors import (
    CommandError,
    CommandNotFound,
    CommandTimeout,
    ExitCode,
    NodetunnelError,
    PrerequisiteError,
    SandboxError,
    UsageError,
    WaitTimeout,
)
from nodetunnel.proc import ProcessRef
from nodetunnel.sandbox import cluster, prereqs

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- helpers
@dataclasses.dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


Run = Callable[..., Outcome]


@pytest.fixture
def nt(capsys: pytest.CaptureFixture[str]) -> Run:
    """Call nodetunnel.cli.main(args) and return its exit code and output."""

    def invoke(*args: str) -> Outcome:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out, err = capsys.readouterr()
        code = info.value.code
        assert code is None or isinstance(code, int), f"exit code {code!r} is not a number"
        return Outcome(int(code or 0), out, err)

    return invoke


def command_tree() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every (path, command) under the root, root first, found by walking the click groups."""

    def walk(
        cmd: click.Command, path: tuple[str, ...]
    ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        yield path, cmd
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=path[-1] if path else "nodetunnel")
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                yield from walk(sub, (*path, name))

    return walk(cli, ())


COMMANDS = list(command_tree())
COMMAND_IDS = [" ".join(p) or "nodetunnel" for p, _ in COMMANDS]


def assert_one_error_and_fix(result: Outcome) -> tuple[str, str]:
    assert "Traceback" not in result.err
    assert len(result.err_lines) == 2, result.err
    error, fix = result.err_lines
    assert error.startswith("nodetunnel: error: ")
    assert fix.startswith("  fix: ")
    return error, fix


# ------------------------------------------------------------- help and version
def test_the_tree_has_the_sandbox_commands() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {
        "sandbox",
        "sandbox up",
        "sandbox down",
        "sandbox status",
        "sandbox ssh-config",
    } <= paths


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=COMMAND_IDS)
def test_every_command_has_help_text(path: tuple[str, ...], cmd: click.Command) -> None:
    assert cmd.help, f"'{' '.join(path)}' has no docstring/help"
    assert cmd.help.strip()
    assert cmd.get_short_help_str(limit=80).strip()
    for param in cmd.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            assert param.help, f"option {param.opts} of {' '.join(path)} has no help"
            assert param.help.strip()


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=COMMAND_IDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_of_every_command(path: tuple[str, ...], cmd: click.Command, flag: str) -> None:
    result = CliRunner().invoke(cli, [*path, flag], prog_name="nodetunnel")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    usage = " ".join(["Usage: nodetunnel", *path])
    assert result.stdout.startswith(usage)
    assert cmd.help is not None
    first_line = cmd.help.strip().splitlines()[0]
    assert first_line[:40] in " ".join(result.stdout.split())
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(click.Context(cmd)):
            assert name in result.stdout


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=COMMAND_IDS)
def test_help_through_main_exits_0(nt: Run, path: tuple[str, ...], cmd: click.Command) -> None:
    result = nt(*path, "--help")
    assert result.code == 0
    assert result.out.startswith(" ".join(["Usage: nodetunnel", *path]))
    assert result.err == ""


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], prog_name="nodetunnel")
    assert result.exit_code == 0
    assert result.stdout == f"nodetunnel, version {nodetunnel.__version__}\n"


def test_version_through_main(nt: Run) -> None:
    for flag in ("--version", "-V"):
        result = nt(flag)
        assert result.code == 0
        assert result.out.strip() == f"nodetunnel, version {nodetunnel.__version__}"


def test_version_matches_the_package_metadata() -> None:
    assert nodetunnel.__version__ == importlib.metadata.version("nodetunnel")


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nodetunnel", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"nodetunnel, version {nodetunnel.__version__}"


def test_every_command_is_documented_in_the_readme() -> None:
    readme = REPO_ROOT / "README.md"
    assert readme.exists(), f"{readme} does not exist (it must document every command)"
    text = readme.read_text()
    missing = [
        " ".join(path)
        for path, _ in COMMANDS
        if path and not re.search(r"(?<![\w-])" + re.escape(" ".join(path)) + r"(?![\w-])", text)
    ]
    assert not missing, f"commands not mentioned in README.md: {missing}"


# ----------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "No such option"),
        (["sandbox", "up", "--bogus"], "No such option"),
        (["sandbox", "up", "--nodes", "0"], "--nodes"),
        (["sandbox", "up", "--nodes", "51"], "--nodes"),
        (["sandbox", "up", "--nodes", "two"], "--nodes"),
        (["sandbox", "up", "--nodes"], "--nodes"),
        (["nope"], "No such command"),
        (["sandbox", "nope"], "No such command"),
        (["sandbox", "status", "extra"], "unexpected extra argument"),
    ],
)
def test_usage_errors_exit_2(nt: Run, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args, prog_name="nodetunnel")
    assert result.exit_code == 2
    assert "Error: " in result.stderr
    assert message in result.stderr

    result2 = nt(*args)
    assert result2.code == ExitCode.USAGE
    assert "Error: " in result2.err
    assert message in result2.err
    assert "Traceback" not in result2.err
    assert result2.out == ""


def test_unknown_option_shows_click_usage(nt: Run) -> None:
    result = nt("sandbox", "up", "--bogus")
    assert result.code == 2
    assert result.err.startswith("Usage: nodetunnel sandbox up [OPTIONS]\n")
    assert "Try 'nodetunnel sandbox up --help' for help." in result.err
    assert "Error: No such option '--bogus'" in result.err


def test_no_command_shows_help(nt: Run) -> None:
    result = nt()
    assert result.code == ExitCode.USAGE
    assert "Usage: nodetunnel" in result.out + result.err
    assert "sandbox" in result.out + result.err
    assert "Traceback" not in result.err


# ------------------------------------------------------------ prerequisite errors
@pytest.mark.parametrize("command", ["up", "down"])
def test_not_root(nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = nt("sandbox", command, "--dir", str(tmp_path))
    assert result.code == int(ExitCode.PREREQUISITE) == 3
    error, fix = assert_one_error_and_fix(result)
    assert "root" in error
    assert "sudo" in fix
    assert result.out == ""


def test_not_root_with_default_dir(nt: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = nt("sandbox", "up")
    assert result.code == 3
    assert_one_error_and_fix(result)


def test_debug_shows_the_traceback(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = nt("--debug", "sandbox", "up", "--dir", str(tmp_path))
    assert result.code == ExitCode.PREREQUISITE
    assert "Traceback" in result.err
    assert "PrerequisiteError" in result.err
    # The message and fix still come last, as without --debug.
    assert result.err_lines[-2].startswith("nodetunnel: error: ")
    assert result.err_lines[-1].startswith("  fix: ")


def test_debug_does_not_stick_to_the_next_run(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "Traceback" in nt("--debug", "sandbox", "up", "--dir", str(tmp_path)).err
    assert "Traceback" not in nt("sandbox", "up", "--dir", str(tmp_path)).err


def test_packages_missing(nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    monkeypatch.setattr(
        prereqs,
        "REQUIRED_PROGRAMS",
        {
            str(tmp_path / "sbin" / "sshd"): "openssh-server",
            "nt-test-no-such-sbatch": "slurm-client",
            "nt-test-no-such-sinfo": "slurm-client",
            "nt-test-no-such-munge": "munge",
            "/bin/sh": "dash",  # present: must not be listed
        },
    )
    monkeypatch.setattr(prereqs, "PAM_ADOPT_PATHS", [tmp_path / "security" / "pam_slurm_adopt.so"])
    result = nt("sandbox", "up", "--dir", str(tmp_path))
    assert result.code == ExitCode.PREREQUISITE
    error, fix = assert_one_error_and_fix(result)
    pkgs = "openssh-server slurm-client munge libpam-slurm-adopt"
    assert error.endswith(f"not installed: {pkgs}")
    assert "dash" not in error
    assert f"apt-get install -y {pkgs}" in fix
    assert result.out == ""


def test_packages_missing_real_program_list(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With nothing found at all, every Debian package the sandbox needs is named once."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    monkeypatch.setattr(
        prereqs,
        "REQUIRED_PROGRAMS",
        {f"{tmp_path}/nope{prog}" if prog.startswith("/") else prog: pkg
         for prog, pkg in prereqs.REQUIRED_PROGRAMS.items()},
    )  # fmt: skip
    monkeypatch.setattr(prereqs, "PAM_ADOPT_PATHS", [])
    result = nt("sandbox", "up", "--dir", str(tmp_path))
    assert result.code == ExitCode.PREREQUISITE
    error, fix = assert_one_error_and_fix(result)
    listed = error.rsplit(": ", 1)[1].split()
    expected = {*prereqs.REQUIRED_PROGRAMS.values(), "libpam-slurm-adopt"}
    assert sorted(listed) == sorted(expected)
    for pkg in ("openssh-server", "slurmctld", "slurmd", "slurm-client", "munge"):
        assert pkg in fix


# -------------------------------------------------------------- status, ssh-config
def test_status_without_sandbox(nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # status only reads the state file
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == int(ExitCode.FAILURE) == 1
    assert "no sandbox" in result.out
    assert str(tmp_path) in result.out
    assert "sandbox up" in result.out
    assert "Traceback" not in result.err


def test_status_without_sandbox_json(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = nt("sandbox", "status", "--json", "--dir", str(tmp_path))
    assert result.code == 1
    data = json.loads(result.out)
    assert data["up"] is False
    assert data["root"] == str(tmp_path)
    assert data["daemons"] == []


def test_status_dir_from_environment(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NODETUNNEL_SANDBOX_DIR", str(tmp_path / "from-env"))
    result = nt("sandbox", "status", "--json")
    assert json.loads(result.out)["root"] == str(tmp_path / "from-env")


def _dead_process() -> dict[str, int]:
    proc = subprocess.Popen(["true"])
    ref = ProcessRef.of(proc.pid)
    proc.wait(timeout=5)
    assert ref is not None
    return {"pid": ref.pid, "start": ref.start_ticks}


def _write_state(root: Path, *, complete: bool, dead: bool) -> None:
    me = ProcessRef.of(os.getpid())
    assert me is not None
    alive = {"pid": me.pid, "start": me.start_ticks}
    processes = {
        f"{h}/{d}": alive
        for h in ("login", "gateway", "node1", "node2")
        for d in ("holder", "sshd")
    }
    processes["munge/munged"] = alive
    processes["gateway/slurmctld"] = alive
    if dead:
        processes["node2/slurmd"] = _dead_process()
    root.mkdir(parents=True, exist_ok=True)
    (root / "state.json").write_text(
        json.dumps({"node_count": 2, "processes": processes, "users": ["ntalice", "ntbob"],
                    "complete": complete})
    )  # fmt: skip


def test_status_of_a_broken_sandbox(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    _write_state(tmp_path, complete=False, dead=True)
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == ExitCode.SANDBOX
    assert "slurmd on node2" in result.out
    assert "not running" in result.out
    assert "'sandbox up' did not finish" in result.out
    assert "(dead)" in result.out
    assert "not healthy" in result.out

    result = nt("sandbox", "status", "--json", "--dir", str(tmp_path))
    assert result.code == ExitCode.SANDBOX
    data = json.loads(result.out)
    assert data["up"] is False
    assert data["hosts"]["login"] == ["198.18.1.2", "198.18.2.1"]
    assert len(data["problems"]) == 2


def test_status_of_a_healthy_sandbox(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _write_state(tmp_path, complete=True, dead=False)
    monkeypatch.setattr(
        cluster.Sandbox, "_node_states", lambda _self, _state: {"node1": "idle", "node2": "idle"}
    )
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == 0, result.out + result.err
    assert "node1" in result.out
    assert "idle" in result.out
    assert "ntalice" in result.out
    assert result.out.rstrip().endswith("up")
    data = json.loads(nt("sandbox", "status", "--json", "--dir", str(tmp_path)).out)
    assert data["up"] is True
    assert data["nodes"] == {"node1": "idle", "node2": "idle"}


def test_status_when_slurm_does_not_answer(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _write_state(tmp_path, complete=True, dead=False)

    def no_answer(_self: object, _state: object) -> dict[str, str]:
        raise CommandError(["sinfo"], 1, "slurm_load_node: Unable to contact slurm controller")

    monkeypatch.setattr(cluster.Sandbox, "_node_states", no_answer)
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == ExitCode.SANDBOX
    assert "SLURM does not answer" in result.out


def test_status_with_unreadable_state(nt: Run, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == ExitCode.SANDBOX
    error, fix = assert_one_error_and_fix(result)
    assert "state.json" in error
    assert "sandbox down" in fix


def test_ssh_config_without_sandbox(nt: Run, tmp_path: Path) -> None:
    result = nt("sandbox", "ssh-config", "--dir", str(tmp_path))
    assert result.code == int(ExitCode.SANDBOX) == 6
    error, fix = assert_one_error_and_fix(result)
    assert str(tmp_path / "ssh_config") in error
    assert "sandbox up" in fix
    assert result.out == ""


def test_ssh_config_prints_the_file(nt: Run, tmp_path: Path) -> None:
    text = "Host login\n    HostName 198.18.1.2\n"
    (tmp_path / "ssh_config").write_text(text)
    result = nt("sandbox", "ssh-config", "--dir", str(tmp_path))
    assert result.code == 0
    assert result.out == text


def test_ssh_config_writes_the_output_file(nt: Run, tmp_path: Path) -> None:
    text = "Host login\n    HostName 198.18.1.2\n"
    (tmp_path / "ssh_config").write_text(text)
    out = tmp_path / "copy"
    result = nt("sandbox", "ssh-config", "--dir", str(tmp_path), "-o", str(out))
    assert result.code == 0
    assert out.read_text() == text
    assert result.out == ""
    assert str(out) in result.err


def test_ssh_config_output_into_a_missing_directory(nt: Run, tmp_path: Path) -> None:
    (tmp_path / "ssh_config").write_text("Host login\n")
    result = nt(
        "sandbox", "ssh-config", "--dir", str(tmp_path), "-o", str(tmp_path / "no" / "file")
    )
    assert result.code != 0
    assert_one_error_and_fix(result)


# ------------------------------------------------------- errors -> exit codes
ERRORS = [
    NodetunnelError("something failed", hint="try again"),
    UsageError("bad value 'x'", hint="use 'y'"),
    PrerequisiteError("no netns", hint="use Linux"),
    CommandError(["ip", "netns", "add", "x"], 2, "RTNETLINK answers: File exists", hint="run down"),
    CommandNotFound(["sinfo"]),
    CommandTimeout(["sinfo"], 3),
    WaitTimeout("slurmctld to answer", 20, "refused", hint="see slurmctld.log"),
    SandboxError("sandbox broken", hint="run 'nodetunnel sandbox down'"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_library_errors_map_to_their_exit_code(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: NodetunnelError
) -> None:
    def fail(_self: object) -> None:
        raise error

    monkeypatch.setattr(cluster.Sandbox, "status", fail)
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == error.exit_code
    assert result.out == ""
    if error.hint:
        error_line, fix = assert_one_error_and_fix(result)
        assert fix == f"  fix: {error.hint}"
    else:
        assert len(result.err_lines) == 1
        error_line = result.err_lines[0]
    assert error_line == f"nodetunnel: error: {error.message.splitlines()[0]}"


def test_error_without_hint_prints_no_fix_line(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fail(_self: object) -> None:
        raise SandboxError("just broken")

    monkeypatch.setattr(cluster.Sandbox, "status", fail)
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == ExitCode.SANDBOX
    assert result.err == "nodetunnel: error: just broken\n"


def test_keyboard_interrupt_exits_130(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted(_self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster.Sandbox, "status", interrupted)
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == int(ExitCode.INTERRUPTED) == 130
    assert "interrupted" in result.err
    assert "Traceback" not in result.err
    assert "Aborted" not in result.err


def test_keyboard_interrupt_with_debug_exits_130(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted(_self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster.Sandbox, "status", interrupted)
    assert nt("--debug", "sandbox", "status", "--dir", str(tmp_path)).code == 130


def test_ctx_exit_code_is_kept(nt: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command("nt-test-exit")
    @click.pass_context
    def exit_4(ctx: click.Context) -> None:
        """Exit with code 4."""
        ctx.exit(4)

    monkeypatch.setitem(cli.commands, "nt-test-exit", exit_4)
    assert nt("nt-test-exit").code == 4


def test_status_of_an_existing_sandbox_needs_root(
    nt: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    _write_state(tmp_path, complete=True, dead=False)
    result = nt("sandbox", "status", "--dir", str(tmp_path))
    assert result.code == ExitCode.PREREQUISITE
    assert "root" in result.err
    assert "sudo" in result.err
    assert "Traceback" not in result.err
