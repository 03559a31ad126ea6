"""The mini-cluster's shape: hosts, links, addresses and paths. Pure data, no I/O.

::

    laptop (root netns)          198.18.1.1 ─┐
                                              │ veth  nt-login
    login      (netns ntsb-login)  198.18.1.2 ─┘
                                   198.18.2.1 ─┐
                                              │ veth
    gateway    (netns ntsb-gateway) 198.18.2.2 ─┘   slurmctld
                                   198.18.3.1  ── bridge br0 ──┬── node1 198.18.3.11  slurmd
                                                               └── node2 198.18.3.12  slurmd

The laptop routes only to ``login``; ``198.18.0.0/15`` is otherwise
unreachable from the root namespace, so the gateway and the nodes can only be
reached by jumping through the hosts before them, as on a real site.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config.files import DEFAULT_SANDBOX_DIR

DEFAULT_DIR = DEFAULT_SANDBOX_DIR  # the config knows it too (for the sandbox profile)
NETNS_PREFIX = "ntsb-"
CGROUP_NAME = "nodetunnel-sandbox"
ROUTE_PROTO = "198"  # marks the root-namespace route as ours
ALL_TEST_NET = "198.18.0.0/15"
LAPTOP_IFACE = "nt-login"
USERS = ("ntalice", "ntbob")
USER_MARKER = "nodetunnel sandbox user"
MAX_NODES = 50


@dataclasses.dataclass(frozen=True)
class Host:
    name: str  # hostname inside the cluster: login, gateway, node1, ...
    role: str  # "login" | "gateway" | "node"
    addrs: tuple[str, ...]  # addresses this host owns (without prefix length)

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.name


@dataclasses.dataclass(frozen=True)
class Topology:
    """Hosts and addresses for a cluster with ``node_count`` compute nodes."""

    node_count: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.node_count <= MAX_NODES:
            raise ValueError(f"node_count must be between 1 and {MAX_NODES}")

    laptop_addr = "198.18.1.1"
    login_addr = "198.18.1.2"
    login_inner_addr = "198.18.2.1"
    gateway_outer_addr = "198.18.2.2"
    gateway_addr = "198.18.3.1"
    prefix_len = 24

    def node_addr(self, index: int) -> str:
        return f"198.18.3.{10 + index}"

    @property
    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.node_count + 1)]

    @property
    def nodelist(self) -> str:
        """SLURM hostlist expression for all nodes (node[1-2])."""
        return "node1" if self.node_count == 1 else f"node[1-{self.node_count}]"

    @property
    def login(self) -> Host:
        return Host("login", "login", (self.login_addr, self.login_inner_addr))

    @property
    def gateway(self) -> Host:
        return Host("gateway", "gateway", (self.gateway_outer_addr, self.gateway_addr))

    @property
    def nodes(self) -> list[Host]:
        return [
            Host(name, "node", (self.node_addr(i),)) for i, name in enumerate(self.node_names, 1)
        ]

    @property
    def hosts(self) -> list[Host]:
        return [self.login, self.gateway, *self.nodes]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def address_of(self, name: str, seen_from: str) -> str:
        """The address ``seen_from`` uses to reach host ``name``."""
        if name == "login":
            return self.login_addr if seen_from == "laptop" else self.login_inner_addr
        if name == "gateway":
            return self.gateway_outer_addr if seen_from == "login" else self.gateway_addr
        return self.node_addr(self.node_names.index(name) + 1)


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where everything of one sandbox lives on disk."""

    root: Path = DEFAULT_DIR

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root.with_name(self.root.name + ".lock")

    @property
    def home(self) -> Path:
        """The cluster's shared home (its "NFS"); also the test users' laptop home."""
        return self.root / "home"

    @property
    def etc_slurm(self) -> Path:
        return self.root / "etc" / "slurm"

    @property
    def slurm_conf(self) -> Path:
        return self.etc_slurm / "slurm.conf"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket.2"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def slurmctld_state(self) -> Path:
        return self.root / "slurmctld"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def user_home(self, user: str) -> Path:
        return self.home / user
