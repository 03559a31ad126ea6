"""Many sessions at once: 10 detached JupyterLab sessions for each of two users.

All 20 must be healthy at the same time, each reachable on its own local port
with its own token only, each user's files private from the other, every job
run as its owner; ``stop --all`` then leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nodetunnel.proc import NotReady, wait_until

from .helpers import (
    ALICE,
    BOB,
    as_user,
    end_leftovers,
    jupyter_argv,
    result_json,
    runtime_dir,
    squeue,
    state_dir,
    user_processes,
)
from .test_jupyter import http_status, wait_no_jobs

PER_USER = 10
USERS = (ALICE, BOB)
# Starts in flight at once (both users together): the machine has 2 cores, and a
# JupyterLab start and a nodetunnel start each take about a core-second.
AT_ONCE = 4
START_TIMEOUT_S = 120
ALL_UP_BUDGET_S = 120  # about 60 s on a 2-core machine

# Run as a test user: try to use each KIND:PATH; print {path: "ok" or the error's name}.
PROBE = r"""
import json, os, socket, sys
seen = {}
for item in sys.argv[1:]:
    kind, path = item.split(":", 1)
    try:
        if kind == "sock":
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(path)
        elif kind == "dir":
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        seen[path] = "ok"
    except OSError as exc:
        seen[path] = type(exc).__name__
print(json.dumps(seen))
"""


def _start(base: list[str], user: str) -> tuple[str, dict[str, object], float]:
    started = time.monotonic()
    res = as_user(user, jupyter_argv(base, "--detach"), timeout_s=START_TIMEOUT_S)
    assert res.returncode == 0, f"{user}: exit {res.returncode}: {res.stderr}"
    return user, result_json(res.stdout), time.monotonic() - started


def _list(base: list[str], user: str) -> list[dict[str, object]]:
    res = as_user(user, [*base, "list", "--json"], timeout_s=120)
    assert res.returncode == 0, res.stderr
    assert "token=" not in res.stdout  # list never shows a token
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def _token(info: dict[str, object]) -> str:
    return str(info["url"]).split("token=", 1)[1]


def _kind(path: Path) -> str:
    mode = path.lstat().st_mode
    return "sock" if stat.S_ISSOCK(mode) else "dir" if stat.S_ISDIR(mode) else "file"


def _private_paths(sandbox, user: str) -> list[Path]:
    """Everything of ``user``'s sessions on the laptop and in the (shared) cluster home."""
    tops = [runtime_dir(user), state_dir(user), sandbox.paths.user_home(user) / ".nodetunnel"]
    paths: list[Path] = []
    for top in tops:
        paths += [top, *sorted(top.rglob("*"))]
    return paths


def _probe(user: str, items: list[str], sandbox=None, host: str | None = None) -> dict[str, str]:
    argv = ["/usr/bin/python3", "-c", PROBE, *items]
    if host is None:
        res = as_user(user, argv, timeout_s=30, check=True)
        return json.loads(res.stdout)  # type: ignore[no-any-return]
    return json.loads(sandbox.run_in(host, argv, user=user))  # type: ignore[no-any-return]


def _assert_private(sandbox, sessions: dict[str, list[dict[str, object]]]) -> int:
    """Check that each user's session files are theirs only; return how many paths were tried."""
    tried = 0
    for owner in USERS:
        other = BOB if owner == ALICE else ALICE
        # Laptop and cluster home: nothing of the owner's sessions is open to others.
        paths = _private_paths(sandbox, owner)
        sockets = [p for p in paths if _kind(p) == "sock"]
        # The shared SSH connections: one per hop, shared by all the user's sessions there.
        assert len(sockets) >= 2, sockets
        # nodetunnel's own doing (the homes are 0700 here anyway): 0700 dirs, 0600 records.
        cluster_dirs = (sandbox.paths.user_home(owner) / ".nodetunnel" / "sessions").glob("nt-*")
        own = [runtime_dir(owner), *runtime_dir(owner).glob("nt-*"), *runtime_dir(owner).glob("c-*"),
               state_dir(owner),
               *state_dir(owner).glob("nt-*.json"), *cluster_dirs]  # fmt: skip
        assert len(own) >= 2 + 3 * PER_USER
        loose = [f"{p} {p.lstat().st_mode & 0o777:o}" for p in own if p.lstat().st_mode & 0o077]
        assert loose == []
        # And tried for real: the owner can use every path, the other user none.
        items = [f"{_kind(p)}:{p}" for p in paths]
        tried += len(items)
        mine = _probe(owner, items)
        assert set(mine.values()) == {"ok"}, {p: r for p, r in mine.items() if r != "ok"}
        theirs = _probe(other, items)
        assert set(theirs.values()) == {"PermissionError"}, {
            p: r for p, r in theirs.items() if r != "PermissionError"
        }
        # On the nodes: each app's socket and its directory.
        by_node: dict[str, list[str]] = {}
        for info in sessions[owner]:
            sock = str(info["remote"])
            by_node.setdefault(str(info["node"]), []).extend(
                [f"sock:{sock}", f"dir:{os.path.dirname(sock)}"]
            )
        for node, node_items in by_node.items():
            mine = _probe(owner, node_items, sandbox, node)
            assert set(mine.values()) == {"ok"}, (node, mine)
            theirs = _probe(other, node_items, sandbox, node)
            assert set(theirs.values()) == {"PermissionError"}, (node, theirs)
            tried += len(node_items)
    return tried


