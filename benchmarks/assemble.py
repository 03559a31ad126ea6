"""The JSON of a run, from the parts' raw results (benchmarks/bench.py's ``Bench.run``)."""

from __future__ import annotations

import statistics
from typing import Any

from . import sidebyside
from .common import summary


def results(parts: dict[str, Any]) -> dict[str, Any]:
    sides, kept, detached = parts["sides"], parts["kept"], parts["detached"]
    foreground = sides["nodetunnel_runs"]
    first = foreground[0]
    out: dict[str, Any] = {}
    out["startup"] = {
        "jupyter": summary([f["ready_s"] for f in foreground]),
        "jupyter_phases": {
            name: summary([f["phases"][name] for f in foreground]) for name in first["phases"]
        },
        "jupyter_squeue_polls": statistics.median(f["startup_squeue"] for f in foreground),
        "ctrl_c_s": summary([f["ctrl_c_s"] for f in foreground]),
        "attach": summary(kept["attach_ready_s"]),
        "detach": summary([detached["ready_s"]]),
        "detach_returns_s": summary([detached["returned_s"]]),
        "cli_start_s": parts["cli_start"]["help_s"],
        "side_by_side": sidebyside.startup_rows(sides),
    }
    out["handshakes"] = {
        "foreground_session": first["handshakes"],
        "foreground_session_totals": [f["handshakes"]["total"] for f in foreground],
        "foreground_steps": first["handshake_steps"],
        "attach": kept["attach_handshakes"],
        "detached_list_stop": detached["handshakes"],
        "detached_steps": detached["handshake_steps"],
        "plain_ssh_forward": kept["plain_handshakes"],
        "per_tool": sidebyside.login_rows(first, sides),
    }
    rpcs = [f["start_rpcs"] for f in foreground if f["start_rpcs"] is not None]
    out["scheduler"] = {
        "foreground_hold": first["hold"],
        "detached_hold": detached["hold"],
        "pending": parts["pending"],
        "per_start": {
            **first["start_commands"],
            "slurmctld_rpcs": statistics.median(rpcs) if rpcs else None,
        },
        "per_command": {
            "jupyter (whole session)": first["commands"],
            "jupyter --detach (until it returns)": detached["commands"]["detach"],
            "attach": kept["attach_commands"],
            "list": detached["commands"]["list"],
            "stop": detached["commands"]["stop"],
        },
    }
    out["throughput"] = kept["datapath"]["throughput"]
    out["latency"] = kept["datapath"]["latency"]
    out["recovery"] = parts["recovery"]
    out["footprint"] = {
        **parts["cli_start"],
        "keeper_idle": detached["keeper_idle"],
        "many_sessions": parts["many"],
    }
    out["apps"] = {"jupyter": out["startup"]["jupyter"], **parts["apps"]}
    out["shared_home"] = parts["shared_home"]
    return out
