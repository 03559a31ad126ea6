"""`nodetunnel jupyter` end to end on the mini-cluster, run by a test user as on a laptop."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetunnel.proc import NotReady, ProcessRef, run, wait_until
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv
from nodetunnel.sandbox.topology import CGROUP_NAME

from .conftest import IN_CI
from .helpers import ALICE, BOB, as_user, popen_as_user, squeue

CLUSTER_VENV = Path("/opt/nodetunnel-cluster-venv")
LAPTOP_VENV = Path("/opt/nodetunnel-laptop-venv")
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def laptop_nodetunnel() -> Iterator[list[str]]:
    """argv that runs this checkout's nodetunnel as a test user (a world-readable copy of src/)."""
    missing = [p for p in (CLUSTER_VENV, LAPTOP_VENV) if not (p / "bin" / "python").exists()]
    if missing:
        msg = f"{', '.join(map(str, missing))} missing: run ./scripts/setup"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    copy = Path(tempfile.mkdtemp(prefix="nodetunnel-src-", dir="/var/tmp"))
    try:
        shutil.copytree(SRC / "nodetunnel", copy / "nodetunnel")
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield ["env", f"PYTHONPATH={copy}", str(LAPTOP_VENV / "bin" / "python"), "-m", "nodetunnel"]
    finally:
        shutil.rmtree(copy)


class Cli:
    """A `nodetunnel` process run as a test user, in its own process group (so SIGINT works)."""

    def __init__(self, user: str, argv: list[str]) -> None:
        self.user = user
        self.proc = popen_as_user(user, argv)

    def read_json(self, timeout_s: float = 90) -> dict[str, object]:
        """The JSON object the CLI prints once the app is reachable (raw reads: no buffering)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                if buf.rstrip().endswith(b"}"):
                    return json.loads(buf)  # type: ignore[no-any-return]
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"no JSON from nodetunnel; stdout={buf!r} stderr={self.stderr()}")

    def interrupt(self, timeout_s: float = 30) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Hard stop after a failed test: the CLI, then what it left (tunnel, shared connections)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        uid = pwd.getpwnam(self.user).pw_uid
        for session_dir in Path(f"/tmp/nodetunnel-{uid}").glob("nt-*"):
            pid_file = session_dir / "tunnel.pid"
            if pid_file.exists():
                pid, start = map(int, pid_file.read_text().split())
                ProcessRef(pid, start).stop(timeout_s=3)
            for sock in session_dir.iterdir():
                if sock.is_socket():
                    exit_master = ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "nodetunnel"]
                    run(as_user_argv(self.user, exit_master), timeout_s=10, check=False)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else "(still running)"


def http_status(port: int, path: str, token: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"token {token}"} if token else {})
        return conn.getresponse().status
    finally:
        conn.close()


def auth_counts(sb: Sandbox, user: str) -> dict[str, int]:
    counts = {}
    for host in ("login", "gateway", "node1", "node2"):
        log = sb.paths.log_dir / f"sshd-{host}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        counts[host] = text.count(f"Accepted publickey for {user} ")
    return counts


def user_processes(user: str) -> list[str]:
    """The user's live processes on the laptop side (not jobs or sessions on the cluster)."""
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,stat=,args="], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    return [
        line
        for line in out.splitlines()
        if line.split()[1][0] not in "ZX" and not _on_the_cluster(int(line.split()[0]))
    ]


