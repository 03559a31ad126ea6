"""`nodetunnel jupyter` end to end on the mini-cluster, run by a test user as on a laptop."""

from __future__ import annotations

import http.client
import os
import socket
from pathlib import Path

import pytest

from nodetunnel.errors import ExitCode
from nodetunnel.proc import NotReady, run, wait_until
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv
from nodetunnel.session import port_is_free

from .helpers import (
    ALICE,
    BOB,
    CLUSTER_VENV,
    LAPTOP_VENV,
    Cli,
    as_user,
    jupyter_argv,
    squeue,
    user_processes,
)


def http_status(port: int, path: str, token: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"token {token}"} if token else {})
        return conn.getresponse().status
    finally:
        conn.close()


def refusals(sb: Sandbox, user: str) -> int:
    """Node sshd refusals of ``user`` by the site policy (pam_slurm_adopt)."""
    total = 0
    for node in ("node1", "node2"):
        log = sb.paths.log_dir / f"sshd-{node}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        total += text.count(f"Access denied for user {user} by PAM account configuration")
    return total


def auth_counts(sb: Sandbox, user: str) -> dict[str, int]:
    counts = {}
    for host in ("login", "gateway", "node1", "node2"):
        log = sb.paths.log_dir / f"sshd-{host}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        counts[host] = text.count(f"Accepted publickey for {user} ")
    return counts


@pytest.mark.parametrize("home_view", ["direct", "cached"], indirect=True)
def test_jupyter_end_to_end_and_clean_exit(sandbox, laptop_nodetunnel, home_view):
    before = auth_counts(sandbox, ALICE)
    refused_before = refusals(sandbox, ALICE)
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
        sock = str(info["remote"])
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
        # nodetunnel only ever connects to the job's node: the site policy never refused it.
        assert refusals(sandbox, ALICE) == refused_before
    except BaseException:
        cli.stop()
        raise
    # Ctrl-C: tunnel, control connections and job all gone; the port is free again.
    assert cli.interrupt() == 130
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []
    assert port_is_free(port)  # nothing listens there any more


def test_keep_leaves_the_job_running(sandbox, laptop_nodetunnel):
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, "--keep"))
    info = cli.read_json()  # stops the CLI itself if no JSON comes
    assert cli.interrupt() == 130
    jobs = squeue(sandbox)
    assert len(jobs) == 1
    assert jobs[0].split()[0] == info["job_id"]
    assert jobs[0].split()[2] == "RUNNING"
    assert user_processes(ALICE) == []


def wait_no_jobs(sandbox: Sandbox, timeout_s: float = 15) -> None:
    """scancel'ed jobs pass through COMPLETING; wait (with a deadline) until they are gone."""

    def no_jobs() -> bool:
        jobs = squeue(sandbox)
        if jobs:
            raise NotReady(f"jobs left: {jobs}")
        return True

    wait_until(no_jobs, timeout_s=timeout_s, what="no job left")


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


@pytest.mark.parametrize("home_view", ["direct", "cached"], indirect=True)
def test_missing_venv_is_reported_with_the_log(sandbox, laptop_nodetunnel, home_view):
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


def test_app_not_installed_is_reported(sandbox, laptop_nodetunnel):
    # A virtualenv without JupyterLab.
    argv = [a if a != str(CLUSTER_VENV) else str(LAPTOP_VENV) for a in
            jupyter_argv(laptop_nodetunnel)]  # fmt: skip
    res = as_user(ALICE, argv, timeout_s=120)
    _assert_clean_failure(sandbox, res, "jupyter not found on PATH", "pip install jupyterlab")


def _kill_job_when(sandbox, state: str) -> None:
    """scancel the user's job from the gateway once it reaches ``state``."""

    def job_in_state() -> str:
        jobs = [j.split() for j in squeue(sandbox)]
        if jobs and jobs[0][2] == state:
            return jobs[0][0]
        raise NotReady(f"jobs: {jobs}")

    job = wait_until(job_in_state, timeout_s=60, what=f"the job to be {state}")
    sandbox.run_in("gateway", ["scancel", job])


