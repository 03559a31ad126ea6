"""``nodetunnel dashboard`` on the mini-cluster, in a headless Chromium.

One walk through what a researcher does: two sessions listed with their
states (one pending behind another user's jobs, with SLURM's reason), the
pending one turning RUNNING without a reload, a third started from the form
after its dry-run preview, Open reaching JupyterLab, Stop ending a job and
its card, a wrong key refused, and no request leaving 127.0.0.1. Screenshots
go to ``artifacts/``; page load and update latency are printed (``-s``) and
written to ``artifacts/dashboard-timings.json``.
"""

from __future__ import annotations

import json
import time

from .helpers import (
    ALICE,
    ARTIFACTS,
    BOB,
    CLUSTER_VENV,
    Cli,
    as_user,
    end_leftovers,
    jupyter_argv,
    result_json,
    sbatch,
    squeue,
    wait_job,
)

REFRESH_S = 2.0  # the dashboard's query interval here (15 s by default)


def _card(page, state: str, timeout_ms: float = 60_000):
    return page.wait_for_selector(f'.card[data-state="{state}"]', timeout=timeout_ms)


def test_dashboard_lists_starts_updates_opens_and_stops(sandbox, laptop_nodetunnel, chromium):
    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    board = Cli(ALICE, [*laptop_nodetunnel, "dashboard", "--no-browser", "--json",
                        "--cluster", "sandbox", "--refresh-s", str(REFRESH_S)])  # fmt: skip
    waiting: Cli | None = None
    context = None
    try:
        info = board.read_json(timeout_s=30)
        url, port = str(info["url"]), int(info["port"])  # type: ignore[call-overload]
        base = f"http://127.0.0.1:{port}"
        # Session A: a detached JupyterLab, RUNNING.
        # (8 min: within the walltime warning's 10, so its bar shows the warning)
        started = as_user(ALICE, jupyter_argv(laptop_nodetunnel, "--detach", "--time", "8"),
                          timeout_s=120)  # fmt: skip
        assert started.returncode == 0, started.stderr
        first = result_json(started.stdout)
        # Bob's jobs take both GPUs: alice's GPU session (B) waits for Resources.
        bobs = [sbatch(sandbox, BOB, "-p", "gpu", "--gres=gpu:1", "--time=5", "--wrap",
                       "sleep 600") for _ in range(2)]  # fmt: skip
        for job in bobs:
            wait_job(sandbox, job, {"RUNNING"})
        waiting = Cli(ALICE, jupyter_argv(laptop_nodetunnel, "-p", "gpu", "--gres", "gpu:1",
                                          "--time", "20", "--detach"))  # fmt: skip

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        t0 = time.monotonic()
        page.goto(url)
        timings["page_loaded_s"] = time.monotonic() - t0  # the load event, before any card
        page.wait_for_selector(f'.card[data-id="{first["session_id"]}"]', timeout=30_000)
        timings["page_with_cards_s"] = time.monotonic() - t0
        assert page.url == f"{base}/"  # the key has left the address bar
        pending = _card(page, "PENDING")
        b_id = pending.get_attribute("data-id")
        page.wait_for_function(
            "id => document.querySelector(`.card[data-id='${id}'] .pending`)"
            "?.textContent.includes('reason: Resources')", arg=b_id, timeout=30_000)  # fmt: skip
        cards = {c.get_attribute("data-id"): c.get_attribute("data-state")
                 for c in page.query_selector_all(".card")}  # fmt: skip
        assert cards == {first["session_id"]: "RUNNING", b_id: "PENDING"}
        # SLURM's estimate comes with its backfill pass (every 30 s here), live too.
        t_estimate = time.monotonic()
        page.wait_for_function(
            "id => !document.querySelector(`.card[data-id='${id}'] .pending`)"
            "?.textContent.includes('not known yet')", arg=b_id, timeout=60_000)  # fmt: skip
        timings["estimate_shown_after_s"] = time.monotonic() - t_estimate
        pending_text = page.inner_text(f'.card[data-id="{b_id}"] .pending')
        assert "estimated start: 20" in pending_text, pending_text  # a date, e.g. 2026-12-02T...
        # Bob's two jobs run, so alice's is the only one waiting in gpu.
        assert "place in queue: 1 of 1" in pending_text, pending_text
        # The README's picture (docs/dashboard.png): one running, one pending.
        page.screenshot(path=str(ARTIFACTS / "dashboard-pending.png"))

        # The partition frees up: the card turns RUNNING live, without a reload.
        page.evaluate("window.notReloaded = true")
        changed = time.monotonic()
        sandbox.run_in("gateway", ["scancel", "--user", BOB])
        page.wait_for_selector(f'.card[data-id="{b_id}"][data-state="RUNNING"]', timeout=60_000)
        timings["pending_to_running_on_page_s"] = time.monotonic() - changed
        timings["event_after_query_ms"] = page.evaluate("window.nodetunnelLastUpdate.lagMs")
        assert page.evaluate("window.notReloaded") is True
        # ... and "What happened" says so (the event nodetunnel notifies of).
        page.wait_for_function(
            "id => [...document.querySelectorAll('#events li')].some(li => "
            "li.textContent.includes(`${id}: job `) && li.textContent.includes(' started on '))",
            arg=b_id, timeout=10_000)  # fmt: skip
        second = waiting.read_json(timeout_s=90)
        assert second["session_id"] == b_id

        # Session C from the form: the dry run first, then Start.
        page.click("a[href='/new']")
        page.select_option("#f-cluster", "sandbox")
        page.wait_for_url(f"{base}/new?cluster=sandbox&app=jupyter")
        page.fill("#f-venv", "")
        page.fill("#f-cpus_per_task", "zero")
        page.click("#preview")
        page.wait_for_selector("#err-cpus_per_task:has-text('must be a positive integer')")
        page.fill("#f-cpus_per_task", "")
        page.fill("#f-venv", str(CLUSTER_VENV))
        page.fill("#f-time", "30")
        page.click("#preview")
        page.wait_for_selector("#preview-out:has-text('#SBATCH --job-name=nodetunnel-jupyter-')")
        assert str(CLUSTER_VENV) in page.inner_text("#preview-out")
        page.screenshot(path=str(ARTIFACTS / "dashboard-new-session.png"), full_page=True)
        page.click("#start")
        page.wait_for_url(f"{base}/#nt-*")
        c_id = page.url.rsplit("#", 1)[1]
        page.wait_for_selector(f'.card[data-id="{c_id}"] [data-act="open"]', timeout=90_000)
        assert page.get_attribute(f'.card[data-id="{c_id}"]', "data-state") == "RUNNING"
        page.wait_for_timeout(300)  # the time bars' first tick, for the screenshot
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=str(ARTIFACTS / "dashboard-dark.png"))
        page.emulate_media(color_scheme="light")

        # Open reaches the app, through its tunnel, with its token.
        with context.expect_page() as opened:
            page.click(f'.card[data-id="{c_id}"] [data-act="open"]')
        lab = opened.value
        lab.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        assert lab.url.startswith("http://127.0.0.1:")
        assert "/lab" in lab.url
        lab.close()
        # Logs: the job's log, read from the cluster and followed.
        with context.expect_page() as opened:
            page.click(f'.card[data-id="{c_id}"] [data-act="logs"]')
        log = opened.value
        log.wait_for_selector("#log-status:has-text('following')", timeout=30_000)
        assert log.inner_text("#log").strip()
        log.close()

        # Stop, by keyboard, after the confirmation: the job ends and the card goes.
        page.focus(f'.card[data-id="{first["session_id"]}"] [data-act="stop"]')
        page.keyboard.press("Enter")
        page.click("#confirm-yes")
        t_stop = time.monotonic()
        page.wait_for_selector(f'.card[data-id="{first["session_id"]}"]', state="detached",
                               timeout=30_000)  # fmt: skip
        timings["stop_to_card_gone_s"] = time.monotonic() - t_stop
        left = [ln for ln in squeue(sandbox) if ln.split()[0] == first["job_id"]]
        assert all(ln.split()[2] in ("COMPLETING", "CANCELLED") for ln in left), left

        # A wrong key, or none, is refused.
        stranger = chromium.new_context()
        try:
            assert stranger.new_page().goto(f"{base}/?key=wrong").status == 403
            assert stranger.new_page().goto(f"{base}/").status == 403
        finally:
            stranger.close()
        # Nothing was loaded from anywhere but this machine.
        outside = [u for u in requests if not u.startswith("http://127.0.0.1:")]
        assert not outside, outside
        assert any(u.startswith(f"{base}/static/") for u in requests)
        timings["refresh_interval_s"] = REFRESH_S
        timings["pending_text"] = pending_text  # type: ignore[assignment]
        (ARTIFACTS / "dashboard-timings.json").write_text(json.dumps(timings, indent=2))
        print("dashboard timings:", json.dumps(timings))
    finally:
        if context is not None:
            context.close()
        as_user(ALICE, [*laptop_nodetunnel, "stop", "--all"], timeout_s=60)
        if waiting is not None and waiting.proc.poll() is None:
            waiting.stop()
        if board.proc.poll() is None:
            board.interrupt()
        end_leftovers(ALICE)
