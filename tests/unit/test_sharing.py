"""The per-cluster shared connections: who holds them, and who closes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nodetunnel.transport.sharing import ControlLease, close_if_unused, control_dir_for


def test_the_last_holder_closes_the_connections(tmp_path: Path) -> None:
    d = tmp_path / "c-1"
    closed: list[str] = []
    keeper, command = ControlLease(d), ControlLease(d)
    keeper.acquire()
    command.acquire()
    assert (d.stat().st_mode & 0o777, keeper.others(), command.others()) == (0o700, 1, 1)
    assert command.release(lambda: closed.append("command")) is False  # the keeper lives on
    assert keeper.release(lambda: closed.append("keeper")) is True
    assert closed == ["keeper"]
    assert not list((d / "holders").iterdir())


def test_a_holder_killed_hard_does_not_keep_the_connections(tmp_path: Path) -> None:
    d = tmp_path / "c-2"
    code = (
        "import sys, time; from pathlib import Path\n"
        "from nodetunnel.transport.sharing import ControlLease\n"
        "ControlLease(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        assert ControlLease(d).others() == 1
        assert close_if_unused(d, lambda: None) is False
    finally:
        proc.kill()
        proc.wait()
    closed: list[int] = []
    assert close_if_unused(d, lambda: closed.append(1)) is True  # its lock went with it
    assert closed == [1]
    assert not list((d / "holders").iterdir())


def test_each_cluster_has_its_own_short_directory(tmp_path: Path) -> None:
    a = control_dir_for(tmp_path, (("login", "gateway"), "alice"))
    b = control_dir_for(tmp_path, (("login",), "alice"))
    assert a != b
    assert a == control_dir_for(tmp_path, (("login", "gateway"), "alice"))
    assert len(a.name) == 14