@pytest.mark.parametrize(
    ("state", "extra", "expected"),
    [
        # --begin keeps the job PENDING (reason BeginTime).
        ("PENDING", "--sbatch-arg=--begin=now+60", "CANCELLED"),
        # RUNNING but busy in --setup, before the app listens.
        ("RUNNING", "--setup=sleep 60", "failed before the app was ready"),
    ],
)
def test_job_killed_from_elsewhere_is_reported(sandbox, laptop_nodetunnel, state, extra, expected):
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, extra))
    try:
        _kill_job_when(sandbox, state)
        code = cli.proc.wait(timeout=60)
        err = cli.stderr()
    except BaseException:
        cli.stop()
        raise
    assert code == ExitCode.SCHEDULER, err
    assert expected in err
    assert "Traceback" not in err
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []


def _profile(sandbox, **keys: str) -> Path:
    """A config file (in the test user's home) with a cluster 'test' using the sandbox's hosts."""
    lines = ["[clusters.test]", f'ssh_config = "{sandbox.paths.ssh_config}"']
    lines += [f'{k} = "{v}"' for k, v in keys.items()]
    path = sandbox.paths.user_home(ALICE) / "test-config.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path


def _with_profile(argv: list[str], config: Path) -> list[str]:
    argv = [a for a in argv if a not in ("--cluster", "sandbox")]
    return [*argv, "--cluster", "test", "--config", str(config)]


def test_unreachable_login_host_is_a_clear_error(sandbox, laptop_nodetunnel):
    # 198.18.9.9 is in the test range, where nothing answers: no route from the laptop.
    config = _profile(sandbox, login="198.18.9.9", gateway="gateway")
    res = as_user(ALICE, _with_profile(jupyter_argv(laptop_nodetunnel), config), timeout_s=120)
    assert res.returncode == ExitCode.CONNECTION, res.stderr
    _assert_clean_failure(sandbox, res, "cannot reach the cluster", "network")


def test_refused_authentication_is_a_clear_error(sandbox, laptop_nodetunnel):
    # Alice's key is not authorised for Bob's account.
    config = _profile(sandbox, login="login", gateway="gateway", user=BOB)
    res = as_user(ALICE, _with_profile(jupyter_argv(laptop_nodetunnel), config), timeout_s=120)
    assert res.returncode == ExitCode.CONNECTION, res.stderr
    _assert_clean_failure(sandbox, res, "authentication refused")


HOSTILE_OPTIONS = [
    "--partition", "--gres", "--mem", "--time", "--account", "--qos", "--constraint",
    "--reservation", "--conda-env", "--module", "--venv", "--workdir", "--sbatch-arg",
]  # fmt: skip


@pytest.mark.parametrize("option", HOSTILE_OPTIONS)
def test_hostile_values_never_run_as_code(sandbox, laptop_nodetunnel, option):
    canary = sandbox.paths.user_home(ALICE) / f"canary{option}"
    values = [
        f"x'; touch {canary}; echo '",
        f"$(touch {canary})`touch {canary}`",
        f"a\ntouch {canary}",
    ]
    for value in values:
        if option == "--sbatch-arg":
            value = "--comment=" + value
        cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, option, value, "--timeout", "15"))
        try:
            # Either refused with a clear error, or used literally (the app may even start).
            info = cli.read_json(timeout_s=60, allow_exit=True)
            code = cli.interrupt() if info else cli.proc.wait(timeout=10)
            err = cli.stderr()
        except BaseException:
            cli.stop()
            raise
        assert code != 0, (option, value)
        assert "Traceback" not in err, err
        assert not canary.exists(), (option, value)
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []


def test_tcp_mode_for_sites_that_forbid_socket_forwarding(sandbox, laptop_nodetunnel):
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, "--tcp"))
    try:
        info = cli.read_json()
        assert str(info["remote"]).startswith("127.0.0.1:")  # the node's loopback only
        token = str(info["url"]).split("token=", 1)[1]
        port = int(info["local_port"])  # type: ignore[call-overload]
        assert http_status(port, "/api/status", token) == 200
        assert http_status(port, "/api/status", None) == 403
    except BaseException:
        cli.stop()
        raise
    assert cli.interrupt() == 130
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []


def test_missing_conda_is_reported(sandbox, laptop_nodetunnel):
    res = as_user(ALICE, jupyter_argv(laptop_nodetunnel, "--conda-env", "myenv"), timeout_s=120)
    _assert_clean_failure(sandbox, res, "conda is not on PATH")
