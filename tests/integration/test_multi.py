"""Several apps in one job on the mini-cluster: JupyterLab with TensorBoard (``--with``), each
on its own private socket and local port over one tunnel, listed, opened, ended by one stop;
and another user with a job on the same node, who reaches none of the private endpoints."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import urllib.parse
from pathlib import Path

from nodetunnel.proc import NotReady, wait_until
from nodetunnel.session import port_is_free

from .helpers import (
    ALICE,
    BOB,
    CLUSTER_VENV,
    Cli,
    as_user,
    node_processes,
    sbatch,
    squeue,
    state_dir,
    user_processes,
    user_ssh,
    wait_job,
)
from .test_apps import SEED_DASH, SEED_STREAMLIT, SOCKET_APP, _write_event_file, get


def _nodetunnel(base: list[str], *args: str):
    return as_user(ALICE, [*base, *args], timeout_s=120)


def _alices(path) -> None:
    os.chown(path, pwd.getpwnam(ALICE).pw_uid, pwd.getpwnam(ALICE).pw_gid)


def test_jupyter_with_tensorboard_one_tunnel_one_stop(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    logdir = sandbox.paths.user_home(ALICE) / "multi-tb-logs"
    (logdir / "run1").mkdir(parents=True, exist_ok=True)
    _write_event_file(logdir / "run1")
    for path in (logdir, *logdir.rglob("*")):
        _alices(path)
    argv = [*base, "jupyter", "--cluster", "sandbox", "--venv", str(CLUSTER_VENV),
            "--no-browser", "--json", "--keep", "--with", f"tensorboard:--logdir {logdir}"]  # fmt: skip
    cli = Cli(ALICE, argv)
    try:
        info = cli.read_json(timeout_s=180)
        (tb,) = info["extras"]
        assert tb["app"] == "tensorboard"
        ports = [int(info["local_port"]), int(tb["local_port"])]
        assert ports[0] != ports[1]
        # Both through the one tunnel: JupyterLab with its token, TensorBoard listing the run.
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(str(info["url"])).query)["token"][0]
        assert get(f"http://127.0.0.1:{ports[0]}/api/status?token={token}")[0] == 200
        assert get(f"http://127.0.0.1:{ports[0]}/api/status")[0] == 403

        def lists_the_run() -> bool:
            status, runs = get(f"http://127.0.0.1:{ports[1]}/data/runs")
            if status != 200 or "run1" not in runs:
                raise NotReady(f"HTTP {status}: {runs[:200]}")
            return True

        wait_until(lists_the_run, timeout_s=60, what="TensorBoard to list run1")
        record = json.loads((state_dir(ALICE) / f"{info['session_id']}.json").read_text())
        tunnel = Path(f"/proc/{record['tunnel_pid']}/cmdline").read_bytes().split(b"\0")
        assert tunnel.count(b"-L") == 2  # one ssh to the node, two forwards
        # Each app on its own socket in the job's one private directory.
        remote = str(info["remote"])
        assert str(tb["remote"]) == remote[:-2] + "/s1"

        # list shows every URL (without the token); open picks an app.
        res = _nodetunnel(base, "list", "--json")
        assert res.returncode == 0, res.stderr
        (row,) = json.loads(res.stdout)
        assert [e["app"] for e in row["extras"]] == ["tensorboard"]
        assert row["extras"][0]["url"] == f"http://127.0.0.1:{ports[1]}/"
        assert "token=" not in res.stdout
        res = _nodetunnel(base, "list")
        assert f"tensorboard: http://127.0.0.1:{ports[1]}/" in res.stdout
        res = as_user(ALICE, ["env", "BROWSER=true", *base, "open", str(info["session_id"]),
                              "tensorboard"], timeout_s=60)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"http://127.0.0.1:{ports[1]}/"

        # Leave (--keep), then attach in the background: the one tunnel comes back with every
        # app, handed over to the background process.
        assert cli.interrupt() == 130
        cli = Cli(ALICE, [*base, "attach", str(info["session_id"]), "--no-browser", "--json",
                          "--detach"])  # fmt: skip
        again = cli.read_json(timeout_s=60)
        assert [e["local_port"] for e in again["extras"]] == [ports[1]]
        assert cli.proc.wait(timeout=30) == 0
        wait_until(lists_the_run, timeout_s=30, what="TensorBoard to list run1 after attach")

        # One stop ends both apps, the job, the tunnel and the background process.
        node = str(info["node"])
        assert len(node_processes(ALICE, node)) >= 2
        res = _nodetunnel(base, "stop", str(info["session_id"]))
        assert res.returncode == 0, res.stderr
    except BaseException:
        cli.stop()
        raise
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    wait_until(lambda: not squeue(sandbox) and not user_processes(ALICE)
               and not node_processes(ALICE, node), timeout_s=30,
               what="the job, its apps and the tunnel to be gone")  # fmt: skip
    assert all(port_is_free(p) for p in ports)
    res = sandbox.run_in(node, ["sh", "-c", f"ls -d {remote[:-2]} 2>/dev/null || true"])
    assert res.strip() == ""  # the private directory on the node is gone


#: Run as the other user on the node: connect to each socket path / port given, one line each.
_PROBE = """
import socket, sys
for target in sys.argv[1:]:
    if target.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        address = target
    else:
        s = socket.socket()
        address = ("127.0.0.1", int(target.rsplit(":", 1)[1]))
    try:
        s.settimeout(5)
        s.connect(address)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        answer = s.recv(100).split(b"\\r\\n")[0].decode(errors="replace")
        print(f"{target} REACHED {answer}")
    except OSError as exc:
        print(f"{target} REFUSED {type(exc).__name__}")
    finally:
        s.close()
