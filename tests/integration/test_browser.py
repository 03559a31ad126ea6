"""What the researcher sees: JupyterLab through the tunnel in a real (headless) Chromium.

The screenshot is kept as a test artifact in ``artifacts/``.
"""

from __future__ import annotations

from .helpers import ALICE, ARTIFACTS, EXECUTE_JS, Cli, jupyter_argv


def test_jupyterlab_renders_and_a_kernel_runs_code(sandbox, laptop_nodetunnel, chromium):
    cli = Cli(ALICE, jupyter_argv(laptop_nodetunnel, "-p", "gpu", "--gres", "gpu:1"))
    try:
        info = cli.read_json()
        url = str(info["url"])
        token = url.split("token=", 1)[1]
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url, timeout=60_000)
        # The JupyterLab shell and its launcher are in the DOM.
        page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        page.wait_for_selector(".jp-Launcher", timeout=60_000)
        assert "JupyterLab" in page.title()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab.png"))
        result = page.evaluate(
            EXECUTE_JS, [token, "import os\nprint(6 * 7, os.environ.get('SLURM_JOB_ID'))", None]
        )
        assert result["printed"] == f"42 {info['job_id']}\n"
        page.close()
    except BaseException:
        cli.stop()
        raise
    assert cli.interrupt() == 130
