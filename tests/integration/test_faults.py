"""Faults on the way to the node: the tunnel heals itself and the kernel keeps its state."""

from __future__ import annotations

import time

import pytest

from nodetunnel.proc import NotReady, run, wait_until
from nodetunnel.sandbox.network import node_iface
from nodetunnel.sandbox.topology import LAPTOP_IFACE

from .helpers import ALICE, EXECUTE_JS, Cli, jupyter_argv, user_processes
from .test_jupyter import http_status, wait_no_jobs

OUTAGE_S = 20


def _link(sandbox, where: str, node: str, state: str) -> None:
    if where == "laptop-login":
        run(["ip", "link", "set", LAPTOP_IFACE, state], timeout_s=10)
    else:  # gateway-node: the node's link in the gateway's bridge
        run(["ip", "-n", sandbox.topo.gateway.netns, "link", "set", node_iface(node), state],
            timeout_s=10)  # fmt: skip


@pytest.mark.parametrize("where", ["laptop-login", "gateway-node"])
def test_link_down_then_up(sandbox, laptop_nodetunnel, chromium, where):
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel))
    info = cli.read_json()  # stops the CLI itself if no JSON comes
    port = int(info["local_port"])  # type: ignore[call-overload]
    token = str(info["url"]).split("token=", 1)[1]
    node = str(info["node"])
    page = chromium.new_page()
    try:
        page.goto(str(info["url"]), timeout=60_000)
        page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        kernel = page.evaluate(EXECUTE_JS, [token, "x = 6 * 7\nprint('set')", None])["kernel"]
        _link(sandbox, where, node, "down")
        try:
            time.sleep(OUTAGE_S)  # the fault itself: the link stays down this long
        finally:
            _link(sandbox, where, node, "up")
        restored = time.monotonic()

        def back() -> bool:
            try:
                return http_status(port, "/api/status", token) == 200
            except OSError as exc:
                raise NotReady(str(exc)) from exc

        wait_until(back, timeout_s=30, interval_s=0.1, what="the tunnel to come back")
        took = time.monotonic() - restored
        print(f"{where}: tunnel back {took:.2f} s after the link returned")
        assert took <= 5.0
        # Same page, same kernel: the variable set before the cut is still there.
        again = page.evaluate(EXECUTE_JS, [token, "print(x)", kernel])
        assert again["printed"] == "42\n"
    except BaseException:
        cli.stop()
        print("nodetunnel said:", cli.stderr())
        raise
    finally:
        page.close()
    assert cli.interrupt() == 130
    wait_no_jobs(sandbox)
    assert user_processes(ALICE) == []
