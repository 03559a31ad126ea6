"""Recovery: seconds from a link's return to the first 200 through nodetunnel's tunnel.

One foreground session; the laptop's link to login, then the node's link in the gateway's
bridge, is set down for ``outage_s`` seconds (as tests/integration/test_faults.py does) and
up again; the figure is from the ``ip link set ... up`` to the first ``/api/status`` 200.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nodetunnel.proc import run
from nodetunnel.sandbox.network import node_iface
from nodetunnel.sandbox.topology import LAPTOP_IFACE

from .common import BenchError, token_of, wait_working

if TYPE_CHECKING:
    from .bench import Bench

LINKS = ("laptop-login", "gateway-node")


def measure(bench: Bench) -> dict[str, Any]:
    outage_s = bench.settings.outage_s
    bench.say(f"recovery: links cut for {outage_s:g} s each: {', '.join(LINKS)}")
    cli = bench.start(bench.jupyter_argv(), "nodetunnel jupyter (recovery)")
    info, _ = bench.ready(cli)
    port, token, node = int(info["local_port"]), token_of(info), str(info["node"])
    result: dict[str, Any] = {"outage_s": outage_s}
    for where in LINKS:
        argv = _link_argv(bench, where, node)
        bench.on_clean_up(lambda argv=argv: _set(argv, "up"))  # type: ignore[misc]
        _set(argv, "down")
        try:
            time.sleep(outage_s)  # the fault itself: the link stays down this long
        finally:
            _set(argv, "up")
        restored = time.monotonic()
        back = wait_working(port, token, timeout_s=60)
        result[where.replace("-", "_") + "_s"] = round(back - restored, 3)
    if (code := cli.interrupt()) != 130:
        raise BenchError(f"nodetunnel jupyter exited with {code} on Ctrl-C: {cli.stderr_tail()}")
    bench.wait_job_gone(str(info["job_id"]))
    return result


def _link_argv(bench: Bench, where: str, node: str) -> list[str]:
    if where == "laptop-login":
        return ["ip", "link", "set", LAPTOP_IFACE]
    netns = bench.sb.topo.gateway.netns
    return ["ip", "-n", netns, "link", "set", node_iface(node)]


def _set(argv: list[str], state: str) -> None:
    run([*argv, state], timeout_s=10)
