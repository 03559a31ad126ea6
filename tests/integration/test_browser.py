"""What the researcher sees: JupyterLab through the tunnel in a real (headless) Chromium.

The screenshot is kept as a test artifact in ``artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import IN_CI
from .helpers import ALICE, Cli, jupyter_argv

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# Flags for a closed network: no background requests that would only be refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# Runs in the page (same origin as JupyterLab): start a kernel over the REST API,
# then execute code over the kernel's websocket and return what it printed.
EXECUTE_JS = """
async ([token, code]) => {
  const headers = {Authorization: 'token ' + token, 'Content-Type': 'application/json'};
  const kernel = await (await fetch('/api/kernels', {method: 'POST', headers, body: '{}'})).json();
  const ws = new WebSocket(
    `ws://${location.host}/api/kernels/${kernel.id}/channels?token=${token}`);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const msgId = 'nodetunnel-test-' + Date.now();
  const request = {
    header: {msg_id: msgId, username: 'test', session: 'nodetunnel-test',
             msg_type: 'execute_request', version: '5.3', date: new Date().toISOString()},
    parent_header: {}, metadata: {}, channel: 'shell', buffers: [],
    content: {code, silent: false, store_history: false, user_expressions: {},
              allow_stdin: false, stop_on_error: true},
  };
  const printed = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no output within 60 s')), 60000);
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.parent_header.msg_id !== msgId) return;
      if (msg.msg_type === 'stream') { clearTimeout(timer); resolve(msg.content.text); }
      if (msg.msg_type === 'error') { clearTimeout(timer); reject(new Error(msg.content.evalue)); }
    };
    ws.send(JSON.stringify(request));
  });
  ws.close();
  return {printed, kernel: kernel.id};
}
"""


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} missing: run ./scripts/setup"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed: run ./scripts/setup", pytrace=False)
        pytest.skip("playwright is not installed: run ./scripts/setup")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


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
            EXECUTE_JS, [token, "import os\nprint(6 * 7, os.environ.get('SLURM_JOB_ID'))"]
        )
        assert result["printed"] == f"42 {info['job_id']}\n"
        page.close()
    except BaseException:
        cli.stop()
        raise
    assert cli.interrupt() == 130
