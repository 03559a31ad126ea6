"""Start-up side by side: nodetunnel, the seed's manual recipe, jupyter-forward, interleaved.

The manual recipe is what a person scripts, each step waiting for the one before (run as
the test user, with the same ssh config, the same JupyterLab and the same shared home):

1. ``ssh -J login gateway sbatch`` a job script that runs ``jupyter lab --no-browser
   --port=P`` (written beforehand, as a person keeps it in their home);
2. poll ``squeue`` (each poll one ssh) until the job is RUNNING, which names the node;
3. poll the job log (``cat`` over ssh) until JupyterLab prints its URL with the token;
4. ``ssh -N -J login,gateway -L LOCAL:127.0.0.1:P NODE``;
5. poll ``/api/status`` with the token until it answers 200.

jupyter-forward (installed into the bench-only venv by scripts/setup) is pointed at the
gateway (through login) with its SLURM launch option ``--launch-command sbatch``. It reads
``~/.ssh/config`` (paramiko), and runs ``jupyter`` from a login shell on the gateway and in
the job: for its runs only, the test user's ``~/.ssh/config`` names the hop to the gateway
and a ``~/.bash_profile`` puts the cluster venv first on PATH (both restored after each
run). Without ``--conda-env`` this version always fails after its ``which jupyter``
check, so it is given ``--conda-env`` with the venv's name: its ``source activate NAME``
then runs the venv's ``bin/activate`` (found on PATH), as a conda user's would.
It never cancels its job; the bench does. If it cannot be made to work, its error is
reported in the table instead of its times.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodetunnel.errors import NodetunnelError
from nodetunnel.proc import NotReady, wait_until
from nodetunnel.quoting import remote_command

from .common import (
    BENCH_VENV,
    CLUSTER_VENV,
    BenchError,
    Watched,
    delta,
    free_port,
    summary,
    wait_working,
)

if TYPE_CHECKING:
    from .bench import Bench

TOOLS = ("nodetunnel", "manual", "jupyter_forward")
MANUAL_STEPS = ("sbatch", "until_running", "until_url", "forward_and_status", "end")
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)")
JF_TIMEOUT_S = 90.0  # jupyter-forward polls its log without a deadline; the bench has one


def measure(bench: Bench) -> dict[str, Any]:
    """``repetitions`` starts of each tool, the order rotating every round."""
    n = bench.settings.repetitions
    nodetunnel: list[dict[str, Any]] = []
    manual: list[dict[str, Any]] = []
    forward: list[dict[str, Any]] = []
    for i in range(n):
        order = TOOLS[i % 3 :] + TOOLS[: i % 3]
        for tool in order:
            if tool == "nodetunnel":
                nodetunnel.append(bench.foreground_session(i))
            elif tool == "manual":
                bench.say(f"manual recipe {i + 1}/{n}: sbatch, squeue, log, ssh -L, /api/status")
                manual.append(manual_recipe(bench))
            else:
                bench.say(f"jupyter-forward {i + 1}/{n}")
                forward.append(jupyter_forward(bench))
    return {"nodetunnel_runs": nodetunnel, "manual_runs": manual, "jupyter_forward_runs": forward}


def startup_rows(sides: dict[str, Any]) -> dict[str, Any]:
    """Medians, minima, maxima and ratios to the manual recipe; per-step logins."""
    nt = summary([r["ready_s"] for r in sides["nodetunnel_runs"]])
    manual = summary([r["ready_s"] for r in sides["manual_runs"]])
    ok = [r for r in sides["jupyter_forward_runs"] if r.get("ready_s") is not None]
    errors = sorted({r["error"] for r in sides["jupyter_forward_runs"] if r.get("error")})
    jf: dict[str, Any] = summary([r["ready_s"] for r in ok]) if ok else {"n": 0}
    jf["errors"] = errors
    rows: dict[str, Any] = {"nodetunnel": nt, "manual": manual, "jupyter_forward": jf}
    for key in rows:
        med = rows[key].get("median")
        rows[key]["ratio_to_manual"] = None if med is None else round(med / manual["median"], 3)
    rows["manual_phases"] = {
        step: summary([r["phases"][step] for r in sides["manual_runs"]])
        for step in sides["manual_runs"][0]["phases"]
    }
    return rows


def login_rows(bench_first: dict[str, Any], sides: dict[str, Any]) -> dict[str, Any]:
    """SSH logins per host, per step, for one start of each tool."""
    m = sides["manual_runs"][0]
    jf = sides["jupyter_forward_runs"][0]
    return {
        "nodetunnel": {"total": bench_first["handshakes"], "steps": bench_first["handshake_steps"]},
        "manual": {"total": m["logins"], "steps": m["login_steps"]},
        "jupyter_forward": {"total": jf["logins"], "steps": jf["login_steps"]},
    }


# ----------------------------------------------------------------------- the manual recipe
def _ssh(bench: Bench, *, jump: str, host: str, command: list[str] | None = None) -> list[str]:
    argv = ["ssh", "-F", str(bench.sb.paths.ssh_config), "-o", "BatchMode=yes", "-J", jump, host]
    return argv + (["--", remote_command(command)] if command else [])


def manual_recipe(bench: Bench) -> dict[str, Any]:
    port = 20000 + secrets.randbelow(20000)
    tag = secrets.token_hex(4)
    script = bench.home / f"nt-bench-manual-{tag}.sh"
    log = bench.home / f"nt-bench-manual-{tag}.log"
    jupyter = CLUSTER_VENV / "bin" / "jupyter"
    bench.write_user_file(
        script, f"#!/bin/bash\nexec {jupyter} lab --no-browser --ip=127.0.0.1 --port={port}\n"
    )
    bench.track_file(log)
    counts = [bench.auth_counts()]
    at = [time.monotonic()]

    def mark() -> None:
        counts.append(bench.auth_counts())
        at.append(time.monotonic())

    submitted = bench.as_user(
        _ssh(bench, jump="login", host="gateway",
             command=["sbatch", "--parsable", "-D", str(bench.home), "-o", str(log),
                      "-J", "manual", str(script)]),
        timeout_s=60,
    )  # fmt: skip
    if submitted.returncode != 0:
        raise BenchError(f"manual recipe: sbatch failed: {submitted.stderr.strip()[-300:]}")
    job = submitted.stdout.strip().split(";")[0]
    bench.track_job(job)
    mark()

    def running() -> str:
        out = bench.as_user(
            _ssh(bench, jump="login", host="gateway",
                 command=["squeue", "-h", "-j", job, "-o", "%T %N"]),
            timeout_s=30,
        ).stdout.split()  # fmt: skip
        if len(out) == 2 and out[0] == "RUNNING":
            return out[1]
        raise NotReady(f"job {job} is {out[0] if out else 'not listed'}")

    node = wait_until(running, timeout_s=120, what=f"manual job {job} to run", interval_s=0.1,
                      max_interval_s=0.5)  # fmt: skip
    mark()

    def url() -> tuple[str, str]:
        text = bench.as_user(
            _ssh(bench, jump="login", host="gateway", command=["cat", str(log)]), timeout_s=30
        ).stdout
        if m := _URL.search(text):
            return m[1], m[2]
        raise NotReady(f"no URL in {log} yet")

    _, token = wait_until(url, timeout_s=120, what=f"the URL in {log}", interval_s=0.1,
                          max_interval_s=0.5)  # fmt: skip
    mark()
    local = free_port()
    tunnel = bench.start(
        ["ssh", "-F", str(bench.sb.paths.ssh_config), "-N", "-o", "BatchMode=yes",
         "-o", "ExitOnForwardFailure=yes", "-J", "login,gateway",
         "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", node],
        "manual ssh -L",
    )  # fmt: skip
    ok_at = wait_working(local, token, timeout_s=60)
    mark()
    ready_s = ok_at - at[0]
    tunnel.interrupt(timeout_s=10)
    bench.as_user(_ssh(bench, jump="login", host="gateway", command=["scancel", job]))
    bench.wait_job_gone(job)
    mark()
    script.unlink(missing_ok=True)
    log.unlink(missing_ok=True)
    return {
        "ready_s": ready_s,
        "phases": {f"{s}_s": at[i + 1] - at[i] for i, s in enumerate(MANUAL_STEPS[:-1])},
        "logins": delta(counts[0], counts[-1]),
        "login_steps": {s: delta(counts[i], counts[i + 1]) for i, s in enumerate(MANUAL_STEPS)},
    }


# ------------------------------------------------------------------------ jupyter-forward
def jupyter_forward(bench: Bench) -> dict[str, Any]:
    """One jupyter-forward start; its times, or why it could not be made to work."""
    exe = BENCH_VENV / "bin" / "jupyter-forward"
    counts = [bench.auth_counts()]
    if not exe.exists():
        return _jf_failed(f"{exe} missing (run ./scripts/setup)", counts)
    jobs_before = set(bench.user_jobs())
    local = free_port()
    jf_dir = bench.home / ".jupyter_forward"
    had_dir = jf_dir.exists()
    restore = _jf_user_setup(bench)
    cli: Watched | None = None
    try:
        cli = bench.start(
            # Without --conda-env this version always ends with "Could not activate
            # environment" (it falls through to its error after `which jupyter` succeeds);
            # `source activate NAME` finds the venv's bin/activate on PATH, which ignores NAME.
            [
                str(exe),
                "--port",
                str(local),
                "--conda-env",
                CLUSTER_VENV.name,
                "--launch-command",
                "sbatch",
                "gateway",
            ],
            "jupyter-forward",
        )
        started = cli.started
        token = _jf_token(bench, cli, jf_dir, started)
        ok_at = wait_working(
            local, token, timeout_s=max(1.0, started + JF_TIMEOUT_S - time.monotonic())
        )
        counts.append(bench.auth_counts())
        result: dict[str, Any] = {"ready_s": ok_at - started, "error": None}
    except (BenchError, NodetunnelError, OSError) as exc:  # reported, not the bench's end
        result = {"ready_s": None, "error": _jf_error(cli, exc)}
        counts.append(bench.auth_counts())
    finally:
        if cli is not None and cli.running():
            cli.interrupt(timeout_s=15)
        if cli is not None:
            cli.kill()
        for job in sorted(set(bench.user_jobs()) - jobs_before):  # it never cancels its job
            bench.track_job(job)
            bench.sb.run_in("gateway", ["scancel", job])
            bench.wait_job_gone(job)
        restore()
        if not had_dir:
            shutil.rmtree(jf_dir, ignore_errors=True)
    counts.append(bench.auth_counts())
    result["logins"] = delta(counts[0], counts[-1])
    result["login_steps"] = {
        "start_use": delta(counts[0], counts[1]),
        "ctrl_c": delta(counts[1], counts[2]),
    }
    return result


def _jf_failed(error: str, counts: list[dict[str, int]]) -> dict[str, Any]:
    zero = delta(counts[0], counts[0])
    return {"ready_s": None, "error": error, "logins": zero,
            "login_steps": {"start_use": zero, "ctrl_c": zero}}  # fmt: skip


def _jf_error(cli: Watched | None, exc: Exception) -> str:
    said = "" if cli is None else " ".join(cli.stderr_tail(4).split() + _out_tail(cli))
    return f"{exc}" + (f"; it said: {said[-300:]}" if said else "")


def _out_tail(cli: Watched) -> list[str]:
    lines = [line.strip() for _, line in cli.stdout[-6:] if line.strip()]
    return [" | ".join(lines)] if lines else []


def _jf_token(bench: Bench, cli: Watched, jf_dir: Path, started: float) -> str:
    """The token JupyterLab wrote into jupyter-forward's log (the home is shared)."""

    def probe() -> str:
        if not cli.running():
            raise BenchError(f"jupyter-forward exited with code {cli.popen.returncode}")
        since = time.time() - (time.monotonic() - started) - 1
        logs = sorted(jf_dir.glob("log_*.txt")) if jf_dir.is_dir() else []
        for log in (p for p in logs if p.stat().st_mtime >= since):
            if m := re.search(r"/lab\?token=([0-9a-f]+)", log.read_text(errors="replace")):
                return m[1]
        raise NotReady("no URL in jupyter-forward's log yet")

    return wait_until(probe, timeout_s=JF_TIMEOUT_S, what="jupyter-forward's JupyterLab URL",
                      interval_s=0.05, max_interval_s=0.2)  # fmt: skip


def _jf_user_setup(bench: Bench) -> Any:
    """The test user's ~/.ssh/config and ~/.bash_profile for jupyter-forward; a restorer."""
    config = bench.home / ".ssh" / "config"
    base = config.read_text() if config.exists() else bench.sb.paths.ssh_config.read_text()
    files = {
        # paramiko reads ~/.ssh/config; the hop to the gateway is named there (first wins).
        config: "Host gateway\n    ProxyJump login\n\n" + base,
        bench.home / ".bash_profile": f'export PATH="{CLUSTER_VENV}/bin:$PATH"\n',
    }
    saved = {p: p.read_bytes() if p.exists() else None for p in files}
    for path, text in files.items():
        bench.write_user_file(path, text, track=False)

    def restore() -> None:
        for path, old in saved.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)

    bench.on_clean_up(restore)
    return restore
