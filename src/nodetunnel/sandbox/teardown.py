"""Remove everything ``sandbox up`` created, even after a failed ``up``.

The processes to end are exactly those listed in the sandbox's cgroups,
by PID: nothing is ever matched by name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import NodetunnelError, SandboxError
from ..proc import NotReady, ProcessRef, reap, run, wait_until
from . import network
from .prereqs import CGROUP_MOUNTS, cgroup_dir
from .provision import RUN_SSHD
from .topology import ALL_TEST_NET, NETNS_PREFIX, ROUTE_PROTO, USER_MARKER, USERS, Paths


def leftovers(paths: Paths) -> bool:
    """Whether anything of a sandbox is left on this machine (network, cgroups, state)."""
    return bool(our_netns()) or cgroup_dir("systemd").exists() or paths.state_file.exists()


def our_netns() -> list[str]:
    out = run(["ip", "netns", "list"], timeout_s=10).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(NETNS_PREFIX)]


def remove_all(paths: Paths, state: dict[str, Any]) -> list[str]:
    """Remove the sandbox at ``paths``; say what was removed.

    Every step runs even if an earlier one fails; failures are reported together.
    """
    removed: list[str] = []
    problems: list[str] = []

    def step(what: str, action: Callable[[], object]) -> None:
        try:
            if action() is not False:
                removed.append(what)
        except (NodetunnelError, OSError) as exc:
            problems.append(f"{what}: {getattr(exc, 'message', None) or exc}")

    killed = 0

    def kill() -> bool:
        nonlocal killed
        killed = kill_cgroup_processes()
        return killed > 0

    step("processes", kill)
    if killed:
        removed[-1] = f"{killed} processes"
    for hier in CGROUP_MOUNTS:
        top = cgroup_dir(hier)
        if top.exists():
            step(f"cgroup {top}", partial(wait_until, partial(remove_cgroup_tree, top),
                                          timeout_s=10, what=f"cgroup {top} to empty"))  # fmt: skip
    for ns in our_netns():
        step(f"netns {ns}", partial(run, ["ip", "netns", "del", ns], timeout_s=10))
    if run(["ip", "route", "show", "proto", ROUTE_PROTO], timeout_s=10).stdout.strip():
        step(f"route unreachable {ALL_TEST_NET}",
             partial(run, network.unreachable_route("del"), timeout_s=10))  # fmt: skip
    for user in USERS:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            continue
        if pw.pw_gecos == USER_MARKER:
            step(f"user {user}", partial(run, ["userdel", user], timeout_s=20))
    if state.get("created_run_sshd") and RUN_SSHD.is_dir() and not any(RUN_SSHD.iterdir()):
        step(str(RUN_SSHD), RUN_SSHD.rmdir)
    if paths.root.exists():
        step(f"directory {paths.root}", partial(shutil.rmtree, paths.root))
    if problems:
        raise SandboxError(
            "could not remove all of the sandbox: " + "; ".join(problems),
            hint="a test user may still run a process outside the sandbox on this machine; "
            "end it, then run 'nodetunnel sandbox down' again",
        )
    return removed


def cgroup_pids() -> set[int]:
    """The live processes in the sandbox's cgroups."""
    pids: set[int] = set()
    top = cgroup_dir("systemd")
    if not top.exists():
        return pids
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            with contextlib.suppress(FileNotFoundError):
                pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return {p for p in pids if (ref := ProcessRef.of(p)) is not None and ref.alive()}


def kill_cgroup_processes() -> int:
    """End every process in the sandbox's cgroups (TERM, then KILL); return how many there were."""
    freezer = cgroup_dir("freezer")
    if freezer.exists():  # frozen (suspended) jobs cannot die until thawed
        for state_file in freezer.rglob("freezer.state"):
            with contextlib.suppress(OSError):
                state_file.write_text("THAWED")
    seen: set[int] = set()
    for sig, timeout_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        pids = cgroup_pids()
        if not pids:
            break
        seen |= pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            reap(pid)
        with contextlib.suppress(NodetunnelError):
            wait_until(
                lambda: not cgroup_pids(),
                timeout_s=timeout_s,
                what="sandbox processes to exit",
            )
    left = cgroup_pids()
    if left:
        raise SandboxError(
            f"sandbox processes would not exit: PIDs {sorted(left)}",
            hint="they may be stuck in the kernel (state D); run 'sandbox down' again",
        )
    return len(seen)


def remove_cgroup_tree(top: Path) -> bool:
    """rmdir a cgroup tree, deepest first. False while a directory is still busy.

    A cgroup stays busy until its exited processes are reaped, which this
    machine's init may take seconds to do.
    """
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise NotReady(f"{dirpath}: {exc.strerror}") from exc
    return True
