"""Sessions that survive: --keep, then list, attach and stop from another terminal."""

from __future__ import annotations

import json
import os
import signal
import time

from nodetunnel.proc import NotReady, wait_until

from .helpers import ALICE, Cli, as_user, jupyter_argv, squeue, user_processes
from .test_jupyter import http_status, wait_no_jobs


def _nodetunnel(base: list[str], *args: str):
    return as_user(ALICE, [*base, *args], timeout_s=120)


def _list(base: list[str]) -> list[dict[str, object]]:
    res = _nodetunnel(base, "list", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_keep_list_attach_stop(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    # 1. Start with --keep and leave (Ctrl-C): the job runs on, the session is recorded.
    cli = Cli(ALICE, jupyter_argv(base, "--keep"))
    first = cli.read_json()  # stops the CLI itself if no JSON comes
    assert cli.interrupt() == 130
    session_id = str(first["session_id"])
    (row,) = _list(base)
    assert row["session_id"] == session_id
    assert row["state"] == "RUNNING"
    assert row["node"] == first["node"]
    assert row["tunnel"] == "down"
    assert "token" not in row
    assert "token=" not in json.dumps(row)

    # 2. Attach: the tunnel comes back on the same port, with the same token.
    cli = Cli(ALICE, [*base, "attach", session_id, "--no-browser", "--json"])
    try:
        again = cli.read_json()
        assert again["local_port"] == first["local_port"]
        assert again["url"] == first["url"]
        token = str(again["url"]).split("token=", 1)[1]
        assert http_status(int(again["local_port"]), "/api/status", token) == 200  # type: ignore[call-overload]
        (row,) = _list(base)
        assert row["tunnel"] == "up"
        assert row["attached"] is True
        # A second attach is refused while one holds the session.
        res = _nodetunnel(base, "attach", session_id, "--no-browser")
        assert res.returncode == 2
        assert "attached already" in res.stderr
    except BaseException:
        cli.stop()
        raise
    assert cli.interrupt() == 130
    jobs = squeue(sandbox)
    assert len(jobs) == 1
    assert "RUNNING" in jobs[0]  # leaving an attach never cancels the job

    # 3. Stop: job cancelled, session forgotten, nothing left on the laptop.
    res = _nodetunnel(base, "stop", session_id[:6])
    assert res.returncode == 0, res.stderr
    assert f"stopped {session_id}" in res.stderr
    wait_no_jobs(sandbox)
    assert _list(base) == []
    assert user_processes(ALICE) == []
    res = _nodetunnel(base, "attach", session_id)
    assert res.returncode == 2
    assert "nodetunnel list" in res.stderr


def test_list_forgets_sessions_whose_job_ended(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    cli = Cli(ALICE, jupyter_argv(base, "--keep"))
    info = cli.read_json()  # stops the CLI itself if no JSON comes
    assert cli.interrupt() == 130
    sandbox.run_in("gateway", ["scancel", str(info["job_id"])])  # from elsewhere
    wait_no_jobs(sandbox)
    (row,) = _list(base)
    assert row["state"] == "ENDED"
    assert _list(base) == []


def test_detach_keeps_the_tunnel_up_and_heals_it(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    res = as_user(ALICE, jupyter_argv(base, "--detach"), timeout_s=120)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    port = int(info["local_port"])
    token = str(info["url"]).split("token=", 1)[1]
    # The command has returned; the background process keeps the tunnel.
    assert http_status(port, "/api/status", token) == 200
    (row,) = _list(base)
    assert row["attached"] is True
    assert row["tunnel"] == "up"
    # Kill the tunnel's ssh (by its PID): it comes back on the same port.
    record = json.loads(
        (sandbox.paths.user_home(ALICE) / ".local/state/nodetunnel/sessions"
         / f"{info['session_id']}.json").read_text()
    )  # fmt: skip
    os.kill(record["tunnel_pid"], signal.SIGKILL)
    killed = time.monotonic()

    def back() -> bool:
        try:
            return http_status(port, "/api/status", token) == 200
        except OSError as exc:
            raise NotReady(str(exc)) from exc

    wait_until(back, timeout_s=30, what="the tunnel to come back")
    print(f"tunnel back {time.monotonic() - killed:.2f} s after its ssh was killed")
    # Stop from another terminal: the background process, the tunnel and the job end.
    res = _nodetunnel(base, "stop", "--all")
    assert res.returncode == 0, res.stderr
    wait_no_jobs(sandbox)
    assert _list(base) == []
    assert user_processes(ALICE) == []
