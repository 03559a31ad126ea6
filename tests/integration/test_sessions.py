"""Sessions that survive: --keep, then list, attach and stop from another terminal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from nodetunnel.proc import NotReady, wait_until

from .helpers import ALICE, Cli, as_user, jupyter_argv, result_json, squeue, user_processes
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
    info = result_json(res.stdout)
    port = int(info["local_port"])
    token = str(info["url"]).split("token=", 1)[1]
    # The command has returned; the background process keeps the tunnel.
    assert http_status(port, "/api/status", token) == 200
    (row,) = _list(base)
    assert row["attached"] is True
    assert row["tunnel"] == "up"
    # The keeper is nodetunnel itself, re-executed in the background, its output in a log.
    keeper = int(_record_of(sandbox, str(info["session_id"]))["pid"])  # type: ignore[call-overload]
    argv = Path(f"/proc/{keeper}/cmdline").read_bytes().split(b"\0")
    assert b"nodetunnel" in argv, argv
    assert b"--take-over" in argv, argv
    log = _record_of_log(sandbox, str(info["session_id"]))
    assert "keeping the tunnel up in the background" in log
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


def _record_of(sandbox, session_id: str) -> dict[str, object]:
    path = (
        sandbox.paths.user_home(ALICE) / ".local/state/nodetunnel/sessions" / f"{session_id}.json"
    )
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _record_of_log(sandbox, session_id: str) -> str:
    path = sandbox.paths.user_home(ALICE) / ".local/state/nodetunnel/sessions" / f"{session_id}.log"
    return path.read_text()


def test_keeper_killed_hard_then_attach_recovers(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    res = as_user(ALICE, jupyter_argv(base, "--detach"), timeout_s=120)
    assert res.returncode == 0, res.stderr
    info = result_json(res.stdout)
    session_id = str(info["session_id"])
    # The background process recorded itself as the keeper before the command returned.
    assert _list(base)[0]["attached"]
    keeper = int(_record_of(sandbox, session_id)["pid"])  # type: ignore[call-overload]
    os.kill(keeper, signal.SIGKILL)  # the background process, by its PID
    wait_until(lambda: not _list(base)[0]["attached"], timeout_s=10, what="the keeper to be gone")
    (row,) = _list(base)
    assert row["state"] == "RUNNING"  # the job is untouched (it is an sbatch job)
    # attach ends the orphaned tunnel and brings the session back on the same port.
    cli = Cli(ALICE, [*base, "attach", session_id, "--no-browser", "--json"])
    again = cli.read_json()  # stops the CLI itself if no JSON comes
    assert again["local_port"] == info["local_port"]
    token = str(again["url"]).split("token=", 1)[1]
    assert http_status(int(again["local_port"]), "/api/status", token) == 200  # type: ignore[call-overload]
    # The job log is readable from the laptop.
    res = _nodetunnel(base, "logs", session_id)
    assert res.returncode == 0, res.stderr
    assert "Jupyter" in res.stdout
    assert cli.interrupt() == 130
    res = _nodetunnel(base, "stop", session_id)
    assert res.returncode == 0, res.stderr
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []


def test_scancel_elsewhere_ends_a_detached_session(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    res = as_user(ALICE, jupyter_argv(base, "--detach"), timeout_s=120)
    assert res.returncode == 0, res.stderr
    info = result_json(res.stdout)
    sandbox.run_in("gateway", ["scancel", str(info["job_id"])])
    # The background process notices (its tunnel ends with the job), cleans up and exits.
    wait_until(lambda: user_processes(ALICE) == [], timeout_s=30, what="nodetunnel to exit")
    assert "was cancelled" in _record_of_log(sandbox, str(info["session_id"]))
    assert _list(base) == []


def test_foreground_cli_killed_hard_leaves_a_recoverable_session(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    cli = Cli(ALICE, jupyter_argv(base))  # no --keep: a clean exit would cancel the job
    info = cli.read_json()  # stops the CLI itself if no JSON comes
    os.kill(cli.proc.pid, signal.SIGKILL)  # by its PID: no clean-up can run
    cli.proc.wait(timeout=10)
    (row,) = _list(base)
    assert row["state"] == "RUNNING"  # an sbatch job does not die with the terminal
    assert row["attached"] is False
    cli = Cli(ALICE, [*base, "attach", str(info["session_id"]), "--no-browser", "--json"])
    again = cli.read_json()
    assert again["local_port"] == info["local_port"]
    token = str(again["url"]).split("token=", 1)[1]
    assert http_status(int(again["local_port"]), "/api/status", token) == 200  # type: ignore[call-overload]
    assert cli.interrupt() == 130
    res = _nodetunnel(base, "stop", "--all")
    assert res.returncode == 0, res.stderr
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []


def test_a_session_started_on_another_laptop_is_listed_and_attachable(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    res = as_user(ALICE, jupyter_argv(base, "--detach", "--lease", "5m"), timeout_s=120)
    assert res.returncode == 0, res.stderr
    info = result_json(res.stdout)
    session_id = str(info["session_id"])
    # A second laptop: its own session store and runtime directory, nothing known there.
    home = sandbox.paths.user_home(ALICE)
    # (a short runtime directory: its control sockets must fit in 103 bytes)
    other_dirs = (home / ".other-laptop-state", Path(f"/tmp/ol-{os.getpid()}"))
    for d in other_dirs:
        as_user(ALICE, ["mkdir", "-m", "700", "-p", str(d)], check=True)
    other = ["env", f"XDG_STATE_HOME={other_dirs[0]}", f"XDG_RUNTIME_DIR={other_dirs[1]}", *base]
    try:
        res = as_user(ALICE, [*other, "list", "--json"])
        assert json.loads(res.stdout) == [], res.stderr  # no cluster asked: nothing to show
        res = as_user(ALICE, [*other, "list", "--cluster", "sandbox", "--json"], timeout_s=60)
        assert res.returncode == 0, res.stderr
        (row,) = json.loads(res.stdout)
        assert row["session_id"] == session_id
        assert row["job_id"] == info["job_id"]
        assert row["state"] == "RUNNING"
        assert row["here"] is False
        assert row["node"] == info["node"]
        # Attach from the second laptop: its own port, the session's token.
        cli = Cli(ALICE, [*other, "attach", session_id[:6], "--cluster", "sandbox",
                          "--no-browser", "--json"])  # fmt: skip
        try:
            again = cli.read_json()
            assert again["session_id"] == session_id
            assert again["local_port"] != info["local_port"]  # the first laptop holds that one
            assert again["url"].split("token=")[1] == str(info["url"]).split("token=")[1]  # type: ignore[union-attr]
            token = str(again["url"]).split("token=", 1)[1]
            assert http_status(int(again["local_port"]), "/api/status", token) == 200  # type: ignore[call-overload]
            # It checks in for the lease as well (the lease length came from the cluster).
            record = json.loads(
                (other_dirs[0] / "nodetunnel" / "sessions" / f"{session_id}.json").read_text()
            )
            assert record["lease_s"] == 300
        except BaseException:
            cli.stop()
            raise
        assert cli.interrupt() == 130
        (row,) = json.loads(as_user(ALICE, [*other, "list", "--json"], timeout_s=60).stdout)
        assert row["here"] is True
        assert row["state"] == "RUNNING"
        # The first laptop stops it; the second one then sees it ended and forgets it.
        res = _nodetunnel(base, "stop", session_id)
        assert res.returncode == 0, res.stderr
        wait_no_jobs(sandbox)
        (row,) = json.loads(as_user(ALICE, [*other, "list", "--json"], timeout_s=60).stdout)
        assert row["state"] == "ENDED"
        assert json.loads(as_user(ALICE, [*other, "list", "--json"], timeout_s=60).stdout) == []
        assert user_processes(ALICE) == []
    finally:
        for d in other_dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_a_frozen_tunnel_is_replaced(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    res = as_user(ALICE, jupyter_argv(base, "--detach"), timeout_s=120)
    assert res.returncode == 0, res.stderr
    info = result_json(res.stdout)
    session_id = str(info["session_id"])
    port = int(info["local_port"])
    token = str(info["url"]).split("token=", 1)[1]
    frozen = int(_record_of(sandbox, session_id)["tunnel_pid"])  # type: ignore[call-overload]
    # The tunnel's ssh lives on but forwards nothing: only the health probe can tell.
    os.kill(frozen, signal.SIGSTOP)
    stopped = time.monotonic()

    def replaced() -> bool:
        if int(_record_of(sandbox, session_id)["tunnel_pid"]) == frozen:  # type: ignore[call-overload]
            raise NotReady("still the frozen tunnel")
        try:
            return http_status(port, "/api/status", token) == 200
        except OSError as exc:
            raise NotReady(str(exc)) from exc

    wait_until(replaced, timeout_s=60, what="the frozen tunnel to be replaced")
    print(f"frozen tunnel replaced {time.monotonic() - stopped:.1f} s after it froze")
    assert "stopped answering" in _record_of_log(sandbox, session_id)
    res = _nodetunnel(base, "stop", "--all")
    assert res.returncode == 0, res.stderr
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []


def test_ssh_config_entry_reaches_the_allocated_node_and_goes_with_the_session(
    sandbox, laptop_nodetunnel
):
    base = laptop_nodetunnel
    res = as_user(ALICE, jupyter_argv(base, "--detach"), timeout_s=120)
    assert res.returncode == 0, res.stderr
    info = result_json(res.stdout)
    session_id = str(info["session_id"])
    try:
        res = _nodetunnel(base, "ssh-config", session_id)
        assert res.returncode == 0, res.stderr
        name = res.stdout.strip()
        assert name == f"nodetunnel-{session_id}"
        (include,) = [ln for ln in res.stderr.splitlines() if "Include " in ln]
        path = include.split("Include ", 1)[1].strip().strip('"')
        # What VS Code's Remote-SSH would run: ssh to the entry, which is the job's node only.
        # (host keys as this user knows them: the sandbox keeps them in its own file)
        known = f"UserKnownHostsFile={sandbox.paths.known_hosts}"
        res = as_user(ALICE, ["ssh", "-F", path, "-o", "BatchMode=yes", "-o", known, name,
                              "hostname"], timeout_s=60)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == info["node"]
    finally:
        res = _nodetunnel(base, "stop", session_id)
    assert res.returncode == 0, res.stderr
    text = Path(path).read_text()
    assert name not in text
