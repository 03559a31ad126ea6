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


# ------------------------------------------------- dash, streamlit, tensorboard, run
LAUNCHED = {
    # name: (arguments, launcher file, the line that starts it on the job's socket)
    "dash": (["app.py"], "wsgi_app.py", 'python3 "$NT_RUN"/launch.py "$NT_SOCK" app.py app &'),
    "streamlit": (["app.py", "--", "--data", "x.csv"], "streamlit_app.py",
                  'python3 "$NT_RUN"/launch.py "$NT_SOCK" app.py --data x.csv &'),
    "tensorboard": (["--logdir", "~/runs", "--", "--samples_per_plugin", "images=5"],
                    "tensorboard_app.py",
                    "python3 \"$NT_RUN\"/launch.py \"$NT_SOCK\" --logdir '~/runs' "
                    "--samples_per_plugin images=5 &"),
}  # fmt: skip
SECRET_WORDS = ("token", "password", "secret")


def dry_run(name: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [name, "--cluster", "swc", "--dry-run", *args],
                                prog_name="nodetunnel")  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


def launch_lines(script: str) -> list[str]:
    """The lines of the job script that start the app (outside the launcher's own text)."""
    outside = script.split("NODETUNNEL_LAUNCHER_END\n")[-1]
    return [ln.strip() for ln in outside.splitlines() if ln.rstrip().endswith(" &")]


@pytest.mark.parametrize("name", list(LAUNCHED))
def test_dry_run_sends_the_launcher_and_no_secret(name: str) -> None:
    args, launcher, line = LAUNCHED[name]
    script = dry_run(name, *args)
    assert RECIPES[name].launcher == launcher
    assert "cat > \"$NT_RUN/launch.py\" <<'NODETUNNEL_LAUNCHER_END'" in script
    assert set(launch_lines(script)) == {line}  # on the socket (and in the port branch unused)
    # Nothing secret is made for these apps, and no launch word names one.
    assert not RECIPES[name].needs_secret
    assert not any(w in line.lower() for w in SECRET_WORDS)
    assert "_TOKEN_FILE" not in script.split("NT_TOKEN_FILE=", 1)[1].split("\n", 1)[1]
    # Never every interface, never a fixed port of the node.
    body = script.split("NODETUNNEL_LAUNCHER_END\n")[-1]
    assert "0.0.0.0" not in body  # noqa: S104
    tunnel = script.split("# tunnel, once the job runs on NODE:\n", 1)[1]
    assert ":/tmp/nt.RANDOM0123456789/s " in tunnel


def test_run_dry_run_sends_the_command_as_given_and_no_secret() -> None:
    script = dry_run("run", "--", "python", "-m", "http.server", "--bind", "127.0.0.1", "{port}")
    assert launch_lines(script) == ['python -m http.server --bind 127.0.0.1 "$NT_PORT" &'] * 2
    assert "launch.py" not in script  # nothing is sent with the job but the command
    assert not any(w in script.lower().replace("nt_token_file", "").replace("/token", "")
                   for w in SECRET_WORDS)  # fmt: skip
    on_socket = dry_run("run", "--ready", "/healthz", "--", "uvicorn", "main:app", "--uds",
                        "{socket}")  # fmt: skip
    assert 'uvicorn main:app --uds "$NT_SOCK" &' in launch_lines(on_socket)
    assert 'export NT_SOCKET="$NT_SOCK"' in on_socket


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--cluster", "swc"], "Missing argument 'COMMAND...'"),
        (["run", "--cluster", "swc", "--", ""], "no command given: put it after --"),
        (["run", "--cluster", "swc", "--ready", "healthz", "--", "app"],
         "'healthz' is not a path on the app's server (it starts with /)"),
        (["run", "--cluster", "swc", "--url", "status", "--", "app"],
         "'status' is not a path on the app's server (it starts with /)"),
        (["run", "--cluster", "swc", "--", "app", "{socket}{port}"],
         "'{socket}{port}' has more than one placeholder"),
        (["run", "--cluster", "swc", "--", "app", "--uds", "{socket}", "--port", "{port}"],
         "the command uses {socket}: it cannot listen on a port too"),
        (["run", "--cluster", "swc", "--tcp", "--", "app", "--uds", "{socket}"],
         "the command uses {socket}: it cannot listen on a port too"),
        (["dash", "--cluster", "swc"], "Missing argument 'APP'"),
        (["tensorboard", "--cluster", "swc"], "Missing option '--logdir'"),
        (["streamlit", "--cluster", "swc"], "Missing argument 'APP'"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = fails([args[0], "--dry-run", *args[1:]], capsys)
    assert code == ExitCode.USAGE
    assert "Traceback" not in err
    said = [ln for ln in err.splitlines() if message in ln]
    assert len(said) == 1, err
    assert said[0].startswith(("nodetunnel: error: ", "Error: "))


def test_apps_json_has_listener_protection_and_probe_for_every_recipe() -> None:
    import json

    from nodetunnel.apps import APPS

    result = CliRunner().invoke(cli, ["apps", "--json"], prog_name="nodetunnel")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == set(APPS)
    for row in rows.values():
        assert all(row[k].strip() for k in ("listens_on", "protected_by", "ready_probe")), row
    expected = {
        "jupyter": ("Unix socket, 0700 dir", "token made here (0600 file)", "GET /api/status"),
        "notebook": ("Unix socket, 0700 dir", "token made here (0600 file)", "GET /api/status"),
        "dash": ("Unix socket, 0700 dir", "the private socket", "GET /_dash-layout"),
        "streamlit": ("Unix socket, 0700 dir", "the private socket", "GET /_stcore/health"),
        "tensorboard": ("Unix socket, 0700 dir", "the private socket", "GET /data/runs"),
        "run": ("{socket} or {port}", "the socket; none on a port (warned)", "GET / (--ready)"),
    }
    for name, triple in expected.items():
        row = rows[name]
        assert (row["listens_on"], row["protected_by"], row["ready_probe"]) == triple
