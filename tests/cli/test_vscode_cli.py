"""``nodetunnel vscode``: the exact ``code`` command, and the folder on the node it names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodetunnel.cli import cli, main
from nodetunnel.errors import ExitCode
from nodetunnel.state import SessionRecord, SessionStore

SID = "nt-0000c0de"
CLUSTER_HOME = "/nfs/home/jdoe"


@pytest.fixture
def laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A laptop: its own home, a state directory with one running session, and a fake
    ``code`` on PATH that writes down its arguments, one a line."""
    home = tmp_path / "laptop-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    code = bin_dir / "code"
    code.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "code.argv"}\n')
    code.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = SessionRecord(session_id=SID, app="jupyter", job_id="42", node="gpu-17",
                           jump=["login"], user="jdoe", cluster="swc",
                           session_dir=f"{CLUSTER_HOME}/.nodetunnel/sessions/{SID}")  # fmt: skip
    SessionStore().save(record)
    return home


def code_argv(tmp_path: Path) -> list[str]:
    return (tmp_path / "code.argv").read_text().splitlines()


def fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command as ``nodetunnel`` does (errors become a message and an exit code)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "folder"),
    [
        ([], CLUSTER_HOME),  # the default: the cluster home, not a literal '~'
        (["--dir", "~"], CLUSTER_HOME),
        (["--dir", "~/project"], f"{CLUSTER_HOME}/project"),  # quoted: the cluster home
        (["--dir", "LAPTOP/project"], f"{CLUSTER_HOME}/project"),  # unquoted: the shell's
        (["--dir", "LAPTOP"], CLUSTER_HOME),
        (["--dir", "/scratch/jdoe/run"], "/scratch/jdoe/run"),
    ],
)
def test_vscode_runs_code_with_the_absolute_folder_on_the_node(
    laptop: Path, tmp_path: Path, args: list[str], folder: str
) -> None:
    args = [a.replace("LAPTOP", str(laptop)) for a in args]
    result = CliRunner().invoke(cli, ["vscode", SID, *args], prog_name="nodetunnel")
    assert result.exit_code == 0, result.output
    assert code_argv(tmp_path) == ["--remote", f"ssh-remote+nodetunnel-{SID}", folder]
    assert f"VS Code opens {folder} on nodetunnel-{SID}" in result.stderr


@pytest.mark.parametrize("folder", ["project", "~other/project", "./x"])
def test_vscode_refuses_a_relative_folder_in_one_line(
    laptop: Path, tmp_path: Path, folder: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = fails(["vscode", SID, "--dir", folder], capsys)
    assert code == ExitCode.USAGE
    first = err.splitlines()[0]
    assert f"--dir {folder!r} is not an absolute path" in first
    assert "--dir '~/project'" in err  # the next step
    assert "Traceback" not in err
    assert not (tmp_path / "code.argv").exists()


def test_vscode_without_a_known_cluster_home_needs_an_absolute_folder(
    laptop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SessionStore()
    record = store.find(SID)
    record.session_dir = ""
    store.save(record)
    code, err = fails(["vscode", SID], capsys)
    assert code == ExitCode.USAGE
    assert "needs the session's home on the cluster" in err.splitlines()[0]
    assert "--dir /path/on/node" in err
    result = CliRunner().invoke(cli, ["vscode", SID, "--dir", "/work/x"], prog_name="nodetunnel")
    assert result.exit_code == 0, result.output
    assert code_argv(tmp_path)[-1] == "/work/x"
