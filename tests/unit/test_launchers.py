"""The launchers sent with the job end with one line that names what is missing, not a
traceback, when the environment the job activated lacks the app."""

from __future__ import annotations

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
