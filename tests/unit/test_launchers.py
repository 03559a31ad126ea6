"""The launchers sent with the job end with one line that names what is missing, not a
traceback, when the environment the job activated lacks the app."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

CASES = [
    ("marimo_app.py", ["edit", "nb.py"], "marimo is not installed"),
    ("panel_app.py", ["serve", "app.py"], "panel is not installed"),
    ("voila_app.py", ["nb.ipynb"], "voila is not installed"),
    ("code_server_app.py", ["~/project"], "code-server is not on PATH"),
]


@pytest.mark.parametrize(("launcher", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_missing_app_is_one_line(tmp_path: Path, launcher: str, args: list[str],
                                   message: str) -> None:  # fmt: skip
    source = resources.files("nodetunnel.apps.launchers").joinpath(launcher).read_text()
    script = tmp_path / "launch.py"
    script.write_text(source)
    token = tmp_path / "token"
    token.write_text("secret")
    # -I: no user site; an empty sys.path for third-party packages and an empty PATH.
    res = subprocess.run(
        [sys.executable, "-I", "-S", str(script), str(tmp_path / "s"), *args],
        env={"PATH": str(tmp_path), "NT_TOKEN_FILE": str(token), "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip().startswith("nodetunnel: ")
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "s").exists()  # no socket left behind


FAKE_PANEL_COMMAND = """
import argparse, json, os, sys
p = argparse.ArgumentParser(prog="panel")
p.add_argument("command")
p.add_argument("files", nargs="*")
p.add_argument("--unix-socket")
p.add_argument("--liveness", action="store_true")
p.add_argument("--basic-auth")
p.add_argument("--cookie-secret")
def main():
    ns = p.parse_args(sys.argv[1:])
    with open(os.environ["FAKE_PANEL_OUT"], "w") as f:
        json.dump(vars(ns), f)
"""


def test_panel_gets_secrets_that_start_with_a_dash(tmp_path: Path) -> None:
    # token_urlsafe() begins with "-" one time in 64: argparse must not take it for a flag.
    source = resources.files("nodetunnel.apps.launchers").joinpath("panel_app.py").read_text()
    script = tmp_path / "launch.py"
    script.write_text(source)
    (tmp_path / "panel").mkdir()
    (tmp_path / "panel" / "__init__.py").write_text("")
    (tmp_path / "panel" / "command.py").write_text(FAKE_PANEL_COMMAND)
    token = tmp_path / "token"
    token.write_text("-Abc_def-123\n")
    out = tmp_path / "out.json"
    res = subprocess.run(
        [sys.executable, "-s", str(script), str(tmp_path / "s"), "serve", "app.py"],
        env={"PYTHONPATH": str(tmp_path), "NT_TOKEN_FILE": str(token), "HOME": str(tmp_path),
             "FAKE_PANEL_OUT": str(out), "PANEL_COOKIE_SECRET": "x"},
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = json.loads(out.read_text())
    assert got["basic_auth"] == "-Abc_def-123"
    assert got["cookie_secret"]
    assert got["cookie_secret"] != "x"  # the environment's secret is not used (Panel refuses both)
    assert got["unix_socket"] == str(tmp_path / "s")
    assert got["files"] == ["app.py"]