def _cleanup(base: list[str]) -> None:
    """Whatever happened: stop every session of both users, then end what is left by PID."""
    for user in USERS:
        with contextlib.suppress(Exception):
            as_user(user, [*base, "stop", "--all"], timeout_s=120)
        end_leftovers(user)


def test_ten_sessions_each_for_two_users(sandbox, laptop_nodetunnel):
    base = laptop_nodetunnel
    try:
        _many_sessions(sandbox, base)
    finally:
        _cleanup(base)


def _many_sessions(sandbox, base: list[str]) -> None:
    # 1. Start 10 detached sessions per user, the users interleaved, AT_ONCE at a time.
    #    The first few all find the default port 8888 free: one gets it, the others
    #    see ssh fail to bind it and take another free port (no start may fail).
    order = [user for _ in range(PER_USER) for user in USERS]
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        results = list(pool.map(lambda user: _start(base, user), order))
    all_up = time.monotonic() - began
    took = [r[2] for r in results]
    print(f"{len(results)} sessions up in {all_up:.1f} s ({AT_ONCE} starts at a time); one "
          f"start took {min(took):.1f}-{max(took):.1f} s, median {statistics.median(took):.1f} s")  # fmt: skip
    sessions: dict[str, list[dict[str, object]]] = {user: [] for user in USERS}
    for user, info, _ in results:
        sessions[user].append(info)
    everyone = [info for user in USERS for info in sessions[user]]
    assert len({str(i["session_id"]) for i in everyone}) == 2 * PER_USER
    assert len({str(i["job_id"]) for i in everyone}) == 2 * PER_USER
    assert len({_token(i) for i in everyone}) == 2 * PER_USER
    ports = [int(i["local_port"]) for i in everyone]  # type: ignore[call-overload]
    assert len(set(ports)) == 2 * PER_USER
    assert 8888 in ports
    for info in everyone:
        assert str(info["url"]).startswith(f"http://127.0.0.1:{info['local_port']}/lab?token=")

    # 2. Each user's list shows exactly their own 10 sessions, all running, tunnels up.
    checked = time.monotonic()
    for user in USERS:
        rows = {str(r["session_id"]): r for r in _list(base, user)}
        assert sorted(rows) == sorted(str(i["session_id"]) for i in sessions[user])
        for info in sessions[user]:
            row = rows[str(info["session_id"])]
            assert row["state"] == "RUNNING", row
            assert row["tunnel"] == "up", row
            assert row["attached"] is True, row
            assert row["cluster"] == "sandbox"
            assert (row["job_id"], row["node"], row["local_port"]) == (
                info["job_id"], info["node"], info["local_port"]
            )  # fmt: skip

    # 3. Every job is RUNNING as its own user, on the node its session tunnels to.
    jobs = {}
    for line in squeue(sandbox):
        job_id, job_user, state, node = line.split()
        jobs[job_id] = (job_user, state, node)
    assert len(jobs) == 2 * PER_USER, jobs
    for user in USERS:
        for info in sessions[user]:
            assert jobs[str(info["job_id"])] == (user, "RUNNING", info["node"])

    # 4. No cross-talk: each port answers its own token only (every pair of sessions).
    for info in everyone:
        port = int(info["local_port"])  # type: ignore[call-overload]
        for other in everyone:
            want = 200 if other is info else 403
            got = http_status(port, "/api/status", _token(other))
            assert got == want, (info["session_id"], other["session_id"], got)

    # 5. Each user's runtime files, records, cluster session dirs and node sockets are
    #    theirs only.
    tried = _assert_private(sandbox, sessions)
    print(f"checks of the 20 sessions ({tried} private paths tried by both users) took "
          f"{time.monotonic() - checked:.1f} s")  # fmt: skip

    # 6. stop --all, both users at once: no job, no session, no process of either is left.
    stopping = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(USERS)) as pool:
        stops = list(pool.map(lambda u: as_user(u, [*base, "stop", "--all"], timeout_s=120), USERS))
    for res in stops:
        assert res.returncode == 0, res.stderr
        assert res.stderr.count("stopped nt-") == PER_USER, res.stderr
    wait_no_jobs(sandbox)
    print(f"stop --all for both users took {time.monotonic() - stopping:.1f} s")

    def nothing_left() -> bool:
        left = {user: user_processes(user) for user in USERS}
        if any(left.values()):
            raise NotReady(f"processes left: {left}")
        return True

    wait_until(nothing_left, timeout_s=10, what="every process of the test users to end")
    for user in USERS:
        assert _list(base, user) == []
        left = {str(d): sorted(p.name for p in d.iterdir()) for d in runtime_dir(user).glob("nt-*")}
        ours = {str(i["session_id"]) for i in sessions[user]}
        assert left == {}, f"left behind (this test's sessions: {sorted(ours)}): {left}"
        assert list(state_dir(user).glob("nt-*.json")) == []
    # Last, so that a slow machine still gets every check above.
    assert all_up <= ALL_UP_BUDGET_S, f"20 sessions took {all_up:.1f} s to come up"
