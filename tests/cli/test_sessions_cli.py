"""The session commands' output: list off a terminal, time left, exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nodetunnel.cli import cli
from nodetunnel.errors import ExitCode
from nodetunnel.session import Listing, SessionRow, fleet
from nodetunnel.transport import ClusterRef


def _row(**kw: Any) -> SessionRow:
    base: dict[str, Any] = {
        "session_id": "nt-7f3a9c01", "app": "jupyter", "cluster": "a-cluster-with-a-long-name",
        "job_id": "123456789", "state": "RUNNING", "node": "gpu-node-with-a-long-name-042",
        "time_left_s": 3600, "tunnel_up": True, "attached": True, "here": True,
        "url": "http://127.0.0.1:8888/lab", "local_port": 8888,
    }  # fmt: skip
    base.update(kw)
    return SessionRow(**base)


@pytest.fixture
def listing(monkeypatch: pytest.MonkeyPatch) -> Listing:
    found = Listing()
    monkeypatch.setattr(fleet, "reconcile", lambda store, clusters=(), **kw: found)
    return found


@pytest.fixture
def rows(listing: Listing) -> list[SessionRow]:
    return listing.rows


def test_list_off_a_terminal_keeps_ids_and_urls_whole(rows: list[SessionRow]) -> None:
    rows += [_row(), _row(session_id="nt-00000001", time_left_s=365 * 86400 - 60)]
    result = CliRunner().invoke(cli, ["list"], prog_name="nodetunnel")
    assert result.exit_code == 0, result.output
    for whole in ("nt-7f3a9c01", "nt-00000001", "gpu-node-with-a-long-name-042",
                  "http://127.0.0.1:8888/lab", "a-cluster-with-a-long-name"):  # fmt: skip
        assert whole in result.stdout
    assert "unlimited" in result.stdout  # SLURM's INFINITE, not "525599 min"
    assert "60 min" in result.stdout


def test_list_json_is_the_rows(rows: list[SessionRow]) -> None:
    rows.append(_row(here=False, tunnel_up=False, attached=False))
    result = CliRunner().invoke(cli, ["list", "--json"], prog_name="nodetunnel")
    assert result.exit_code == 0
    assert '"session_id": "nt-7f3a9c01"' in result.stdout
    assert '"tunnel": "down"' in result.stdout
    assert '"here": false' in result.stdout


def test_list_exits_8_when_a_cluster_could_not_be_asked(
    listing: Listing, rows: list[SessionRow]
) -> None:
    rows.append(_row(state="UNKNOWN", problem="cannot reach the cluster (login): No route"))
    listing.unreachable.append(
        (ClusterRef("lab", ("login",)), "cannot reach the cluster (login): No route")
    )
    result = CliRunner().invoke(cli, ["list"], prog_name="nodetunnel")
    assert result.exit_code == ExitCode.CONNECTION
    assert "nt-7f3a9c01" in result.stdout  # what it knows is still shown
    assert "could not ask SLURM on lab: cannot reach the cluster" in result.stderr


def test_list_with_nothing_and_an_unreachable_cluster_says_so(listing: Listing) -> None:
    listing.unreachable.append((ClusterRef("lab", ("login",)), "cannot reach the cluster"))
    result = CliRunner().invoke(cli, ["list", "--json"], prog_name="nodetunnel")
    assert result.exit_code == ExitCode.CONNECTION
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "0.5", "soon", "1e999"])
def test_timeout_must_be_a_finite_time(value: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["jupyter", "--cluster", "swc", "--dry-run", "--timeout", value],
        prog_name="nodetunnel",
    )
    assert result.exit_code == 2, result.output
    assert "--timeout" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("value", "seconds"), [("90", 90.0), ("10m", 600.0), ("1h30m", 5400.0)])
def test_timeout_takes_seconds_or_a_duration(value: str, seconds: float) -> None:
    from nodetunnel.cli.apps import Seconds

    assert Seconds().convert(value, None, None) == seconds
    result = CliRunner().invoke(
        cli,
        ["jupyter", "--cluster", "swc", "--dry-run", "--timeout", value],
        prog_name="nodetunnel",
    )
    assert result.exit_code == 0, result.output


def _logs_via_fake_ssh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, rc: int, stdout: str, stderr: str
) -> int:
    """``nodetunnel logs`` with a fake ssh that prints and exits as told (no connection)."""
    from nodetunnel.cli import main
    from nodetunnel.state import SessionRecord, SessionStore
    from nodetunnel.transport.openssh import OpenSSHTransport, SshSettings

    prog = tmp_path / "fake-ssh"
    prog.write_text(f"#!{sys.executable} -IS\nimport sys\nsys.stdout.write({stdout!r})\n"
                    f"sys.stdout.flush()\nsys.stderr.write({stderr!r})\nsys.exit({rc})\n")  # fmt: skip
    prog.chmod(0o755)
    (tmp_path / "run").mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    record = SessionRecord(session_id="nt-7f3a9c01", app="jupyter", job_id="12",
                           jump=["login", "gateway"], session_dir="/home/u/.nodetunnel/nt-7f3a9c01",
                           multiplex=False)  # fmt: skip
    monkeypatch.setattr(SessionStore, "find", lambda self, key: record)

    def transport(cluster: ClusterRef, local_dir: Path) -> OpenSSHTransport:
        return OpenSSHTransport(cluster.jump, local_dir=local_dir, ssh_binary=str(prog),
                                settings=SshSettings(multiplex=False))  # fmt: skip

    monkeypatch.setattr(fleet, "default_transport", transport)
    with pytest.raises(SystemExit) as info:
        main(["logs", record.session_id])
    return int(info.value.code or 0)


def test_logs_streams_the_job_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    code = _logs_via_fake_ssh(tmp_path, monkeypatch, rc=0, stdout="line 1\nline 2\n",
                              stderr="tail: a note\n")  # fmt: skip
    out, err = capfd.readouterr()
    assert code == 0
    assert out == "line 1\nline 2\n"
    assert "tail: a note" in err  # the remote side's messages still reach the terminal


def test_logs_that_cannot_connect_exits_8_naming_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    code = _logs_via_fake_ssh(tmp_path, monkeypatch, rc=255, stdout="",
                              stderr="ssh: connect to host login port 22: No route to host\r\n")  # fmt: skip
    _, err = capfd.readouterr()
    assert code == ExitCode.CONNECTION == 8
    assert "cannot reach the cluster (login -> gateway)" in err
    assert "network" in err  # the hint


def test_logs_passes_the_remote_exit_code_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    code = _logs_via_fake_ssh(tmp_path, monkeypatch, rc=1, stdout="",
                              stderr="tail: cannot open 'job.log' for reading\n")  # fmt: skip
    assert code == 1
    assert "cannot open 'job.log'" in capfd.readouterr().err
