"""scripts/bench --quick on the mini-cluster: every metric is measured, the JSON is well-formed.

No time or rate thresholds here: how fast nodetunnel is, and what it costs, is
what the benchmark reports (scripts/bench), not what a test asserts.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import run as bench

from .helpers import ALICE, squeue, state_dir, user_processes

HOSTS = {"login", "gateway", "node1", "node2"}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@pytest.mark.usefixtures("laptop_nodetunnel")  # skips (or fails in CI) without the /opt venvs
def test_quick_benchmark_measures_every_metric(sandbox, tmp_path, capsys):
    out = tmp_path / "bench.json"
    # The sandbox fixture holds the sandbox lock for this test session already.
    assert bench.main(["--quick", "--output", str(out)], lock_held=True) == 0
    data = json.loads(out.read_text())
    assert data["version"] == bench.RESULT_VERSION
    assert data["settings"]["quick"] is True
    assert data["machine"]["cpus"] >= 1

    # 1. Time from the command to a working URL: jupyter, attach, --detach.
    for key in ("jupyter", "attach", "detach", "ctrl_c_s", "cli_start_s"):
        s = data["startup"][key]
        assert s["n"] == len(s["samples"]) >= 1, key
        assert all(_number(s[k]) and s[k] > 0 for k in ("min", "median", "max")), s
        assert s["min"] <= s["median"] <= s["max"]
    assert set(data["startup"]["jupyter_phases"]) == {
        "connect_s",
        "until_running_s",
        "app_start_s",
        "url_after_app_s",
    }
    assert all(_number(v["median"]) for v in data["startup"]["jupyter_phases"].values())

    # ... side by side with the manual recipe and jupyter-forward (its error if it failed).
    sb = data["startup"]["side_by_side"]
    for key in ("nodetunnel", "manual"):
        assert sb[key]["n"] >= 1, sb[key]
        assert _number(sb[key]["median"]), sb[key]
        assert _number(sb[key]["ratio_to_manual"]), sb[key]
    jf = sb["jupyter_forward"]
    assert (jf["n"] >= 1 and _number(jf["median"])) or jf["errors"], jf
    assert all(_number(v["median"]) for v in sb["manual_phases"].values())

    # 2. SSH handshakes per host (sshd logs) for each scenario, and per tool and step.
    hs = data["handshakes"]
    for key in ("foreground_session", "attach", "detached_list_stop", "plain_ssh_forward"):
        assert set(hs[key]) == HOSTS | {"total"}, key
        assert all(_count(v) for v in hs[key].values()), hs[key]
        assert hs[key]["total"] == sum(hs[key][h] for h in HOSTS)
    assert set(hs["detached_steps"]) == {"detach", "hold", "list", "stop"}
    for tool in ("nodetunnel", "manual", "jupyter_forward"):
        per = hs["per_tool"][tool]
        assert set(per["total"]) == HOSTS | {"total"}, tool
        assert per["steps"], per
        assert all(_count(v["total"]) for v in per["steps"].values()), per

    # 3. Scheduler queries while a session is kept (foreground, detached) and per command.
    sc = data["scheduler"]
    for key in ("foreground_hold", "detached_hold"):
        q = sc[key]
        assert q["duration_s"] > 0
        assert all(_count(q[c]) for c in ("squeue", "sbatch", "scancel", "total")), q
        assert _number(q["per_minute"])
        assert len(q["at_s"]) == q["total"]
        assert _count(q["slurmctld_rpcs"]), q  # slurmctld's own count was read
    for key in ("first_minute", "after_first_minute"):
        q = sc["pending"][key]
        assert q["duration_s"] > 0, q
        assert _number(q["per_minute"]), q
        assert _count(q["slurmctld_rpcs"]), q
    assert sc["pending"]["state_seen"].startswith("PENDING"), sc["pending"]
    assert _count(sc["per_start"]["total"])
    assert _number(sc["per_start"]["slurmctld_rpcs"])
    assert len(sc["per_command"]) == 5
    for counts in sc["per_command"].values():
        assert all(_count(counts[c]) for c in ("squeue", "sbatch", "scancel", "total"))

    # 4. Throughput through nodetunnel's tunnel and through plain ssh -L.
    tp = data["throughput"]
    assert tp["file_mb"] == bench.QUICK.file_mb
    for key in ("nodetunnel_mb_s", "plain_ssh_mb_s", "ratio"):
        assert _number(tp[key]), tp
        assert tp[key] > 0, tp

    lat = data["latency"]
    for mode in ("new", "kept"):
        for tunnel in ("nodetunnel", "plain_ssh"):
            assert all(_number(lat[mode][tunnel][p]) for p in ("p50_ms", "p99_ms")), lat
        assert _number(lat[mode]["ratio_p50"])
        assert _number(lat[mode]["ratio_p99"])

    # 5. Recovery after each link cut.
    rc = data["recovery"]
    assert _number(rc["laptop_login_s"]), rc
    assert _number(rc["gateway_node_s"]), rc

    # 6. Footprint: --help against python -c pass, the idle keeper, many sessions.
    fp = data["footprint"]
    assert _number(fp["help_s"]["median"])
    assert _number(fp["python_pass_s"]["median"])
    k = fp["keeper_idle"]
    assert all(_number(k[x]) for x in ("keeper_rss_mb", "keeper_cpu_s", "keeper_cpu_pct")), k
    assert k["keeper_rss_mb"] > 0
    many = fp["many_sessions"]
    assert many["sessions"] == bench.QUICK.sessions, many
    assert many["total_rss_mb"] > 0, many

    # 7. Command -> first 200 per app recipe.
    assert set(data["apps"]) == {"jupyter", "notebook", "streamlit", "dash", "tensorboard",
                                 "marimo", "panel", "voila", "code"}  # fmt: skip
    for app, s in data["apps"].items():
        assert s["n"] >= 1, app
        assert _number(s["median"]), app

    # 8. The shared home seen directly and through a cache: start-up and failure reports.
    sh = data["shared_home"]
    for key in ("ready_s", "failure_reported_s"):
        for view in ("direct", "cached"):
            assert sh[key][view]["n"] >= 1, sh
            assert _number(sh[key][view]["median"]), sh
    assert _number(sh["ratio"])
    assert sh["ratio"] > 0
    assert sandbox.status().home == "direct on every host"  # the cache is gone again

    # The table was printed; the benchmark left nothing behind.
    assert "1. startup" in capsys.readouterr().out
    assert squeue(sandbox) == []
    assert user_processes(ALICE) == []
    assert list(sandbox.paths.user_home(ALICE).glob("nt-bench-*")) == []
    home = sandbox.paths.user_home(ALICE)
    assert not (home / ".jupyter_forward").exists()
    assert list(home.glob("nt-bench*")) == []
    assert not (home / ".bash_profile").exists()
    assert list(state_dir(ALICE).glob("nt-*")) == []
