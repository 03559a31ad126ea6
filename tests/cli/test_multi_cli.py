"""``--with`` on the command line: the plan shows every app's forward; a bad value is one line."""

from __future__ import annotations

import pytest

from nodetunnel.cli import main
from nodetunnel.errors import ExitCode


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


def test_dry_run_with_more_apps_shows_one_tunnel_with_a_forward_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(["jupyter", "--cluster", "swc", "--dry-run", "--with", "tensorboard:--logdir runs",
                "--with", "run:python -m http.server --bind 127.0.0.1 {port}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    tunnel = out.split("# tunnel, once the job runs on NODE:\n", 1)[1].splitlines()[0]
    assert tunnel.count(" -L ") == 3
    assert "-L 127.0.0.1:6006:/tmp/nt.RANDOM0123456789/s1" in tunnel
    assert '"$NT_RUN"/launch1.py "$NT_SOCK1" --logdir runs' in out


@pytest.mark.parametrize(
    ("value", "words"),
    [("tensorboard", "Missing option '--logdir'"), ("nope", "there is no app 'nope'")],
)
def test_a_bad_with_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], value: str, words: str
) -> None:
    code = run(["jupyter", "--cluster", "swc", "--dry-run", "--with", value])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert f"--with {value!r}" in err
    assert words in err
    assert "Traceback" not in err


def test_help_documents_with(capsys: pytest.CaptureFixture[str]) -> None:
    run(["jupyter", "--help"])
    out = capsys.readouterr().out
    assert "--with NAME[:ARGS]" in out


def test_list_shows_every_url_of_a_session_without_its_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from nodetunnel.cli import cli
    from nodetunnel.session import Listing, SessionRow, fleet
    from nodetunnel.state import SessionRecord

    record = SessionRecord(
        session_id="nt-7f3a9c01", app="jupyter", job_id="12", jump=["login"],
        url="http://127.0.0.1:8888/lab?token=SECRET", token="SECRET",
        extras=[{"app": "tensorboard", "url": "http://127.0.0.1:6006/?token=SECRET"}],
    )  # fmt: skip
    row = SessionRow(session_id=record.session_id, app="jupyter", cluster="c", job_id="12",
                     state="RUNNING", node="node1", time_left_s=60, tunnel_up=True,
                     attached=True, here=True, url="http://127.0.0.1:8888/lab",
                     record=record)  # fmt: skip
    monkeypatch.setattr(fleet, "reconcile", lambda store, clusters=(), **kw: Listing(rows=[row]))
    result = CliRunner().invoke(cli, ["list"], prog_name="nodetunnel")
    assert result.exit_code == 0, result.output
    assert "tensorboard: http://127.0.0.1:6006/" in result.stdout
    result = CliRunner().invoke(cli, ["list", "--json"], prog_name="nodetunnel")
    assert '"url": "http://127.0.0.1:6006/"' in result.stdout
    assert "SECRET" not in result.stdout
