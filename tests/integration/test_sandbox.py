"""The mini-cluster behaves like a real site: jump hosts, allocated-node-only SSH, GPU jobs."""

from __future__ import annotations

import errno
import json
import socket
import sys
import time
from pathlib import Path

import pytest

from nodetunnel.proc import run
from nodetunnel.sandbox.cluster import CGROUP_MOUNTS
from nodetunnel.sandbox.topology import CGROUP_NAME, NETNS_PREFIX, ROUTE_PROTO, USERS, Paths

from .helpers import (
    ALICE,
    BOB,
    as_user,
    popen_as_user,
    sbatch,
    squeue,
    ssh_argv,
    user_ssh,
    wait_job,
)

NODETUNNEL = [sys.executable, "-m", "nodetunnel"]
PAM_REFUSAL = "Access denied by pam_slurm_adopt: you have no active jobs on this node"


def _connect(addr: str, port: int = 22) -> int:
    """0 if a TCP connection succeeds, else the errno."""
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect((addr, port))
        except OSError as exc:
            return exc.errno or -1
    return 0


def test_laptop_reaches_login_only(sandbox):
    topo = sandbox.topo
    assert _connect(topo.login_addr) == 0
    for addr in (topo.gateway_outer_addr, topo.gateway_addr, topo.node_addr(1), topo.node_addr(2)):
        assert _connect(addr) in (errno.ENETUNREACH, errno.EHOSTUNREACH), addr
    route = run(["ip", "route", "get", topo.gateway_addr], timeout_s=5, check=False)
    assert route.returncode != 0 or "unreachable" in route.stdout


def test_login_cannot_reach_nodes_but_gateway_can(sandbox):
    probe = (
        "import socket,sys\ns=socket.socket();s.settimeout(2)\n"
        "sys.exit(s.connect_ex((sys.argv[1], 22)))"
    )
    node = sandbox.topo.node_addr(1)
    assert (
        run(
            sandbox.host_argv("login", ["/usr/bin/python3", "-c", probe, node]),
            timeout_s=10,
            check=False,
        ).returncode
        != 0
    )
    assert (
        run(
            sandbox.host_argv("gateway", ["/usr/bin/python3", "-c", probe, node]),
            timeout_s=10,
            check=False,
        ).returncode
        == 0
    )


def test_every_host_has_its_own_name_and_tmp(sandbox):
    for host in ("login", "gateway", "node1", "node2"):
        assert sandbox.run_in(host, ["hostname"]).strip() == host
    sandbox.run_in("node1", ["touch", "/tmp/only-on-node1"])
    assert sandbox.run_in("node1", ["ls", "/tmp"]).split().count("only-on-node1") == 1
    for host in ("gateway", "node2"):
        assert "only-on-node1" not in sandbox.run_in(host, ["ls", "/tmp"])
    assert not Path("/tmp/only-on-node1").exists()


