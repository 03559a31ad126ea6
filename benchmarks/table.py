"""The side-by-side table printed at the end of a run (targets are reported, not asserted)."""

from __future__ import annotations

from typing import Any

from . import homecache
from .common import SCHEDULER_COMMANDS

W = 46  # width of the label column


def _f(v: Any, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _row(label: str, v: dict[str, Any], extra: str = "") -> str:
    if not v.get("n"):
        return f"{'  ' + label:{W}}{'-':>8}{'-':>8}{'-':>8}{0:>4}{extra}"
    return (f"{'  ' + label:{W}}{v['min']:>8.2f}{v['median']:>8.2f}{v['max']:>8.2f}"
            f"{v['n']:>4}{extra}")  # fmt: skip


def render_table(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        f"nodetunnel side by side on the mini-cluster: {m['cpus']} CPUs, {m['openssh']}, "
        f"{m['slurm']}; {s['repetitions']} repetition(s)" + (" (--quick)" if s["quick"] else ""),
        *_startup(r["startup"]),
        *_logins(r["handshakes"]),
        *_scheduler(r["scheduler"]),
        *_datapath(r["throughput"], r["latency"]),
        *_recovery(r["recovery"]),
        *_footprint(r["footprint"]),
        *_apps(r["apps"]),
        *homecache.render(r["shared_home"]),
        "",
        f"total {r['duration_s']:.0f} s",
    ]
    return "\n".join(lines)


def _startup(st: dict[str, Any]) -> list[str]:
    sb = st["side_by_side"]
    head = f"{'1. startup: command -> first 200 (s)':{W}}{'min':>8}{'median':>8}{'max':>8}{'n':>4}"
    lines = ["", head + f"{'/manual':>9}"]
    for key, label in (
        ("nodetunnel", "nodetunnel jupyter"),
        ("manual", "manual recipe (ssh; sbatch; squeue; log; -L)"),
        ("jupyter_forward", "jupyter-forward --launch-command sbatch"),
    ):
        lines.append(_row(label, sb[key], f"{_f(sb[key]['ratio_to_manual']):>9}"))
    for err in sb["jupyter_forward"]["errors"]:
        lines.append(f"    jupyter-forward failed: {err[:300]}")
    ratio = sb["nodetunnel"]["ratio_to_manual"]
    verdict = "met" if ratio is not None and ratio <= 0.9 else "NOT met"
    lines.append(f"  target: nodetunnel <= 0.90x manual (stretch 0.80x): {_f(ratio)}x, {verdict}")
    ph = st["jupyter_phases"]
    lines.append(
        f"  nodetunnel's time (medians): connect {ph['connect_s']['median']:.2f}, until running "
        f"+ tunnel {ph['until_running_s']['median']:.2f}, JupyterLab start "
        f"{ph['app_start_s']['median']:.2f}, URL after it {ph['url_after_app_s']['median']:.2f}"
        f"; {st['jupyter_squeue_polls']:g} squeue polls"
    )
    mp = sb["manual_phases"]
    lines.append(
        "  manual recipe's time (medians): "
        + ", ".join(f"{k.removesuffix('_s')} {v['median']:.2f}" for k, v in mp.items())
    )
    for key, label in (
        ("attach", "nodetunnel attach"),
        ("detach", "nodetunnel jupyter --detach"),
        ("ctrl_c_s", "Ctrl-C of jupyter until exit"),
    ):
        lines.append(_row(label, st[key]))
    return lines


def _logins(hs: dict[str, Any]) -> list[str]:
    hosts = [h for h in hs["foreground_session"] if h != "total"]
    cols = "".join(f"{h:>8}" for h in [*hosts, "total"])
    lines = ["", f"{'2. SSH logins per host (sshd Accepted publickey)':{W}}" + cols]

    def row(label: str, v: dict[str, int]) -> str:
        return f"{'  ' + label:{W}}" + "".join(f"{v[h]:>8}" for h in [*hosts, "total"])

    for tool, label in (
        ("nodetunnel", "nodetunnel jupyter: start, use, Ctrl-C"),
        ("manual", "manual recipe: start, use, scancel"),
        ("jupyter_forward", "jupyter-forward: start, use, Ctrl-C"),
    ):
        t = hs["per_tool"][tool]
        lines.append(row(label, t["total"]))
        for step, v in t["steps"].items():
            lines.append(row(f"  {step}", v))
    for key, label in (
        ("attach", "nodetunnel attach (one)"),
        ("detached_list_stop", "jupyter --detach, hold, list, stop"),
        ("plain_ssh_forward", "plain ssh -J ... -L"),
    ):
        lines.append(row(label, hs[key]))
    lines.append("  target: 1 login per hop per session")
    return lines


def _scheduler(sc: dict[str, Any]) -> list[str]:
    cols = "".join(f"{c:>8}" for c in SCHEDULER_COMMANDS)
    lines = ["", f"{'3. scheduler load':{W}}{'window':>8}" + cols + f"{'/min':>8}{'RPCs':>8}"]

    def row(label: str, v: dict[str, Any], window: str, per_min: Any) -> str:
        return (f"{'  ' + label:{W}}{window:>8}" + "".join(f"{v[c]:>8}" for c in SCHEDULER_COMMANDS)
                + f"{_f(per_min):>8}{_f(v['slurmctld_rpcs'], 'g'):>8}")  # fmt: skip

    lines.append(row("per start (jupyter, until the URL)", sc["per_start"], "start", None))
    for key, label in (
        ("foreground_hold", "healthy, foreground"),
        ("detached_hold", "healthy, detached (keeper)"),
    ):
        v = sc[key]
        lines.append(row(label, v, f"{v['duration_s']:.0f}s", v["per_minute"]))
    for key, label in (
        ("first_minute", "pending, first minute"),
        ("after_first_minute", "pending, after the first minute"),
    ):
        v = sc["pending"][key]
        lines.append(row(label, v, f"{v['duration_s']:.0f}s", v["per_minute"]))
    lines.append(
        "  per command: "
        + "; ".join(
            f"{k}: " + " ".join(f"{c} {v[c]}" for c in SCHEDULER_COMMANDS if v[c])
            for k, v in sc["per_command"].items()
        )
    )
    lines.append("  target: <= 1 query/min healthy; <= 2/min after the first pending minute")
    return lines


def _datapath(tp: dict[str, Any], lat: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"{'4. data path':{W}}{'nodetunnel':>12}{'plain ssh':>12}{'ratio':>8}",
        f"{'  ' + str(tp['file_mb']) + ' MB download, median of ' + str(tp['rounds']) + ', MB/s':{W}}"
        f"{tp['nodetunnel_mb_s']:>12.1f}{tp['plain_ssh_mb_s']:>12.1f}{tp['ratio']:>8.2f}",
    ]
    lines.append(f"  {lat['requests']} GETs of {lat['path']} per tunnel and mode (ms):")
    for mode, label in (("new", "a new connection each"), ("kept", "one kept-alive connection")):
        v = lat[mode]
        for p in ("p50", "p99"):
            lines.append(
                f"{'    ' + label + ', ' + p:{W}}{v['nodetunnel'][p + '_ms']:>12.2f}"
                f"{v['plain_ssh'][p + '_ms']:>12.2f}{v['ratio_' + p]:>8.2f}"
            )
    lines.append("  target: throughput >= 0.95x, latency <= 1.05x plain ssh")
    return lines


def _recovery(rc: dict[str, Any]) -> list[str]:
    return [
        "",
        f"5. recovery after a {rc['outage_s']:g} s cut: link restored -> first 200 (s)",
        f"{'  laptop <-> login':{W}}{rc['laptop_login_s']:>8.2f}",
        f"{'  gateway <-> node':{W}}{rc['gateway_node_s']:>8.2f}",
        "  target: <= 3 s",
    ]


def _footprint(fp: dict[str, Any]) -> list[str]:
    k, many = fp["keeper_idle"], fp["many_sessions"]
    return [
        "",
        "6. footprint on the laptop",
        _row("nodetunnel --help (s)", fp["help_s"]),
        _row("python -c pass, same interpreter (s)", fp["python_pass_s"]),
        f"  keeper idle {k['window_s']:.0f} s: RSS {k['keeper_rss_mb']:.1f} MB, CPU "
        f"{k['keeper_cpu_s']:.2f} s ({k['keeper_cpu_pct']:.3f} %); with its ssh: RSS "
        f"{k['with_ssh_rss_mb']:.1f} MB, CPU {k['with_ssh_cpu_s']:.2f} s",
        f"  {many['sessions']} detached sessions: {many['total_rss_mb']:.1f} MB RSS in "
        f"{many['processes']} processes ({many['per_session_rss_mb']:.1f} MB each)",
        "  target: --help <= 150 ms; keeper <= 30 MB RSS, <= 0.1 % CPU idle",
    ]


def _apps(ap: dict[str, Any]) -> list[str]:
    head = f"{'7. command -> first 200 per app (s)':{W}}{'min':>8}{'median':>8}{'max':>8}{'n':>4}"
    return ["", head, *(_row(f"nodetunnel {app}", v) for app, v in ap.items())]
