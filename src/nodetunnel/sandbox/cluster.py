"""Build, inspect and remove the mini-cluster.

Every host is a network namespace plus a *holder* process that owns the host's
UTS (hostname), mount (private ``/tmp``, ``/etc/hosts``, ``/etc/pam.d``,
``/etc/slurm``, cgroup mounts) and cgroup namespaces. The host's daemons are
started with ``nsenter`` into the holder's namespaces.

Everything the sandbox starts lives in the cgroup ``nodetunnel-sandbox`` of
the ``name=systemd`` v1 hierarchy (one child per host, plus ``munge``).
``down`` ends exactly the processes listed there, by PID, so it cleans up
after a failed ``up`` too, without ever matching processes by name.

This module starts the hosts and daemons (their command lines are in
:mod:`.daemons`), waits for them and keeps the state file; :mod:`.prereqs`
checks the machine, :mod:`.provision` makes the users and files, and
:mod:`.teardown` removes it all again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import CommandError, NodetunnelError, PrerequisiteError, SandboxError
from ..proc import NotReady, ProcessRef, run, spawn, wait_until
from . import daemons, homecache, mfa, network, provision, teardown
from .prereqs import (
    CGROUP_MOUNTS,
    PAM_ADOPT_PATHS,
    REQUIRED_PROGRAMS,
    cgroup_dir,
    check_prerequisites,
)
from .provision import RUN_SSHD
from .topology import Host, Paths, Topology

# What other code and the tests import from here; some of it lives in .prereqs.
__all__ = [
    "CGROUP_MOUNTS",
    "LOCK_FILE",
    "PAM_ADOPT_PATHS",
    "REQUIRED_PROGRAMS",
    "DaemonStatus",
    "Sandbox",
    "Status",
    "as_user_argv",
    "check_prerequisites",
]

Progress = Callable[[str], None]

LOCK_FILE = Path("/run/nodetunnel-sandbox.lock")


@dataclasses.dataclass
class DaemonStatus:
    host: str
    name: str
    pid: int
    alive: bool


@dataclasses.dataclass
class Status:
    """What ``sandbox status`` reports."""

    up: bool
    root: str
    node_count: int
    hosts: dict[str, list[str]]
    daemons: list[DaemonStatus]
    nodes: dict[str, str]  # node -> SLURM state (idle, alloc, ...)
    ssh_config: str
    users: list[str]
    problems: list[str]
    home: str = "direct on every host"  # or cached through bindfs, see .homecache
    login_auth: str = "key only"  # or key + TOTP, see .mfa

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def as_user_argv(user: str, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` with that user's login environment (HOME, PATH), as root may."""
    return [
        "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--reset-env", "--", *argv,
    ]  # fmt: skip


class Sandbox:
    """One mini-cluster on this machine, kept under ``paths.root``."""

    def __init__(
        self,
        paths: Paths | None = None,
        *,
        node_count: int = 2,
        progress: Progress | None = None,
    ) -> None:
        self.paths = paths or Paths()
        self.topo = Topology(node_count)
        self._progress = progress or (lambda _msg: None)

    # ---------------------------------------------------------------- helpers
    def _say(self, msg: str) -> None:
        self._progress(msg)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SandboxError(
                    "another 'nodetunnel sandbox' command is running on this machine",
                    hint="wait for it to finish, then try again",
                ) from None
            yield
        finally:
            os.close(fd)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.paths.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SandboxError(
                f"sandbox state file {self.paths.state_file} is unreadable: {exc}",
                hint="run 'nodetunnel sandbox down' to remove the broken sandbox",
            ) from exc
        return data

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.paths.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.paths.state_file)

    def _holder(self, state: dict[str, Any], host: str) -> int:
        return int(state["processes"][f"{host}/holder"]["pid"])

    def host_argv(
        self, host: str, argv: list[str], state: dict[str, Any] | None = None
    ) -> list[str]:
        """``argv`` wrapped to run inside ``host`` (its network, hostname and mounts)."""
        state = state if state is not None else self._read_state()
        if not state:
            raise SandboxError("the sandbox is not up", hint="run 'nodetunnel sandbox up' first")
        pid = self._holder(state, host)
        return ["nsenter", f"--target={pid}", "--net", "--uts", "--mount", "--cgroup", "--", *argv]

    def run_in(
        self,
        host: str,
        argv: list[str],
        *,
        timeout_s: float = 30,
        check: bool = True,
        user: str | None = None,
        input: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> str:
        """Run ``argv`` inside ``host`` (as ``user`` if given) and return stdout."""
        if user is not None:
            argv = as_user_argv(user, argv)
        return run(
            self.host_argv(host, argv, state), timeout_s=timeout_s, check=check, input=input
        ).stdout

    # --------------------------------------------------------------- status
    def status(self) -> Status:
        state = self._read_state()
        problems: list[str] = []
        daemons: list[DaemonStatus] = []
        nodes: dict[str, str] = {}
        if state is None:
            return Status(False, str(self.paths.root), self.topo.node_count, {}, [], {}, "", [], [])
        if os.geteuid() != 0:
            raise PrerequisiteError(
                "the sandbox's status can only be read as root (it looks inside its namespaces)",
                hint="run it with sudo, e.g. sudo nodetunnel sandbox status",
            )
        topo = Topology(int(state["node_count"]))
        for key, ref in state.get("processes", {}).items():
            host, name = key.split("/", 1)
            alive = ProcessRef(int(ref["pid"]), int(ref["start"])).alive()
            daemons.append(DaemonStatus(host, name, int(ref["pid"]), alive))
            if not alive:
                problems.append(f"{name} on {host} (PID {ref['pid']}) is not running")
        if state.get("complete") and not problems:
            try:
                nodes = self._node_states(state)
            except NodetunnelError as exc:
                problems.append(f"SLURM does not answer: {exc.message}")
        elif not state.get("complete"):
            problems.append("'sandbox up' did not finish")
        return Status(
            up=not problems,
            root=str(self.paths.root),
            node_count=topo.node_count,
            hosts={h.name: list(h.addrs) for h in topo.hosts},
            daemons=daemons,
            nodes=nodes,
            ssh_config=str(self.paths.ssh_config),
            users=list(state.get("users", [])),
            problems=problems,
            home=homecache.describe(state),
            login_auth=mfa.describe(state),
        )

    def _node_states(self, state: dict[str, Any]) -> dict[str, str]:
        out = self.run_in(
            "gateway", ["sinfo", "-h", "-N", "-o", "%N %t"], state=state, timeout_s=15
        )
        nodes: dict[str, str] = {}
        for line in out.split("\n"):
            name, _, st = line.strip().partition(" ")
            if name:
                nodes[name] = st.strip()
        return nodes

    # ------------------------------------------------------------------- up
    def up(self) -> Status:
        """Build the cluster and wait until it is really ready. Idempotent."""
        check_prerequisites()
        with self._locked():
            current = self.status()
            if current.up and current.node_count == self.topo.node_count:
                self._say("sandbox already up")
                return current
            if current.daemons or teardown.leftovers(self.paths):
                self._say("removing a previous, incomplete sandbox")
                self._down_locked()
            started = time.monotonic()
            try:
                try:
                    self._build()
                except OSError as exc:  # file-system trouble while writing the cluster's files
                    raise SandboxError(
                        f"could not set up {exc.filename or self.paths.root}: {exc.strerror}",
                        hint=f"check free space and permissions under {self.paths.root}",
                    ) from exc
            except BaseException as exc:
                # Leave nothing half-built behind.
                self._say("start-up failed; removing what was built")
                try:
                    self._down_locked()
                except NodetunnelError as cleanup:
                    if isinstance(exc, NodetunnelError):
                        exc.hint = (f"{exc.hint}; " if exc.hint else "") + (
                            f"cleanup failed too ({cleanup.message}): run 'nodetunnel sandbox down'"
                        )
                raise
            self._say(f"sandbox ready in {time.monotonic() - started:.1f} s")
            return self.status()

    def _build(self) -> None:
        p, topo = self.paths, self.topo
        state: dict[str, Any] = {
            "node_count": topo.node_count,
            "created": time.time(),
            "processes": {},
            "users": [],
            "complete": False,
        }
        self._say(f"preparing {p.root}")
        if not RUN_SSHD.is_dir():  # sshd's privilege separation directory
            RUN_SSHD.mkdir(mode=0o755)
            state["created_run_sshd"] = True
        p.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(p.root, 0o755)  # noqa: S103 - the users' homes live below it
        self._write_state(state)
        for d in (p.log_dir, p.root / "run", p.etc_slurm, p.slurmctld_state, p.home):
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
        state["users"] = provision.make_users(p, topo, self._say)
        self._write_state(state)
        host_keys = provision.write_host_files(p, topo)
        provision.write_cluster_files(p, topo, host_keys)
        provision.make_munge_key(p)

        self._say("creating network namespaces (laptop -> login -> gateway -> nodes)")
        for argv in network.setup_commands(topo):
            run(argv, timeout_s=10)
        for host in ["munge", *[h.name for h in topo.hosts]]:
            for hier in CGROUP_MOUNTS:
                cgroup_dir(hier, host).mkdir(parents=True, exist_ok=True)

        self._say("starting munged")
        self._start(
            state,
            "munge",
            "munged",
            as_user_argv("munge", daemons.munged_argv(p)),
            wrap=False,
        )
        wait_until(
            lambda: (
                run(["munge", "-n", "-S", str(p.munge_socket)], timeout_s=5, check=False).returncode
                == 0
            ),
            timeout_s=10,
            what="munged to answer",
        )

        self._say("starting hosts: " + ", ".join(h.name for h in topo.hosts))
        for h in topo.hosts:
            self._start_holder(state, h)
        for h in topo.hosts:
            wait_until(
                partial(self._holder_ready, state, h),
                timeout_s=10,
                what=f"host {h.name} to be set up",
            )
        for h in topo.hosts:
            self._start(state, h.name, "sshd", daemons.sshd_argv(h, p))
        self._start(state, "gateway", "slurmctld", daemons.SLURMCTLD_ARGV)
        self._write_state(state)
        self._say("waiting for slurmctld")
        wait_until(lambda: self._ping_slurmctld(state), timeout_s=20, what="slurmctld to answer")
        for n in topo.nodes:
            self._start(state, n.name, "slurmd", daemons.SLURMD_ARGV)
        self._write_state(state)

        self._say("waiting for sshd on every host")
        for h in topo.hosts:
            wait_until(
                partial(self._sshd_answers, state, h, host_keys[h.name]),
                timeout_s=15,
                what=f"sshd on {h.name} to answer",
                hint=f"see {p.log_dir}/sshd-{h.name}.log",
            )
        self._say("waiting for the nodes to be idle and the scheduler's first pass")
        wait_until(
            lambda: self._nodes_idle(state),
            timeout_s=30,
            what="all nodes idle in sinfo",
            hint=f"see {p.log_dir}/slurmd-node1.log and slurmctld.log",
        )
        wait_until(
            lambda: self._scheduler_ran(state),
            timeout_s=30,
            what="slurmctld's first scheduling pass",
        )
        state["complete"] = True
        self._write_state(state)

    def _start(
        self, state: dict[str, Any], host: str, name: str, argv: list[str], *, wrap: bool = True
    ) -> None:
        """Start a daemon in ``host``'s cgroup (and namespaces, if ``wrap``); record its PID."""
        inner = self.host_argv(host, argv, state) if wrap else argv
        ref = spawn(
            daemons.in_cgroups_argv(host, inner), log_path=self.paths.log_dir / f"{name}-{host}.log"
        )
        state["processes"][f"{host}/{name}"] = {"pid": ref.pid, "start": ref.start_ticks}

    def _start_holder(self, state: dict[str, Any], h: Host) -> None:
        hd = self.paths.host_dir(h.name)
        (hd / "holder.ready").unlink(missing_ok=True)
        argv = daemons.holder_argv(h, self.paths)
        self._start(state, h.name, "holder", argv, wrap=False)
        self._write_state(state)

    def _holder_ready(self, state: dict[str, Any], h: Host) -> bool:
        """True once the host's holder has set it up; raises if the holder died."""
        self._check_alive(state, f"{h.name}/holder")
        return (self.paths.host_dir(h.name) / "holder.ready").exists()

    def _check_alive(self, state: dict[str, Any], key: str) -> None:
        ref = state["processes"][key]
        if not ProcessRef(int(ref["pid"]), int(ref["start"])).alive():
            host, name = key.split("/", 1)
            log = self.paths.log_dir / f"{name}-{host}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
            raise SandboxError(
                f"{name} on {host} exited during start-up"
                + (": " + " | ".join(tail) if tail else ""),
                hint=f"see {log}",
            )

    def _ping_slurmctld(self, state: dict[str, Any]) -> bool:
        self._check_alive(state, "gateway/slurmctld")
        out = self.run_in("gateway", ["scontrol", "ping"], state=state, timeout_s=10, check=False)
        return "is UP" in out

    def _sshd_answers(self, state: dict[str, Any], h: Host, host_key: str) -> bool:
        self._check_alive(state, f"{h.name}/sshd")
        prev = {"login": None, "gateway": "login"}.get(h.role, "gateway")
        addr = self.topo.address_of(h.name, prev or "laptop")
        argv = ["ssh-keyscan", "-T", "2", "-t", "ed25519", addr]
        cmd = argv if prev is None else self.host_argv(prev, argv, state)
        out = run(cmd, timeout_s=10, check=False).stdout
        return host_key.split()[1] in out

    def _nodes_idle(self, state: dict[str, Any]) -> bool:
        for n in self.topo.nodes:
            self._check_alive(state, f"{n.name}/slurmd")
        try:
            nodes = self._node_states(state)
        except CommandError as exc:
            raise NotReady(exc.message) from exc
        return len(nodes) == self.topo.node_count and all(s == "idle" for s in nodes.values())

    def _scheduler_ran(self, state: dict[str, Any]) -> bool:
        out = self.run_in("gateway", ["sdiag"], state=state, timeout_s=10, check=False)
        m = re.search(r"Main schedule statistics.*?Total cycles:\s*(\d+)", out, re.DOTALL)
        return bool(m and int(m.group(1)) > 0)

    # ----------------------------------------------------------- home cache
    def cache_home(
        self,
        cache_s: float = homecache.DEFAULT_CACHE_S,
        hosts: tuple[str, ...] = homecache.DEFAULT_HOSTS,
    ) -> None:
        """Let ``hosts`` see the shared home through an NFS-like cache (see .homecache)."""
        with self._locked():
            state = self._up_state()
            try:
                homecache.cache_home(self, state, cache_s, hosts)
            finally:
                self._write_state(state)

    def uncache_home(self) -> list[str]:
        """Every host sees the shared home directly again; return the hosts that did not."""
        with self._locked():
            state = self._up_state()
            try:
                return homecache.uncache_home(self, state)
            finally:
                self._write_state(state)

    # ------------------------------------------------------------------ MFA
    def enable_mfa(self) -> dict[str, Path]:
        """The login host asks for a key and a TOTP code (see .mfa); each user's secret file."""
        with self._locked():
            state = self._up_state()
            try:
                return mfa.enable_mfa(self, state)
            finally:
                self._write_state(state)

    def disable_mfa(self) -> bool:
        """A key alone is enough at the login host again; return whether MFA was on."""
        with self._locked():
            state = self._up_state()
            try:
                return mfa.disable_mfa(self, state)
            finally:
                self._write_state(state)

    def _up_state(self) -> dict[str, Any]:
        state = self._read_state()
        if not state or not state.get("complete"):
            raise SandboxError("the sandbox is not up", hint="run 'nodetunnel sandbox up' first")
        return state

    def start_daemon(self, state: dict[str, Any], host: str, name: str, argv: list[str]) -> None:
        """Start ``argv`` inside ``host`` as its daemon ``name`` (recorded in ``state``)."""
        self._start(state, host, name, argv)

    def check_alive(self, state: dict[str, Any], key: str) -> None:
        """Raise SandboxError (with its log's tail) if daemon ``key`` (HOST/NAME) died."""
        self._check_alive(state, key)

    # --------------------------------------------------------------- faults
    def start_slurmd(self, node: str) -> bool:
        """Start slurmd on ``node`` again if it is not running (after a fault test killed it).

        It is recorded like the one ``up`` started, so ``status`` and ``down`` know it.
        Returns whether it had to be started. slurmctld takes the node back once it
        registers (ReturnToService=2) and has it end what is left of jobs that ended
        while it was gone.
        """
        with self._locked():
            state = self._read_state()
            key = f"{node}/slurmd"
            if not state or key not in state.get("processes", {}):
                raise SandboxError(
                    f"there is no slurmd for {node!r} in this sandbox",
                    hint="see 'nodetunnel sandbox status' for its nodes",
                )
            ref = state["processes"][key]
            if ProcessRef(int(ref["pid"]), int(ref["start"])).alive():
                return False
            self._start(state, node, "slurmd", daemons.SLURMD_ARGV)
            self._write_state(state)
            return True

    # ----------------------------------------------------------------- down
    def down(self) -> list[str]:
        """Remove everything ``up`` created, even after a failed ``up``; say what was removed."""
        check_prerequisites()
        with self._locked():
            return self._down_locked()

    def _down_locked(self) -> list[str]:
        try:
            state = self._read_state() or {}
        except SandboxError:
            state = {}
        return teardown.remove_all(self.paths, state)
