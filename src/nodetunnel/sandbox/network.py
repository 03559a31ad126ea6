"""The sandbox network as ``ip`` argv lists (pure), built by :mod:`.cluster`, removed by :mod:`.teardown`."""

from __future__ import annotations

from .topology import ALL_TEST_NET, LAPTOP_IFACE, ROUTE_PROTO, Topology


def node_iface(node: str) -> str:
    """The gateway-side end of a node's link (inside the gateway's namespace)."""
    return f"v-{node}"


def setup_commands(topo: Topology) -> list[list[str]]:
    """Every ``ip`` command that builds the network, in order."""
    p = f"/{topo.prefix_len}"
    login, gw = topo.login.netns, topo.gateway.netns
    cmds: list[list[str]] = [["ip", "netns", "add", h.netns] for h in topo.hosts]
    cmds += [["ip", "-n", h.netns, "link", "set", "lo", "up"] for h in topo.hosts]
    cmds += [
        # laptop <-> login
        ["ip", "link", "add", LAPTOP_IFACE, "type", "veth", "peer", "name", "eth0", "netns", login],
        ["ip", "addr", "add", topo.laptop_addr + p, "dev", LAPTOP_IFACE],
        ["ip", "link", "set", LAPTOP_IFACE, "up"],
        ["ip", "-n", login, "addr", "add", topo.login_addr + p, "dev", "eth0"],
        ["ip", "-n", login, "link", "set", "eth0", "up"],
        # login <-> gateway
        [
            "ip",
            "-n",
            login,
            "link",
            "add",
            "eth1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            gw,
        ],
        ["ip", "-n", login, "addr", "add", topo.login_inner_addr + p, "dev", "eth1"],
        ["ip", "-n", login, "link", "set", "eth1", "up"],
        ["ip", "-n", gw, "addr", "add", topo.gateway_outer_addr + p, "dev", "eth0"],
        ["ip", "-n", gw, "link", "set", "eth0", "up"],
        # gateway <-> nodes: a bridge in the gateway, one veth per node
        ["ip", "-n", gw, "link", "add", "br0", "type", "bridge"],
        ["ip", "-n", gw, "addr", "add", topo.gateway_addr + p, "dev", "br0"],
        ["ip", "-n", gw, "link", "set", "br0", "up"],
    ]
    for i, node in enumerate(topo.nodes, 1):
        v = node_iface(node.name)
        cmds += [
            [
                "ip",
                "-n",
                gw,
                "link",
                "add",
                v,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                node.netns,
            ],
            ["ip", "-n", gw, "link", "set", v, "master", "br0"],
            ["ip", "-n", gw, "link", "set", v, "up"],
            ["ip", "-n", node.netns, "addr", "add", topo.node_addr(i) + p, "dev", "eth0"],
            ["ip", "-n", node.netns, "link", "set", "eth0", "up"],
        ]
    # Nothing in the test range may leave the machine: the laptop reaches login only.
    cmds.append(unreachable_route("add"))
    return cmds


def unreachable_route(verb: str) -> list[str]:
    return ["ip", "route", verb, "unreachable", ALL_TEST_NET, "proto", ROUTE_PROTO]
