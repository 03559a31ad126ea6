"""The app commands' options and usage errors: --tcp only where the recipe can listen on a port."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nodetunnel.apps import RECIPES
from nodetunnel.cli import cli, main
from nodetunnel.errors import ExitCode

SOCKET_ONLY = ["dash", "streamlit", "tensorboard", "marimo", "panel", "voila", "code"]


def helps(name: str) -> str:
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="nodetunnel")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command as ``nodetunnel`` does (errors become a message and an exit code)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0), capsys.readouterr().err


def test_the_socket_only_recipes_are_the_ones_that_do_not_take_tcp() -> None:
    assert sorted(n for n, app in RECIPES.items() if not app.takes_tcp) == sorted(SOCKET_ONLY)


@pytest.mark.parametrize("name", SOCKET_ONLY)
def test_a_socket_only_app_does_not_offer_tcp(name: str) -> None:
    assert "--tcp" not in helps(name)


def test_jupyter_offers_tcp_protected_by_its_token() -> None:
    for name in ("jupyter", "notebook"):
        text = helps(name)
        assert "--tcp Listen on a free port of the node's 127.0.0.1" in text
        assert "so its token is all that protects it" in text


def test_run_offers_tcp_and_says_nothing_protects_an_app_without_a_login() -> None:
    text = helps("run")
    assert "--tcp Listen on a free port of the node's 127.0.0.1" in text
    assert "(the command gets $NT_PORT)" in text
    assert "an app without a login of its own is open to them" in text
    assert "token" not in text.split("--tcp", 1)[1].split("--with", 1)[0]


def test_tcp_on_a_socket_only_app_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = fails(["dash", "app.py", "--tcp", "--cluster", "swc", "--dry-run"], capsys)
    assert code == ExitCode.USAGE
    line = next(ln for ln in err.splitlines() if ln.startswith("Error:"))
    assert line == ("Error: --tcp: Dash is served only on a private Unix socket on the node, "
                    "never on a port; --tcp is for jupyter, notebook, run")  # fmt: skip


@pytest.mark.parametrize("spec", ["dash:--tcp app.py", "run:--tcp python -m http.server"])
def test_tcp_inside_with_is_one_clear_line(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = fails(["jupyter", "--cluster", "swc", "--dry-run", "--with", spec], capsys)
    assert code == ExitCode.USAGE
    first = err.splitlines()[0]
    assert f"--with {spec!r}: --tcp is not an app's own argument" in first
    assert "leave --tcp out of --with" in err
    assert "Traceback" not in err


def test_jupyter_with_tcp_listens_on_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = fails(["jupyter", "--cluster", "swc", "--dry-run", "--tcp"], capsys)
    assert code == 0


def test_the_jobscript_still_refuses_tcp_for_a_socket_only_recipe() -> None:
    """What a caller of the library other than the CLI meets (the dashboard, a script)."""
    from nodetunnel.errors import UsageError
    from nodetunnel.scheduler.slurm import Slurm
    from nodetunnel.session.jobscript import render_body
    from nodetunnel.session.model import Environment

    with pytest.raises(UsageError, match="listens only on a Unix socket here"):
        render_body(RECIPES["tensorboard"], Environment(), "/h/s", scheduler=Slurm, tcp=True)


def test_a_refused_socket_forward_suggests_tcp_only_where_it_is_offered() -> None:
    from nodetunnel.apps import RUN
    from nodetunnel.session.tunnel import _no_socket_forwarding_hint

    dash = _no_socket_forwarding_hint(RECIPES["dash"])
    assert "--tcp" not in dash
    assert "AllowStreamLocalForwarding" in dash
    assert "protected by its token" in _no_socket_forwarding_hint(RECIPES["jupyter"])
    assert "protected by nothing" in _no_socket_forwarding_hint(RUN)
