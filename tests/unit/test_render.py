"""The sandbox's rendered files and network commands: golden files plus semantic checks.

Golden files live in tests/golden/; regenerate them with NODETUNNEL_UPDATE_GOLDEN=1
(see tests/unit/conftest.py) and review the diff.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from nodetunnel.errors import SandboxError
from nodetunnel.sandbox import mfa, network, render
from nodetunnel.sandbox.topology import (
    ALL_TEST_NET,
    LAPTOP_IFACE,
    MAX_NODES,
    NETNS_PREFIX,
    Host,
    Paths,
    Topology,
)

Golden = Callable[[str, str], None]  # the `golden` fixture in conftest.py

PATHS = Paths(Path("/srv/sb"))
TOPO = Topology(2)
TOPO1 = Topology(1)
TEST_NET = ipaddress.ip_network(ALL_TEST_NET)
PAM_SSHD = "pam.d-sshd.debian12.input"
PAM_SESSION = "pam.d-common-session.debian12.input"


def fake_host_keys(topo: Topology) -> dict[str, str]:
    # Shaped like a .pub file: type, base64 blob, comment (the comment must not be copied).
    return {
        h.name: f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE{h.name.upper()}KEY {h.name}-host-key"
        for h in topo.hosts
    }


def hosts_entries(text: str) -> dict[str, str]:
    """name -> address from an /etc/hosts text (localhost lines left out)."""
    entries = {}
    for line in text.splitlines():
        addr, *names = line.split()
        for name in names:
            if "localhost" not in name and "ip6-" not in name:
                entries[name] = addr
    return entries


# ------------------------------------------------------------------ golden files
@pytest.mark.parametrize(("topo", "suffix"), [(TOPO, "2nodes"), (TOPO1, "1node")])
def test_slurm_conf_golden(golden: Golden, topo: Topology, suffix: str) -> None:
    golden(f"slurm.conf.{suffix}", render.slurm_conf(topo, PATHS))


@pytest.mark.parametrize(("topo", "suffix"), [(TOPO, "2nodes"), (TOPO1, "1node")])
def test_gres_conf_golden(golden: Golden, topo: Topology, suffix: str) -> None:
    golden(f"gres.conf.{suffix}", render.gres_conf(topo))


def test_cgroup_conf_golden(golden: Golden) -> None:
    golden("cgroup.conf", render.cgroup_conf())


@pytest.mark.parametrize("host", TOPO.hosts, ids=lambda h: h.name)
def test_sshd_config_golden(golden: Golden, host: Host) -> None:
    golden(f"sshd_config.{host.name}", render.sshd_config(host, PATHS))


def test_client_ssh_config_golden(golden: Golden) -> None:
    golden("ssh_config.laptop", render.client_ssh_config(TOPO, PATHS))


def test_known_hosts_golden(golden: Golden) -> None:
    golden("known_hosts", render.known_hosts(TOPO, fake_host_keys(TOPO)))


@pytest.mark.parametrize("name", ["login", "gateway", "node1"])
def test_hosts_file_golden(golden: Golden, name: str) -> None:
    golden(f"hosts.{name}", render.hosts_file(TOPO, TOPO.host(name)))


def test_pam_common_session_golden(golden: Golden, golden_input: Callable[[str], str]) -> None:
    golden(
        "pam.d-common-session.debian12.sandbox",
        render.pam_common_session(golden_input(PAM_SESSION)),
    )


def test_pam_sshd_adopt_golden(golden: Golden, golden_input: Callable[[str], str]) -> None:
    golden("pam.d-sshd.debian12.node", render.pam_sshd(golden_input(PAM_SSHD), adopt=True))


@pytest.mark.parametrize(("topo", "suffix"), [(TOPO, "2nodes"), (TOPO1, "1node")])
def test_network_setup_commands_golden(golden: Golden, topo: Topology, suffix: str) -> None:
    text = "".join(shlex.join(argv) + "\n" for argv in network.setup_commands(topo))
    golden(f"network-setup.{suffix}.txt", text)


# --------------------------------------------------------------------- topology
@pytest.mark.parametrize("count", [0, -1, MAX_NODES + 1, 51, 1000])
def test_topology_rejects_bad_node_counts(count: int) -> None:
    with pytest.raises(ValueError, match="node_count"):
        Topology(count)


@pytest.mark.parametrize("count", [1, 2, MAX_NODES])
def test_topology_accepts_node_counts_in_range(count: int) -> None:
    topo = Topology(count)
    assert topo.node_names == [f"node{i}" for i in range(1, count + 1)]
    assert len(topo.hosts) == count + 2


@pytest.mark.parametrize(
    ("count", "expected"), [(1, "node1"), (2, "node[1-2]"), (MAX_NODES, f"node[1-{MAX_NODES}]")]
)
def test_nodelist(count: int, expected: str) -> None:
    assert Topology(count).nodelist == expected


@pytest.mark.parametrize("count", range(1, MAX_NODES + 1))
def test_every_address_is_in_the_test_net_and_unique(count: int) -> None:
    topo = Topology(count)
    addrs = [topo.laptop_addr, *(a for h in topo.hosts for a in h.addrs)]
    for addr in addrs:
        assert ipaddress.ip_address(addr) in TEST_NET, addr
    assert len(addrs) == len(set(addrs))
    for h in topo.hosts:
        for other in topo.hosts:
            assert ipaddress.ip_address(topo.address_of(other.name, h.name)) in TEST_NET


def _net(addr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_interface(f"{addr}/{TOPO.prefix_len}").network


def test_the_two_ends_of_every_link_share_a_subnet() -> None:
    topo = Topology(3)
    assert _net(topo.laptop_addr) == _net(topo.login_addr)
    assert _net(topo.login_inner_addr) == _net(topo.gateway_outer_addr)
    for i in range(1, 4):
        assert _net(topo.node_addr(i)) == _net(topo.gateway_addr)
    # and the three links are distinct networks
    assert len({_net(topo.login_addr), _net(topo.gateway_outer_addr), _net(topo.gateway_addr)}) == 3


def test_address_of_follows_the_jump_path() -> None:
    topo = Topology(2)
    assert topo.address_of("login", "laptop") == topo.login_addr
    assert topo.address_of("gateway", "login") == topo.gateway_outer_addr
    assert topo.address_of("node2", "gateway") == topo.node_addr(2)
    with pytest.raises(KeyError):
        topo.host("node3")


def test_netns_names_are_prefixed_and_unique() -> None:
    topo = Topology(MAX_NODES)
    names = [h.netns for h in topo.hosts]
    assert all(n.startswith(NETNS_PREFIX) for n in names)
    assert len(set(names)) == len(names)


# ---------------------------------------------------------------------- network
def _iface_names(cmds: list[list[str]]) -> set[str]:
    names: set[str] = set()
    for argv in cmds:
        for i, word in enumerate(argv[:-1]):
            nxt = argv[i + 1]
            named_by_prev = (word == "name" and argv[i - 1] == "peer") or (
                word in ("add", "set") and argv[i - 1] == "link"
            )
            if word in ("dev", "master") or named_by_prev:
                names.add(nxt)
    return names


@pytest.mark.parametrize("count", range(1, MAX_NODES + 1))
def test_interface_names_fit_in_ifnamsiz(count: int) -> None:
    names = _iface_names(network.setup_commands(Topology(count)))
    assert LAPTOP_IFACE in names
    assert network.node_iface(f"node{count}") in names
    too_long = [n for n in names if len(n) > 15]
    assert not too_long, f"interface names longer than 15 characters: {too_long}"


def test_setup_commands_shape() -> None:
    cmds = network.setup_commands(TOPO)
    assert all(argv[0] == "ip" and all(isinstance(w, str) and w for w in argv) for argv in cmds)
    # Every namespace is created before any command uses it.
    created: set[str] = set()
    for argv in cmds:
        if argv[1:3] == ["netns", "add"]:
            created.add(argv[3])
            continue
        used = [argv[i + 1] for i, w in enumerate(argv[:-1]) if w in ("-n", "netns")]
        assert set(used) <= created, argv
    assert created == {h.netns for h in TOPO.hosts}
    # The last command fences off the whole test net; `down` removes the same route.
    assert cmds[-1] == network.unreachable_route("add")
    assert network.unreachable_route("del") == [
        "ip", "route", "del", "unreachable", ALL_TEST_NET, "proto", "198",
    ]  # fmt: skip
    # Every address assigned is one the topology knows about.
    assigned = {argv[argv.index("add") + 1].split("/")[0] for argv in cmds if "addr" in argv}
    known = {TOPO.laptop_addr, *(a for h in TOPO.hosts for a in h.addrs)}
    assert assigned == known


# ------------------------------------------------------------- rendered configs
def test_every_generated_config_has_the_header() -> None:
    texts = [
        render.slurm_conf(TOPO, PATHS),
        render.gres_conf(TOPO),
        render.cgroup_conf(),
        render.client_ssh_config(TOPO, PATHS),
        *(render.sshd_config(h, PATHS) for h in TOPO.hosts),
    ]
    for text in texts:
        assert text.startswith(render.HEADER)
        assert text.endswith("\n")


def test_slurm_conf_semantics() -> None:
    text = render.slurm_conf(Topology(3), PATHS)
    for i in range(1, 4):
        assert f"NodeName=node{i} NodeAddr=198.18.3.{10 + i} " in text
    assert "SlurmctldHost=gateway(198.18.3.1)" in text
    assert "PartitionName=cpu Nodes=node[1-3] Default=YES" in text
    assert "ProctrackType=proctrack/cgroup" in text  # needed by pam_slurm_adopt
    assert "PrologFlags=Contain" in text
    assert "AuthInfo=socket=/srv/sb/munge/munge.socket.2" in text
    # Room for 10 one-CPU sessions for each of two users on two nodes, with the default memory.
    cpus = [int(c) for c in re.findall(r"^NodeName=\S+ .*\bCPUs=(\d+)", text, re.MULTILINE)]
    memory = [int(m) for m in re.findall(r"\bRealMemory=(\d+)", text)]
    (per_cpu,) = (int(m) for m in re.findall(r"^DefMemPerCPU=(\d+)$", text, re.MULTILINE))
    slots = [min(c, m // per_cpu) for c, m in zip(cpus, memory, strict=True)]
    assert len(slots) == 3
    assert sum(slots[:2]) >= 20
    # Every absolute path in the config lies inside the sandbox directory (or is /bin/true).
    for path in re.findall(r"=(/[^\s,]+)", text):
        assert path.startswith("/srv/sb/") or path == "/bin/true", path


def test_gres_conf_names_every_node() -> None:
    assert "NodeName=node[1-2] Name=gpu File=/dev/null" in render.gres_conf(TOPO)
    assert "NodeName=node1 Name=gpu" in render.gres_conf(TOPO1)


@pytest.mark.parametrize("host", TOPO.hosts, ids=lambda h: h.name)
def test_sshd_config_semantics(host: Host) -> None:
    text = render.sshd_config(host, PATHS)
    listen = re.findall(r"^ListenAddress (\S+)$", text, re.MULTILINE)
    assert listen == list(host.addrs)
    lines = set(text.splitlines())
    assert f"HostKey /srv/sb/hosts/{host.name}/ssh_host_ed25519_key" in lines
    for required in (
        "PasswordAuthentication no",
        "PermitRootLogin no",
        "UsePAM yes",  # pam_slurm_adopt runs through PAM
        "AllowStreamLocalForwarding yes",  # -L to a Unix socket on the node
        "AllowTcpForwarding yes",  # ProxyJump through login and gateway
    ):
        assert required in lines


def test_client_ssh_config_keeps_host_key_checking_on() -> None:
    text = render.client_ssh_config(TOPO, PATHS)
    assert "StrictHostKeyChecking yes" in text
    assert re.search(r"StrictHostKeyChecking\s+(no|accept-new|off)", text) is None
    assert "UserKnownHostsFile /srv/sb/known_hosts" in text
    assert "UserKnownHostsFile /dev/null" not in text
    assert "Host login gateway node1 node2\n" in text
    # Only login has an address: the others are resolved by the hop before them.
    assert re.findall(r"HostName (\S+)", text) == [TOPO.login_addr]


def test_known_hosts_lists_every_name_and_address() -> None:
    keys = fake_host_keys(TOPO)
    text = render.known_hosts(TOPO, keys)
    lines = text.splitlines()
    assert len(lines) == len(TOPO.hosts)
    for h, line in zip(TOPO.hosts, lines, strict=True):
        names, key_type, key = line.split(" ")
        assert names.split(",") == [h.name, *h.addrs]
        assert (key_type, key) == tuple(keys[h.name].split()[:2])
    assert "host-key" not in text  # the .pub comment is not copied


def test_known_hosts_accepts_keys_without_comment() -> None:
    keys = {h.name: f"ssh-ed25519 KEY{h.name}" for h in TOPO.hosts}
    assert (
        render.known_hosts(TOPO, keys).splitlines()[0]
        == "login,198.18.1.2,198.18.2.1 ssh-ed25519 KEYlogin"
    )


@pytest.mark.parametrize("count", [1, 2, 5])
def test_hosts_files_list_only_directly_reachable_hosts(count: int) -> None:
    topo = Topology(count)
    for host in topo.hosts:
        text = render.hosts_file(topo, host)
        assert text.startswith("127.0.0.1\tlocalhost\n")
        entries = hosts_entries(text)
        assert entries[host.name] == host.addrs[0]
        own_nets = {_net(a) for a in host.addrs}
        for name, addr in entries.items():
            if name != host.name:
                assert _net(addr) in own_nets, f"{host.name} lists {name} at unreachable {addr}"
        if host.role == "login":
            assert set(entries) == {"login", "gateway"}
        elif host.role == "gateway":
            assert set(entries) == {h.name for h in topo.hosts}
        else:
            assert "login" not in entries
            assert set(entries) == {"gateway", *topo.node_names}


def test_hosts_file_for_login_does_not_list_nodes() -> None:
    text = render.hosts_file(TOPO, TOPO.login)
    assert "node" not in text
    assert f"{TOPO.gateway_outer_addr}\tgateway\n" in text


# -------------------------------------------------------------------------- PAM
def test_pam_common_session_disables_only_pam_systemd(golden_input: Callable[[str], str]) -> None:
    original = golden_input(PAM_SESSION)
    assert re.search(r"^session\s+optional\s+pam_systemd\.so", original, re.MULTILINE)
    out = render.pam_common_session(original)
    active = [ln for ln in out.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not any("pam_systemd" in ln for ln in active)
    assert any("pam_unix.so" in ln for ln in active)
    assert len(out.splitlines()) == len(original.splitlines())
    assert render.pam_common_session(out) == out  # applying it twice changes nothing


def test_pam_common_session_without_pam_systemd_is_unchanged() -> None:
    text = "session required pam_unix.so\n"
    assert render.pam_common_session(text) == text


def test_pam_common_session_after_a_blank_line() -> None:
    out = render.pam_common_session(
        "session required pam_unix.so\n\nsession optional pam_systemd.so\n"
    )
    active = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
    assert active == ["session required pam_unix.so"]


def test_pam_sshd_adopt_follows_common_account(golden_input: Callable[[str], str]) -> None:
    original = golden_input(PAM_SSHD)
    out = render.pam_sshd(original, adopt=True)
    assert out.count("pam_slurm_adopt.so") == 1
    lines = out.splitlines()
    i = lines.index("@include common-account")
    assert lines[i + 2].startswith("account    required     pam_slurm_adopt.so ")
    assert "action_no_jobs=deny" in lines[i + 2]
    assert out.replace(render.PAM_ADOPT, "") == original  # nothing else changed


def test_pam_sshd_without_adopt_is_unchanged(golden_input: Callable[[str], str]) -> None:
    original = golden_input(PAM_SSHD)
    assert render.pam_sshd(original, adopt=False) == original
    # Hosts other than nodes do not need the marker at all.
    assert render.pam_sshd("@include common-auth\n", adopt=False) == "@include common-auth\n"


def test_pam_sshd_adopt_without_common_account_is_an_error() -> None:
    with pytest.raises(ValueError, match="@include common-account"):
        render.pam_sshd("@include common-auth\naccount required pam_nologin.so\n", adopt=True)


def test_pam_sshd_adopt_when_common_account_is_the_last_line() -> None:
    out = render.pam_sshd("@include common-auth\n@include common-account", adopt=True)
    assert "pam_slurm_adopt.so" in out


def test_sshd_config_with_mfa_asks_for_a_key_and_a_code() -> None:
    text = render.sshd_config(TOPO.login, PATHS, mfa=True)
    assert "KbdInteractiveAuthentication yes\n" in text
    assert "\nAuthenticationMethods publickey,keyboard-interactive\n" in text
    assert "KbdInteractiveAuthentication no" not in text
    assert "AuthenticationMethods" not in render.sshd_config(TOPO.login, PATHS)


DEBIAN_PAM_SSHD = """# PAM configuration for the Secure Shell service
@include common-auth
account    required     pam_nologin.so
@include common-account
session    required     pam_limits.so
@include common-session
@include common-password
"""


def test_mfa_pam_stack_replaces_the_password_stack_only() -> None:
    text = mfa.pam_stack(DEBIAN_PAM_SSHD, Path("/sb/mfa/users.oath"))
    assert "@include common-auth" not in text
    assert "auth requisite pam_oath.so usersfile=/sb/mfa/users.oath window=1 digits=6\n" in text
    assert "@include common-account\n" in text
    assert "@include common-session\n" in text
    with pytest.raises(SandboxError):
        mfa.pam_stack("account required pam_permit.so\n", Path("/x"))


def test_mfa_usersfile_is_totp_30s_6_digits_without_pin() -> None:
    text = mfa.usersfile_text({"ntbob": "bb" * 20, "ntalice": "aa" * 20})
    assert text == f"HOTP/T30/6\tntalice\t-\t{'aa' * 20}\nHOTP/T30/6\tntbob\t-\t{'bb' * 20}\n"
