"""How a session ends by itself: the job's time limit (with a warning first) and the lease."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from nodetunnel.notify.testing import read_records
from nodetunnel.proc import wait_until

from .helpers import (
    ALICE,
    Cli,
    as_user,
    jupyter_argv,
    recorded_notifications,
    result_json,
    squeue,
    user_processes,
)
from .test_jupyter import http_status, wait_no_jobs


def _nodetunnel(base: list[str], *args: str, user: str = ALICE):
    return as_user(user, [*base, *args], timeout_s=120)


def _list(base: list[str], *args: str) -> list[dict[str, object]]:
    res = _nodetunnel(base, "list", "--json", *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def _session_home(sandbox, session_id: str):
    return sandbox.paths.user_home(ALICE) / ".nodetunnel" / "sessions" / session_id


def test_walltime_warning_then_clean_end(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    started = time.monotonic()
    with recorded_notifications(base) as (noting, notes):
        cli = Cli(ALICE, jupyter_argv(noting, "--time", "1", "--warn-before", "30s"))
        try:
            info = cli.read_json()
            # SLURM ends the job at its one-minute limit (its time-limit check runs every 30 s).
            code = cli.proc.wait(timeout=150)
        except BaseException:
            cli.stop()
            raise
        records = read_records(notes)
    took = time.monotonic() - started
    err = cli.stderr()
    # Notified: the warning, then the end (unexpected: the time limit); the start was at once.
    assert [r["kind"] for r in records] == ["walltime_warning", "ended"], records
    assert "reached its time limit (TIMEOUT)" in records[1]["message"]
    assert code == 0, err
    lines = err.splitlines()
    warned = [i for i, ln in enumerate(lines) if "reaches its time limit in" in ln]
    ended = [i for i, ln in enumerate(lines) if "reached its time limit (TIMEOUT)" in ln]
    assert len(warned) == 1, err
    assert len(ended) == 1, err
    assert warned[0] < ended[0]
    print(f"job with --time 1: warned, then ended cleanly {took:.0f} s after the command started")
    # Clean: no job, no process, no record, no session directory on the cluster.
    assert squeue(sandbox) == []
    assert user_processes(ALICE) == []
    assert _list(base) == []
    assert not _session_home(sandbox, str(info["session_id"])).exists()


@pytest.mark.parametrize("home_view", ["direct", "cached"], indirect=True)
def test_lease_keeps_the_job_while_kept_and_ends_it_when_nobody_does(
    sandbox, laptop_nodetunnel, home_view
):
    base = laptop_nodetunnel
    lease_s = 12
    res = _nodetunnel(base, *jupyter_argv([], "--detach", "--lease", f"{lease_s}s"))
    assert res.returncode == 0, res.stderr
    info = result_json(res.stdout)
    session_id = str(info["session_id"])
    token = str(info["url"]).split("token=", 1)[1]
    heartbeat = _session_home(sandbox, session_id) / "heartbeat"
    # Kept: the background process checks in, so the job outlives the lease twice over.
    first = heartbeat.read_text()
    time.sleep(2 * lease_s + 2)  # time itself is what this step is about
    assert heartbeat.read_text() != first  # rewritten since
    assert http_status(int(info["local_port"]), "/api/status", token) == 200  # type: ignore[call-overload]
    (row,) = _list(base)
    assert row["state"] == "RUNNING"
    # The laptop is lost: its nodetunnel processes die at once (kill -9, by PID).
    record = json.loads(
        (sandbox.paths.user_home(ALICE) / ".local/state/nodetunnel/sessions"
         / f"{session_id}.json").read_text()
    )  # fmt: skip
    lost = time.monotonic()
    for pid in (record["pid"], record["tunnel_pid"]):
        os.kill(pid, signal.SIGKILL)
    # The job ends itself within the lease (plus a check interval).
    wait_no_jobs(sandbox, timeout_s=3 * lease_s)
    print(
        f"lease {lease_s} s: the job ended {time.monotonic() - lost:.1f} s after the laptop was lost"
    )
    log = (_session_home(sandbox, session_id) / "job.log").read_text()
    assert "the lease expired" in log
    # list reports the end and removes what the lost processes left on this machine.
    (row,) = _list(base)
    assert row["state"] == "ENDED"
    assert _list(base) == []
    wait_until(lambda: user_processes(ALICE) == [], timeout_s=10, what="leftovers to be gone")