"""


def test_another_user_on_the_node_reaches_no_private_endpoint(sandbox, laptop_nodetunnel):
    """One job holds every recipe (one more app each, --with); bob, with his own job on the
    same node, tries each endpoint: every socket refuses him; the one app on a port without a
    password (run with {port}) reaches him, as its one-line warning says."""
    home = sandbox.paths.user_home(ALICE)
    files = {"multi_dash.py": SEED_DASH, "multi_streamlit.py": SEED_STREAMLIT,
             "multi_socket_app.py": SOCKET_APP}  # fmt: skip
    for name, text in files.items():
        (home / name).write_text(text)
        _alices(home / name)
    logdir = home / "multi-tb-empty"
    logdir.mkdir(exist_ok=True)
    _alices(logdir)
    withs = ["notebook", f"streamlit:{home}/multi_streamlit.py", f"dash:{home}/multi_dash.py",
             f"tensorboard:--logdir {logdir}",
             f"run:python3 {home}/multi_socket_app.py {{socket}}",
             "run:python3 -m http.server --bind 127.0.0.1 {port}"]  # fmt: skip
    argv = [*laptop_nodetunnel, "jupyter", "--cluster", "sandbox", "--venv", str(CLUSTER_VENV),
            "--mem", "4G", "--no-browser", "--json",
            *(w for spec in withs for w in ("--with", spec))]  # fmt: skip
    cli = Cli(ALICE, argv)
    bob_job = None
    try:
        info = cli.read_json(timeout_s=240)
        extras = info["extras"]
        assert [e["app"] for e in extras] == ["notebook", "streamlit", "dash", "tensorboard",
                                              "run", "run"]  # fmt: skip
        # Every app answers alice through the tunnel.
        for e in extras:
            status, page = get(str(e["url"]))
            assert status == 200, (e["app"], status, page[:300])
        node = str(info["node"])
        bob_job = sbatch(sandbox, BOB, "-w", node, "--wrap", "sleep 300")
        wait_job(sandbox, bob_job, {"RUNNING"})
        targets = [str(info["remote"]), *(str(e["remote"]) for e in extras)]
        res = user_ssh(sandbox, BOB, jump="login,gateway", host=node,
                       command=["python3", "-c", _PROBE, *targets], timeout_s=60)  # fmt: skip
        assert res.returncode == 0, res.stderr
        seen = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
        on_port = str(extras[-1]["remote"])
        assert not on_port.startswith("/")
        for target in targets[:-1]:  # every recipe on its socket: the 0700 directory refuses
            assert seen[target] == "REFUSED PermissionError", (target, res.stdout)
        assert seen[on_port].startswith("REACHED HTTP/1.0 200"), res.stdout  # documented
    except BaseException:
        cli.stop()
        raise
    finally:
        if bob_job is not None:
            sandbox.run_in("gateway", ["scancel", bob_job], check=False)
        for name in files:
            (home / name).unlink()
        shutil.rmtree(logdir, ignore_errors=True)
    assert cli.interrupt() == 130
    err = cli.stderr()
    warnings = [line for line in err.splitlines() if "can reach it" in line]
    assert len(warnings) == 1, err  # the one app on a port without a password, in one line
    assert f"python3 listens on {on_port} on {node} without a password" in warnings[0]
    wait_until(lambda: not squeue(sandbox) and not user_processes(ALICE), timeout_s=30,
               what="the jobs and the tunnel to be gone")  # fmt: skip