def test_jump_chain_and_host_key_checking(sandbox):
    res = user_ssh(sandbox, ALICE, jump="login", host="gateway", command=["hostname"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "gateway"
    # With an empty known_hosts the connection is refused: checking is on.
    argv = ssh_argv(sandbox, jump=None, host="login", command=["true"])
    argv[1:1] = ["-o", "UserKnownHostsFile=/dev/null"]
    res = as_user(ALICE, argv)
    assert res.returncode == 255
    assert "Host key verification failed" in res.stderr


def test_node_ssh_refused_without_job_accepted_with_one(sandbox):
    res = user_ssh(sandbox, ALICE, jump="login,gateway", host="node1", command=["hostname"])
    assert res.returncode == 255
    assert PAM_REFUSAL in res.stderr

    job = sbatch(sandbox, ALICE, "-w", "node1", "--wrap", "sleep 300")
    wait_job(sandbox, job, {"RUNNING"})
    res = user_ssh(sandbox, ALICE, jump="login,gateway", host="node1", command=["hostname"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "node1"
    # Still refused on the node where the job is not.
    res = user_ssh(sandbox, ALICE, jump="login,gateway", host="node2", command=["hostname"])
    assert res.returncode == 255
    assert PAM_REFUSAL in res.stderr
    # ...and for another user on the node where it is.
    res = user_ssh(sandbox, BOB, jump="login,gateway", host="node1", command=["hostname"])
    assert res.returncode == 255
    assert PAM_REFUSAL in res.stderr


def test_scancel_ends_an_adopted_ssh_session(sandbox):
    job = sbatch(sandbox, ALICE, "-w", "node2", "--wrap", "sleep 300")
    wait_job(sandbox, job, {"RUNNING"})
    session = popen_as_user(
        ALICE,
        ssh_argv(
            sandbox,
            jump="login,gateway",
            host="node2",
            command=["sh", "-c", "echo in; grep freezer /proc/self/cgroup; sleep 120"],
        ),
    )
    try:
        assert session.stdout is not None
        assert session.stdout.readline().strip() == "in"
        freezer = session.stdout.readline()
        sandbox.run_in("gateway", ["scancel", job])
        session.wait(timeout=20)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait(timeout=5)
    assert session.returncode != 0
    assert f"/job_{job}/step_extern" in freezer  # adopted into the job by pam_slurm_adopt


def test_gpu_job_runs_on_a_node_with_cuda_visible_devices(sandbox):
    job = sbatch(
        sandbox,
        ALICE,
        "-p",
        "gpu",
        "--gres=gpu:1",
        "-o",
        "gpu-%j.out",
        "--wrap",
        'echo "cuda=$CUDA_VISIBLE_DEVICES host=$(hostname)"',
    )
    info = wait_job(sandbox, job, {"COMPLETED", "FAILED"})
    assert info["JobState"] == "COMPLETED", info
    out = (sandbox.paths.user_home(ALICE) / f"gpu-{job}.out").read_text()
    assert out.strip() == f"cuda=0 host={info['NodeList']}"
    assert info["Partition"] == "gpu"


def test_users_cannot_read_each_others_home(sandbox):
    secret = sandbox.paths.user_home(ALICE) / ".ssh" / "id_ed25519"
    res = as_user(BOB, ["cat", str(secret)])
    assert res.returncode != 0
    assert "Permission denied" in res.stderr


@pytest.mark.parametrize("home_view", ["cached"], indirect=True)
def test_cached_home_hides_a_new_file_from_a_host_that_looked_before(sandbox, home_view):
    """As NFS: a name looked up on the login host before a node creates it stays missing there."""
    name = f"cache-probe-{time.monotonic_ns()}"
    path = str(sandbox.paths.user_home(ALICE) / name)
    as_alice = ["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}", "--init-groups", "--"]
    assert sandbox.run_in("login", [*as_alice, "cat", path], check=False) == ""
    sandbox.run_in("node1", [*as_alice, "sh", "-c", 'echo fresh > "$1"', "sh", path])
    # The laptop sees the directory itself; the login host still trusts its cached miss.
    assert Path(path).read_text() == "fresh\n"
    assert sandbox.run_in("login", [*as_alice, "cat", path], check=False) == ""
    # A file that was never looked up there is read fresh, and so is new content.
    fresh = path + "-new"
    sandbox.run_in("node1", [*as_alice, "sh", "-c", 'echo v1 > "$1"', "sh", fresh])
    assert sandbox.run_in("login", [*as_alice, "cat", fresh]) == "v1\n"
    sandbox.run_in("node1", [*as_alice, "sh", "-c", 'echo v2-longer > "$1.t" && mv "$1.t" "$1"',
                             "sh", fresh])  # fmt: skip
    assert sandbox.run_in("login", [*as_alice, "cat", fresh]) == "v2-longer\n"
    res = run([*NODETUNNEL, "sandbox", "status", "--json"], timeout_s=30, check=False)
    assert json.loads(res.stdout)["home"].startswith("cached 30 s on login, gateway")


def test_status_and_ssh_config_commands(sandbox):
    res = run([*NODETUNNEL, "sandbox", "status", "--json"], timeout_s=30, check=False)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["up"] is True
    assert set(status["nodes"]) == {"node1", "node2"}
    cfg = run([*NODETUNNEL, "sandbox", "ssh-config"], timeout_s=30).stdout
    assert "StrictHostKeyChecking yes" in cfg
    assert "StrictHostKeyChecking no" not in cfg


def _leftovers(paths: Paths, pids: list[int]) -> list[str]:
    found = []
    netns = run(["ip", "netns", "list"], timeout_s=5).stdout
    found += [f"netns {n}" for n in netns.split() if n.startswith(NETNS_PREFIX)]
    if run(["ip", "route", "show", "proto", ROUTE_PROTO], timeout_s=5).stdout.strip():
        found.append("route")
    if Path("/etc/netns").exists():
        found += [
            f"/etc/netns/{e.name}"
            for e in Path("/etc/netns").iterdir()
            if e.name.startswith(NETNS_PREFIX)
        ]
    found += [f"cgroup {h}" for h, m in CGROUP_MOUNTS.items() if (m / CGROUP_NAME).exists()]
    found += [
        f"user {u}" for u in USERS if run(["id", u], timeout_s=5, check=False).returncode == 0
    ]
    if paths.root.exists():
        found.append(str(paths.root))
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            found.append(f"process {pid}")
    return found


def test_up_is_idempotent_and_down_leaves_nothing(sandbox):
    started = time.monotonic()
    res = run([*NODETUNNEL, "sandbox", "up"], timeout_s=60)
    assert "already up" in res.stderr
    assert time.monotonic() - started < 5
    # A job and an open session to the node must not survive down either.
    job = sbatch(sandbox, ALICE, "-w", "node1", "--wrap", "sleep 300")
    wait_job(sandbox, job, {"RUNNING"})
    pids = [d.pid for d in sandbox.status().daemons]
    res = run([*NODETUNNEL, "sandbox", "down"], timeout_s=60)
    assert "removed:" in res.stdout
    assert _leftovers(sandbox.paths, pids) == []
    res = run([*NODETUNNEL, "sandbox", "down"], timeout_s=60)
    assert "nothing to remove" in res.stdout
    # Leave the machine as the other tests expect it.
    sandbox.up()
    assert squeue(sandbox) == []


def test_down_after_failed_up_cleans_everything(sandbox, monkeypatch):
    from nodetunnel.errors import SandboxError
    from nodetunnel.sandbox.cluster import Sandbox

    sandbox.down()
    broken = Sandbox(sandbox.paths, node_count=2)

    def explode(*_a, **_k):
        raise SandboxError("injected failure after slurmctld started")

    monkeypatch.setattr(Sandbox, "_nodes_idle", explode)
    with pytest.raises(SandboxError, match="injected"):
        broken.up()
    monkeypatch.undo()
    assert _leftovers(sandbox.paths, []) == []
    sandbox.up()
