"""A pending session on the mini-cluster: its reason, queue position and estimate as --json
events, then RUNNING once the jobs ahead of it are gone; the "job started" notification once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from nodetunnel.notify.testing import read_records
from nodetunnel.proc import wait_until

from .helpers import (
    ALICE,
    BOB,
    Cli,
    as_user,
    jupyter_argv,
    node_processes,
    recorded_notifications,
    result_json,
    sbatch,
    user_processes,
    wait_job,
)
from .test_jupyter import http_status, wait_no_jobs


def _fill_gpu(sandbox) -> list[str]:
    """Another user's jobs on both GPUs (with a time limit, so SLURM can estimate when they
    end), and one of theirs waiting for a GPU too."""
    args = ("-p", "gpu", "--gres=gpu:1", "--time=10", "--wrap", "sleep 600")
    running = [sbatch(sandbox, BOB, *args) for _ in range(2)]
    for job_id in running:
        wait_job(sandbox, job_id, {"RUNNING"})
    return [*running, sbatch(sandbox, BOB, *args)]


def test_a_pending_session_shows_its_place_then_runs(sandbox, laptop_nodetunnel):
    _fill_gpu(sandbox)
    with recorded_notifications(laptop_nodetunnel) as (base, notes):
        _pending_then_running(sandbox, base, notes)
    wait_no_jobs(sandbox)


def _pending_then_running(sandbox, base: list[str], notes: Path) -> None:
    cli = Cli(ALICE, jupyter_argv(base, "-p", "gpu", "--gres", "gpu:1"))
    try:
        first = cli.wait_event(lambda e: e["event"] == "pending", timeout_s=60)
        assert first["state"] == "PENDING"
        # Behind the other user's waiting job: 2 of 2 in gpu, with SLURM's reason.
        placed = cli.wait_event(lambda e: e.get("position") is not None, timeout_s=60)
        assert (placed["position"], placed["pending_in_partition"]) == (2, 2)
        assert placed["partition"] == "gpu"
        assert placed["reason"] in ("Priority", "Resources")
        # The estimate is N/A until SLURM's backfill pass (every 30 s) has seen the job.
        estimated = placed if placed.get("estimated_start") is not None else cli.wait_event(
            lambda e: e.get("estimated_start") is not None, timeout_s=90)  # fmt: skip
        assert str(estimated["estimated_start"])[:2] == "20"  # an ISO 8601 time
        assert read_records(notes) == []  # nothing to notify while it waits
        sandbox.run_in("gateway", ["scancel", "--user", BOB])  # the queue clears
        cancelled = time.monotonic()
        running = cli.wait_event(lambda e: e["event"] == "running", timeout_s=60)
        running_after_s = time.monotonic() - cancelled
        assert running["node"] in ("node1", "node2")
        ready = cli.wait_event(lambda e: e["event"] == "ready", timeout_s=120)
        info = cli.read_json()
        assert ready["url"] == str(info["url"]).split("?", 1)[0]
        assert ready["job_id"] == info["job_id"] == first["job_id"]
        token = str(info["url"]).split("token=", 1)[1]
        assert http_status(int(info["local_port"]), "/api/status", token) == 200  # type: ignore[call-overload]
        kinds = [e["event"] for e in cli.events]
        assert kinds[0] == "submitted"
        assert kinds[-2:] == ["running", "ready"]
        assert set(kinds[1:-2]) == {"pending"}
        assert all(isinstance(e["elapsed_s"], float) for e in cli.events)
        records = read_records(notes)
        # It waited: "started" and "ready" once each, from this process.
        assert [r["kind"] for r in records] == ["running", "ready"]
        assert records[0]["title"] == f"Job {info['job_id']} started"
        assert len({r["pid"] for r in records}) == 1
        print(f"pending: first event at {first['elapsed_s']} s, position at "
              f"{placed['elapsed_s']} s, SLURM's estimate at {estimated['elapsed_s']} s; running "
              f"{running_after_s:.1f} s after the cancel, ready at {ready['elapsed_s']} s; "
              f"{len(cli.events)} events")  # fmt: skip
        assert cli.interrupt() == 130
        err = cli.stderr()
    except BaseException:
        cli.stop()
        raise
    assert "Traceback" not in err  # (under --json the progress lines are the events)


def test_a_detached_session_whose_app_dies_notifies_from_the_keeper(sandbox, laptop_nodetunnel):
    with recorded_notifications(laptop_nodetunnel) as (base, notes):
        res = as_user(ALICE, jupyter_argv(base, "--detach"), timeout_s=120)
        assert res.returncode == 0, res.stderr
        info = result_json(res.stdout)
        assert read_records(notes) == []  # it started at once: nothing to notify
        app = [int(line.split()[0]) for line in node_processes(ALICE, str(info["node"]))
               if "jupyter" in line and "nt_" not in line]  # fmt: skip
        assert app, node_processes(ALICE, str(info["node"]))
        for pid in app:  # the app dies on the node: the job fails, which nobody asked for
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: user_processes(ALICE) == [], timeout_s=60, what="the keeper to exit")
        records = read_records(notes)
    assert [r["kind"] for r in records] == ["ended"], records
    assert records[0]["title"] == f"Session {info['session_id']} ended"
    assert "failed" in records[0]["message"]
    assert records[0]["urgent"] is True
