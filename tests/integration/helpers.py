"""Helpers for integration tests: run things as the test users, submit and watch jobs."""

from __future__ import annotations

import subprocess

from nodetunnel.proc import Completed, NotReady, run, wait_until
from nodetunnel.quoting import remote_command
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv
from nodetunnel.sandbox.topology import USERS

ALICE, BOB = USERS


def squeue(sb: Sandbox) -> list[str]:
    out = sb.run_in("gateway", ["squeue", "-h", "-o", "%i %u %T %N"])
    return [line for line in out.splitlines() if line.strip()]


def as_user(user: str, argv: list[str], *, timeout_s: float = 30, check: bool = False) -> Completed:
    """Run ``argv`` on the laptop as a test user (their HOME, no root environment)."""
    return run(
        as_user_argv(user, argv),
        timeout_s=timeout_s,
        check=check,
        cwd="/",
    )


def ssh_argv(
    sb: Sandbox, *, jump: str | None, host: str, command: list[str] | None = None
) -> list[str]:
    argv = ["ssh", "-F", str(sb.paths.ssh_config), "-o", "BatchMode=yes"]
    if jump:
        argv += ["-J", jump]
    argv.append(host)
    if command:
        argv += ["--", remote_command(command)]
    return argv


def user_ssh(
    sb: Sandbox,
    user: str,
    *,
    jump: str | None,
    host: str,
    command: list[str],
    timeout_s: float = 30,
) -> Completed:
    return as_user(user, ssh_argv(sb, jump=jump, host=host, command=command), timeout_s=timeout_s)


def sbatch(sb: Sandbox, user: str, *args: str) -> str:
    """Submit a job as ``user`` through login -> gateway, like a researcher would; return its id."""
    home = str(sb.paths.user_home(user))
    res = user_ssh(
        sb, user, jump="login", host="gateway", command=["sbatch", "--parsable", "-D", home, *args]
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def job_state(sb: Sandbox, job_id: str) -> dict[str, str]:
    out = sb.run_in("gateway", ["scontrol", "-o", "show", "job", job_id])
    fields = {}
    for word in out.split():
        key, _, value = word.partition("=")
        fields[key] = value
    return fields


def wait_job(sb: Sandbox, job_id: str, states: set[str], timeout_s: float = 30) -> dict[str, str]:
    def probe() -> dict[str, str] | None:
        info = job_state(sb, job_id)
        if info.get("JobState") in states:
            return info
        raise NotReady(f"job {job_id} is {info.get('JobState')}")

    return wait_until(probe, timeout_s=timeout_s, what=f"job {job_id} to reach {sorted(states)}")


def popen_as_user(user: str, argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        as_user_argv(user, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd="/",
    )