def _on_the_cluster(pid: int) -> bool:
    """True for processes of the mini-cluster's hosts (one PID namespace with the laptop)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return f":name=systemd:/{CGROUP_NAME}/" in text


def jupyter_argv(base: list[str], *extra: str) -> list[str]:
    return [*base, "jupyter", "--cluster", "sandbox", "--venv", str(CLUSTER_VENV),
            "--no-browser", "--json", *extra]  # fmt: skip


def test_jupyter_end_to_end_and_clean_exit(sandbox, laptop_nodetunnel):
    before = auth_counts(sandbox, ALICE)
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, "-p", "gpu", "--gres", "gpu:1"))
    try:
        info = cli.read_json()
        port = int(info["local_port"])  # type: ignore[call-overload]
        token = str(info["url"]).split("token=", 1)[1]
        node = str(info["node"])
        assert str(info["url"]).startswith(f"http://127.0.0.1:{port}/lab?token=")
        # Ready means reachable: the token opens it, nothing else does.
        assert http_status(port, "/api/status", token) == 200
        assert http_status(port, "/api/status", None) == 403
        assert http_status(port, "/api/status", "wrong") == 403
        # Private: the socket lives in a 0700 directory of the user; another user cannot connect.
        sock = str(info["remote_socket"])
        mode = sandbox.run_in(node, ["stat", "-c", "%a %U", os.path.dirname(sock)]).split()
        assert mode == ["700", ALICE]
        probe = "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
        bob = as_user_argv(BOB, ["/usr/bin/python3", "-c", probe, sock])
        res = run(sandbox.host_argv(node, bob), timeout_s=20, check=False)
        assert res.returncode != 0
        assert "PermissionError" in res.stderr
        # The token is in no process's argv, on the laptop or any node (one PID namespace).
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert token.encode() not in cmdline.read_bytes(), cmdline
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        # One authentication per hop for the whole session (login, gateway, the node).
        after = auth_counts(sandbox, ALICE)
        delta = {h: after[h] - before[h] for h in after}
        assert delta == {"login": 1, "gateway": 1, node: 1, ({"node1", "node2"} - {node}).pop(): 0}
    except BaseException:
        cli.stop()
        raise
    # Ctrl-C: tunnel, control connections and job all gone; the port is free again.
    assert cli.interrupt() == 130
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_keep_leaves_the_job_running(sandbox, laptop_nodetunnel):
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, "--keep"))
    try:
        info = cli.read_json()
    except BaseException:
        cli.stop()
        raise
    assert cli.interrupt() == 130
    jobs = squeue(sandbox)
    assert len(jobs) == 1
    assert jobs[0].split()[0] == info["job_id"]
    assert jobs[0].split()[2] == "RUNNING"
    assert user_processes(ALICE) == []


def wait_no_jobs(sandbox: Sandbox) -> None:
    """scancel'ed jobs pass through COMPLETING; wait (with a deadline) until they are gone."""

    def no_jobs() -> bool:
        jobs = squeue(sandbox)
        if jobs:
            raise NotReady(f"jobs left: {jobs}")
        return True

    wait_until(no_jobs, timeout_s=15, what="no job left")


def _assert_clean_failure(sandbox, res, *needles):
    assert res.returncode not in (0, 130), res
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []


def test_unknown_partition_is_a_clear_error(sandbox, laptop_nodetunnel):
    res = as_user(ALICE, jupyter_argv(laptop_nodetunnel, "-p", "nosuchpartition"), timeout_s=120)
    _assert_clean_failure(sandbox, res, "nosuchpartition")


def test_impossible_resources_are_a_clear_error(sandbox, laptop_nodetunnel):
    res = as_user(
        ALICE, jupyter_argv(laptop_nodetunnel, "-p", "gpu", "--gres", "gpu:9"), timeout_s=120
    )
    _assert_clean_failure(sandbox, res, "gpu:9")


def test_missing_venv_is_reported_with_the_log(sandbox, laptop_nodetunnel):
    argv = [a if a != str(CLUSTER_VENV) else "/nonexistent/venv" for a in
            jupyter_argv(laptop_nodetunnel)]  # fmt: skip
    res = as_user(ALICE, argv, timeout_s=120)
    _assert_clean_failure(sandbox, res, "no virtualenv at /nonexistent/venv")


def test_hostile_workdir_is_used_literally(sandbox, laptop_nodetunnel):
    canary = sandbox.paths.user_home(ALICE) / "canary"
    hostile = f"x'; touch {canary}; echo '$(touch {canary})"
    res = as_user(ALICE, jupyter_argv(laptop_nodetunnel, "--workdir", hostile), timeout_s=120)
    _assert_clean_failure(sandbox, res, "cannot enter work directory")
    assert not canary.exists()


def test_local_port_in_use_is_refused_before_submitting(sandbox, laptop_nodetunnel):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = as_user(ALICE, jupyter_argv(laptop_nodetunnel, "--port", str(port)), timeout_s=120)
    _assert_clean_failure(sandbox, res, f"port {port} is already in use")
    assert "submitted job" not in res.stderr  # refused before anything reached the cluster


def test_ctrl_c_while_the_job_is_pending_cancels_it(sandbox, laptop_nodetunnel):
    # --begin keeps the job PENDING (reason BeginTime) for a minute.
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, "--sbatch-arg=--begin=now+60"))
    try:
        assert cli.proc.stderr is not None
        wait_until(
            lambda: len(squeue(sandbox)) == 1 and "PENDING" in squeue(sandbox)[0],
            timeout_s=60,
            what="the job to be pending",
        )
        assert cli.interrupt() == 130
        err = cli.stderr()
    except BaseException:
        cli.stop()
        raise
    assert "interrupted" in err
    assert "Traceback" not in err
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []
