"""Build, inspect and remove the mini-cluster.

Every host is a network namespace plus a *holder* process that owns the host's
UTS (hostname), mount (private ``/tmp``, ``/etc/hosts``, ``/etc/pam.d``,
``/etc/slurm``, cgroup mounts) and cgroup namespaces. The host's daemons are
started with ``nsenter`` into the holder's namespaces.

Everything the sandbox starts lives in the cgroup ``nodetunnel-sandbox`` of
the ``name=systemd`` v1 hierarchy (one child per host, plus ``munge``).
``down`` ends exactly the processes listed there, by PID, so it cleans up
after a failed ``up`` too, without ever matching processes by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..config import sandbox_profile_toml
from ..errors import CommandError, NodetunnelError, PrerequisiteError, SandboxError
from ..proc import NotReady, ProcessRef, reap, run, spawn, wait_until
from . import network, render
from .topology import (
    ALL_TEST_NET,
    CGROUP_NAME,
    NETNS_PREFIX,
    ROUTE_PROTO,
    USER_MARKER,
    USERS,
    Host,
    Paths,
    Topology,
)

Progress = Callable[[str], None]

CGROUP_MOUNTS = {
    "systemd": Path("/sys/fs/cgroup/systemd"),
    "freezer": Path("/sys/fs/cgroup/freezer"),
}
LOCK_FILE = Path("/run/nodetunnel-sandbox.lock")
RUN_SSHD = Path("/run/sshd")

# Debian packages and the programs by which we detect them.
REQUIRED_PROGRAMS = {
    "/usr/sbin/sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
    "/usr/sbin/slurmctld": "slurmctld",
    "/usr/sbin/slurmd": "slurmd",
    "sbatch": "slurm-client",
    "sinfo": "slurm-client",
    "/usr/sbin/munged": "munge",
    "munge": "munge",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "useradd": "passwd",
}
PAM_ADOPT_PATHS = [
    Path(p) / "pam_slurm_adopt.so"
    for p in (
        "/lib/security",
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/aarch64-linux-gnu/security",
        "/usr/lib/aarch64-linux-gnu/security",
        "/usr/lib/security",
    )
]
SETUP_HINT = "run ./scripts/setup (it apt-get installs them), then try again"
SLURMD_ARGV = ["/usr/sbin/slurmd", "-D"]

# Sets up one host inside its fresh namespaces, then idles; argv: NAME HOSTDIR ETC_SLURM.
HOLDER_SCRIPT = r"""set -eu
hostname "$1"
mount -t tmpfs -o mode=0755 nodetunnel-cgroup /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/freezer
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer
mount --bind "$2/tmp" /tmp
mount --bind "$2/etc/hosts" /etc/hosts
mount --bind "$2/etc/pam.d" /etc/pam.d
mount --bind "$3" /etc/slurm
: > "$2/holder.ready"
exec sleep infinity
"""

# Moves itself into the given cgroup.procs files, then execs the rest of argv.
JOIN_CGROUPS = r"""p1=$1; p2=$2; shift 2
echo $$ > "$p1"
echo $$ > "$p2"
exec "$@"
"""


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

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cg(hier: str, *parts: str) -> Path:
    return CGROUP_MOUNTS[hier].joinpath(CGROUP_NAME, *parts)


def check_prerequisites(*, need_root: bool = True) -> None:
    """Raise :class:`PrerequisiteError` with the fix if this machine cannot run the sandbox."""
    if not Path("/proc/self/ns/net").exists():
        raise PrerequisiteError(
            "the sandbox needs Linux network namespaces, which this system does not have",
            hint="run it on a Linux machine (Debian or Ubuntu)",
        )
    if need_root and os.geteuid() != 0:
        raise PrerequisiteError(
            "the sandbox must run as root (it creates network namespaces, users and daemons)",
            hint="run it with sudo, e.g. sudo nodetunnel sandbox up",
        )
    missing: dict[str, None] = {}
    for prog, pkg in REQUIRED_PROGRAMS.items():
        if not (Path(prog).exists() if prog.startswith("/") else shutil.which(prog)):
            missing[pkg] = None
    if not any(p.exists() for p in PAM_ADOPT_PATHS):
        missing["libpam-slurm-adopt"] = None
    if not Path("/etc/slurm").is_dir() and "slurm-client" not in missing:
        missing["slurm-client"] = None
    if missing:
        pkgs = " ".join(missing)
        raise PrerequisiteError(
            f"the sandbox needs Debian packages that are not installed: {pkgs}",
            hint=f"apt-get install -y {pkgs} (or {SETUP_HINT})",
        )
    mounts = Path("/proc/self/mounts").read_text()
    for hier, path in CGROUP_MOUNTS.items():
        if f" {path} cgroup " not in mounts:
            raise PrerequisiteError(
                f"the sandbox needs the cgroup v1 '{hier}' hierarchy mounted at {path}",
                hint="use a machine or VM with cgroup v1 (or hybrid) hierarchies, as Debian 12 VMs "
                "without systemd have",
            )


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
            if current.daemons or self._leftovers():
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
        state["users"] = self._make_users()
        self._write_state(state)
        host_keys = self._write_host_files()
        self._write_cluster_files(host_keys)
        self._make_munge_key()

        self._say("creating network namespaces (laptop -> login -> gateway -> nodes)")
        for argv in network.setup_commands(topo):
            run(argv, timeout_s=10)
        for host in ["munge", *[h.name for h in topo.hosts]]:
            for hier in CGROUP_MOUNTS:
                _cg(hier, host).mkdir(parents=True, exist_ok=True)

        self._say("starting munged")
        self._start(
            state,
            "munge",
            "munged",
            as_user_argv(
                "munge",
                [
                    "/usr/sbin/munged",
                    "-F",
                    f"--key-file={p.munge_dir / 'munge.key'}",
                    f"--socket={p.munge_socket}",
                    f"--pid-file={p.munge_dir / 'munged.pid'}",
                    f"--log-file={p.log_dir / 'munged.log'}",
                    f"--seed-file={p.munge_dir / 'munged.seed'}",
                ],
            ),
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
            self._start(
                state,
                h.name,
                "sshd",
                ["/usr/sbin/sshd", "-D", "-e", "-f", str(p.host_dir(h.name) / "sshd_config")],
            )
        self._start(state, "gateway", "slurmctld", ["/usr/sbin/slurmctld", "-D"])
        self._write_state(state)
        self._say("waiting for slurmctld")
        wait_until(lambda: self._ping_slurmctld(state), timeout_s=20, what="slurmctld to answer")
        for n in topo.nodes:
            self._start(state, n.name, "slurmd", SLURMD_ARGV)
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

    def _make_users(self) -> list[str]:
        made = []
        for user in USERS:
            home = self.paths.user_home(user)
            try:
                existing = pwd.getpwnam(user)
            except KeyError:
                existing = None
            if existing is not None and existing.pw_gecos != USER_MARKER:
                raise SandboxError(
                    f"user {user!r} already exists on this machine and is not a sandbox user",
                    hint=f"remove or rename the user {user!r}, then try again",
                )
            if existing is None:
                self._say(f"creating test user {user}")
                run(
                    [
                        "useradd",
                        "--no-create-home",
                        "--home-dir",
                        str(home),
                        "--shell",
                        "/bin/bash",
                        "--comment",
                        USER_MARKER,
                        "--user-group",
                        user,
                    ],
                    timeout_s=20,
                )
            pw = pwd.getpwnam(user)
            ssh_dir = home / ".ssh"
            ssh_dir.mkdir(parents=True, exist_ok=True)
            key = ssh_dir / "id_ed25519"
            if not key.exists():
                _keygen(key, f"{user}@nodetunnel-sandbox")
            (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
            (ssh_dir / "config").write_text(render.client_ssh_config(self.topo, self.paths))
            for path in [home, *home.rglob("*")]:
                os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
            os.chmod(home, 0o700)
            os.chmod(ssh_dir, 0o700)
            for f in ssh_dir.iterdir():
                os.chmod(f, 0o644 if f.suffix == ".pub" else 0o600)
            made.append(user)
        return made

    def _write_host_files(self) -> dict[str, str]:
        keys = {}
        for h in self.topo.hosts:
            hd = self.paths.host_dir(h.name)
            for sub in ("etc", "spool"):
                (hd / sub).mkdir(parents=True, exist_ok=True)
            (hd / "tmp").mkdir(exist_ok=True)
            os.chmod(hd / "tmp", 0o1777)  # noqa: S103 - the host's /tmp
            key = hd / "ssh_host_ed25519_key"
            if not key.exists():
                _keygen(key, f"{h.name}-host-key")
            keys[h.name] = key.with_suffix(".pub").read_text().strip()
            (hd / "sshd_config").write_text(render.sshd_config(h, self.paths))
            (hd / "etc" / "hosts").write_text(render.hosts_file(self.topo, h))
            pam = hd / "etc" / "pam.d"
            if pam.exists():
                shutil.rmtree(pam)
            shutil.copytree("/etc/pam.d", pam, symlinks=True)
            session = pam / "common-session"
            if session.exists():
                session.write_text(render.pam_common_session(session.read_text()))
            sshd = pam / "sshd"
            sshd.write_text(render.pam_sshd(sshd.read_text(), adopt=h.role == "node"))
        return keys

    def _write_cluster_files(self, host_keys: dict[str, str]) -> None:
        p = self.paths
        (p.etc_slurm / "slurm.conf").write_text(render.slurm_conf(self.topo, p))
        (p.etc_slurm / "gres.conf").write_text(render.gres_conf(self.topo))
        (p.etc_slurm / "cgroup.conf").write_text(render.cgroup_conf())
        p.known_hosts.write_text(render.known_hosts(self.topo, host_keys))
        p.ssh_config.write_text(render.client_ssh_config(self.topo, p))
        # Registers the 'sandbox' cluster profile (nodetunnel ... --cluster sandbox).
        (p.root / "profile.toml").write_text(sandbox_profile_toml(p))

    def _make_munge_key(self) -> None:
        d = self.paths.munge_dir
        d.mkdir(mode=0o755, exist_ok=True)
        munge = pwd.getpwnam("munge")
        key = d / "munge.key"
        key.unlink(missing_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)  # never readable by others
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
        for path in (d, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)

    def _start(
        self, state: dict[str, Any], host: str, name: str, argv: list[str], *, wrap: bool = True
    ) -> None:
        """Start a daemon in ``host``'s cgroup (and namespaces, if ``wrap``); record its PID."""
        inner = self.host_argv(host, argv, state) if wrap else argv
        full = [
            "/bin/sh",
            "-c",
            JOIN_CGROUPS,
            "nt-join",
            str(_cg("systemd", host, "cgroup.procs")),
            str(_cg("freezer", host, "cgroup.procs")),
            *inner,
        ]
        ref = spawn(full, log_path=self.paths.log_dir / f"{name}-{host}.log")
        state["processes"][f"{host}/{name}"] = {"pid": ref.pid, "start": ref.start_ticks}

    def _start_holder(self, state: dict[str, Any], h: Host) -> None:
        hd = self.paths.host_dir(h.name)
        (hd / "holder.ready").unlink(missing_ok=True)
        argv = [
            "nsenter",
            f"--net=/run/netns/{h.netns}",
            "--",
            "unshare",
            "--uts",
            "--mount",
            "--cgroup",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            HOLDER_SCRIPT,
            "nt-holder",
            h.name,
            str(hd),
            str(self.paths.etc_slurm),
        ]
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
            self._start(state, node, "slurmd", SLURMD_ARGV)
            self._write_state(state)
            return True

    # ----------------------------------------------------------------- down
    def down(self) -> list[str]:
        """Remove everything ``up`` created, even after a failed ``up``; say what was removed."""
        check_prerequisites()
        with self._locked():
            return self._down_locked()

    def _leftovers(self) -> bool:
        return bool(self._our_netns()) or _cg("systemd").exists() or self.paths.state_file.exists()

    def _our_netns(self) -> list[str]:
        out = run(["ip", "netns", "list"], timeout_s=10).stdout
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return [n for n in names if n.startswith(NETNS_PREFIX)]

    def _down_locked(self) -> list[str]:
        """Every step runs even if an earlier one fails; failures are reported together."""
        removed: list[str] = []
        problems: list[str] = []
        try:
            state = self._read_state() or {}
        except SandboxError:
            state = {}

        def step(what: str, action: Callable[[], object]) -> None:
            try:
                if action() is not False:
                    removed.append(what)
            except (NodetunnelError, OSError) as exc:
                problems.append(f"{what}: {getattr(exc, 'message', None) or exc}")

        killed = 0

        def kill() -> bool:
            nonlocal killed
            killed = self._kill_cgroup_processes()
            return killed > 0

        step("processes", kill)
        if killed:
            removed[-1] = f"{killed} processes"
        for hier in CGROUP_MOUNTS:
            top = _cg(hier)
            if top.exists():
                step(f"cgroup {top}", partial(wait_until, partial(_remove_cgroup_tree, top),
                                              timeout_s=10, what=f"cgroup {top} to empty"))  # fmt: skip
        for ns in self._our_netns():
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
        if self.paths.root.exists():
            step(f"directory {self.paths.root}", partial(shutil.rmtree, self.paths.root))
        if problems:
            raise SandboxError(
                "could not remove all of the sandbox: " + "; ".join(problems),
                hint="a test user may still run a process outside the sandbox on this machine; "
                "end it, then run 'nodetunnel sandbox down' again",
            )
        return removed

    def _cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        top = _cg("systemd")
        if not top.exists():
            return pids
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(FileNotFoundError):
                    pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
        return {p for p in pids if (ref := ProcessRef.of(p)) is not None and ref.alive()}

    def _kill_cgroup_processes(self) -> int:
        freezer = _cg("freezer")
        if freezer.exists():  # frozen (suspended) jobs cannot die until thawed
            for state_file in freezer.rglob("freezer.state"):
                with contextlib.suppress(OSError):
                    state_file.write_text("THAWED")
        seen: set[int] = set()
        for sig, timeout_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            pids = self._cgroup_pids()
            if not pids:
                break
            seen |= pids
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                reap(pid)
            with contextlib.suppress(NodetunnelError):
                wait_until(
                    lambda: not self._cgroup_pids(),
                    timeout_s=timeout_s,
                    what="sandbox processes to exit",
                )
        left = self._cgroup_pids()
        if left:
            raise SandboxError(
                f"sandbox processes would not exit: PIDs {sorted(left)}",
                hint="they may be stuck in the kernel (state D); run 'sandbox down' again",
            )
        return len(seen)


def _remove_cgroup_tree(top: Path) -> bool:
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


def _keygen(key: Path, comment: str) -> None:
    """A new ed25519 key pair without passphrase at ``key`` / ``key.pub``."""
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], timeout_s=20
    )
