"""``nodetunnel dashboard``: the missing extra, a taken port, Ctrl-C, --detach and stop.

The server runs for real (a child process on 127.0.0.1), with no cluster configured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .test_cli import Run, assert_one_error_and_fix, nt  # noqa: F401

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_RUNTIME_DIR": str(tmp_path / "run"),
           "NODETUNNEL_CONFIG": str(tmp_path / "none.toml"),
           "PYTHONPATH": str(SRC), "BROWSER": "true"}  # fmt: skip
    (tmp_path / "run").mkdir()
    (tmp_path / "none.toml").write_text("# no clusters\n")
    for key in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR", "NODETUNNEL_CONFIG"):
        monkeypatch.setenv(key, env[key])
    return env


def test_without_the_extra_one_error_names_the_install(
    nt: Run,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    private_env: dict[str, str],
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "starlette" else real(name, *a))  # fmt: skip
    result = nt("dashboard", "--no-browser")
    assert result.code == 3
    error, fix = assert_one_error_and_fix(result)
    assert error == "nodetunnel: error: the dashboard needs starlette, which is not installed"
    assert "pipx install 'nodetunnel[dashboard]'" in fix


def test_a_taken_port_is_one_error(nt: Run, private_env: dict[str, str]) -> None:  # noqa: F811
    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = nt("dashboard", "--no-browser", "--port", str(port))
    error, _fix = assert_one_error_and_fix(result)
    assert error == f"nodetunnel: error: port {port} on 127.0.0.1 is already in use"
    assert result.code == 2


def test_stop_without_a_dashboard(nt: Run, private_env: dict[str, str]) -> None:  # noqa: F811
    result = nt("dashboard", "stop")
    assert result.code == 0
    assert result.out.strip() == "no dashboard runs"


def _get(url: str, cookie: str | None = None) -> tuple[int, dict[str, str]]:
    import httpx2

    answer = httpx2.get(url, headers={"Cookie": cookie} if cookie else {}, timeout=10)
    return answer.status_code, dict(answer.headers)


def test_serve_login_ctrl_c_then_detach_and_stop(private_env: dict[str, str]) -> None:
    pytest.importorskip("uvicorn")
    argv = [sys.executable, "-m", "nodetunnel", "dashboard", "--no-browser", "--json"]
    proc = subprocess.Popen(argv, env=private_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        info = json.loads("".join(iter(proc.stdout.readline, "}\n")) + "}")
        url, port = info["url"], info["port"]
        assert url.startswith(f"http://127.0.0.1:{port}/?key=")
        assert url.split("key=")[1] not in " ".join(proc.args)  # the key is not in argv
        state = Path(private_env["XDG_STATE_HOME"]) / "nodetunnel" / "dashboard.json"
        assert state.stat().st_mode & 0o777 == 0o600
        assert _get(f"http://127.0.0.1:{port}/")[0] == 403
        code, headers = _get(url)
        assert code == 303
        assert "HttpOnly" in headers["set-cookie"]
        cookie = headers["set-cookie"].split(";")[0]
        assert _get(f"http://127.0.0.1:{port}/", cookie)[0] == 200
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=15) in (0, 130)
        assert not state.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    detached = subprocess.run([*argv, "--detach"], env=private_env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    assert detached.returncode == 0, detached.stderr
    info = json.loads(detached.stdout)
    try:
        assert _get(info["url"])[0] == 303
        again = subprocess.run(argv, env=private_env, capture_output=True, text=True, timeout=30)
        assert json.loads(again.stdout)["already_running"] is True
    finally:
        stopped = subprocess.run([sys.executable, "-m", "nodetunnel", "dashboard", "stop"],
                                 env=private_env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert stopped.returncode == 0
    assert f"process {info['pid']}" in stopped.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", info["port"]), timeout=2).close()


def test_the_cli_does_not_import_the_web_stack() -> None:
    code = ("import sys, nodetunnel.cli; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
