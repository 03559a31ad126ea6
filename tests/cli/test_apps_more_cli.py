"""The marimo, Panel, Voila and code-server commands: their help, arguments, the job script
they would submit, and what `nodetunnel apps` says about them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nodetunnel.apps import RECIPES
from nodetunnel.apps.base import opening_page
from nodetunnel.cli import cli

NEW = {
    # name: (arguments, launcher, what `apps` says: listens on, protected by, ready probe)
    "marimo": (["edit", "nb.py"], "marimo_app.py",
               ("Unix socket, 0700 dir", "token made here (0600 file)", "GET /api/version")),
    "panel": (["serve", "app.py"], "panel_app.py",
              ("Unix socket, 0700 dir", "password made here (0600 file)", "GET /liveness")),
    "voila": (["dash.ipynb"], "voila_app.py",
              ("Unix socket, 0700 dir", "token made here (0600 file)", "GET /login -> 302")),
    "code": (["~/project"], "code_server_app.py",
             ("Unix socket, 0700 dir", "password made here (0600 file)", "GET /healthz")),
}  # fmt: skip


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_apps_lists_each_new_recipe_with_listener_protection_and_probe() -> None:
    result = invoke("apps", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    for name, (_, _, (listens, protected, probe)) in NEW.items():
        row = rows[name]
        assert (row["listens_on"], row["protected_by"], row["ready_probe"]) == (
            listens, protected, probe)  # fmt: skip


@pytest.mark.parametrize("name", list(NEW))
def test_dry_run_sends_the_launcher_and_only_the_token_file(name: str) -> None:
    args, launcher, _ = NEW[name]
    result = invoke(name, *args, "--cluster", "swc", "--dry-run")
    assert result.exit_code == 0, result.output
    script = result.output
    # The launcher goes with the job, and the app gets the token file's path, never a secret.
    assert "cat > \"$NT_RUN/launch.py\" <<'NODETUNNEL_LAUNCHER_END'" in script
    assert RECIPES[name].launcher == launcher
    assert 'python3 "$NT_RUN"/launch.py "$NT_SOCK"' in script
    assert '_TOKEN_FILE="$NT_TOKEN_FILE"' in script
    assert "PASSWORD=" not in script
    assert "--password" not in script.replace("--token-password-file", "")
    assert "0.0.0.0" not in script.split("NODETUNNEL_LAUNCHER_END")[2]  # noqa: S104


@pytest.mark.parametrize(("args", "message"), [
    (["marimo", "open", "nb.py"], "'open' is not one of 'edit', 'run'"),
    (["marimo", "edit"], "Missing argument 'NOTEBOOK'"),
    (["panel", "serve"], "Missing argument 'APP'"),
    (["panel", "show", "app.py"], "'show' is not 'serve'"),
    (["voila"], "Missing argument 'NOTEBOOK'"),
])  # fmt: skip
def test_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output


def test_code_takes_no_folder_too() -> None:
    result = invoke("code", "--cluster", "swc", "--dry-run")
    assert result.exit_code == 0, result.output


def test_help_promises_what_the_recipe_does() -> None:
    for name, expected in [("marimo", "token is made here"), ("panel", "Panel's login"),
                           ("voila", "Unix sockets in the job's private directory"),
                           ("code", "its password login")]:  # fmt: skip
        result = invoke(name, "--help")
        assert result.exit_code == 0
        assert expected in " ".join(result.output.split()), name


def test_a_login_form_app_gets_a_page_that_posts_its_form() -> None:
    url = "http://127.0.0.1:8080/"
    login = RECIPES["code"].login_form(url, 'se"cret<&')
    assert login == ("http://127.0.0.1:8080/login", (("password", 'se"cret<&'),))
    page = opening_page(url, "code", login)
    assert '<form id="login" method="post" action="http://127.0.0.1:8080/login">' in page
    assert 'name="password" value="se&quot;cret&lt;&amp;"' in page
    assert "submit()" in page
    panel = RECIPES["panel"].login_form("http://127.0.0.1:5006/", "t")
    assert panel == ("http://127.0.0.1:5006/login", (("username", "nodetunnel"), ("password", "t")))
    # Apps that take the token in the URL keep the plain redirect; no secret, no form.
    assert RECIPES["marimo"].login_form(url, "t") is None
    assert RECIPES["code"].login_form(url, "") is None
    assert 'http-equiv="refresh"' in opening_page(url + "?access_token=t", "marimo")


def test_the_url_carries_the_token_only_where_the_app_takes_it_so() -> None:
    assert RECIPES["marimo"].url(2718, "T") == "http://127.0.0.1:2718/?access_token=T"
    assert RECIPES["voila"].url(8866, "T") == "http://127.0.0.1:8866/?token=T"
    assert RECIPES["panel"].url(5006, "T") == "http://127.0.0.1:5006/"
    assert RECIPES["code"].url(8080, "T") == "http://127.0.0.1:8080/"
    assert RECIPES["marimo"].auth_headers("T") == {"Authorization": "Bearer T"}
    assert RECIPES["voila"].ready(302)
    assert not RECIPES["voila"].ready(200)  # the login page: the token was not taken
