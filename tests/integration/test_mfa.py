"""Sites with MFA: the login host asks for a key and a TOTP code, answered on a terminal.

The sandbox's login host is switched to MFA (``sandbox mfa``) for this module
only, and back afterwards. Each test drives nodetunnel on a pseudo-terminal
and answers its prompts like a person (the current code, never one already
used: a second login waits for the next 30 s step), counting the prompts on
the terminal and the logins in the login host's sshd log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pexpect
import pytest

from nodetunnel.errors import ExitCode
from nodetunnel.proc import NotReady, wait_until
from nodetunnel.sandbox.cluster import Sandbox

from .helpers import (
    ALICE,
    BOB,
    as_user,
    end_leftovers,
    job_state,
    jupyter_argv,
    result_json,
    runtime_dir,
    squeue,
    state_dir,
    user_processes,
)
from .mfa_driver import Phone, SshdLog, answer_until, run_to_end, spawn
from .test_jupyter import http_status


@pytest.fixture(scope="module")
def _mfa_on(_sandbox_session: Sandbox) -> Iterator[dict[str, Phone]]:
    sb = _sandbox_session
    if not sb.status().up:
        sb.up()
    sb.enable_mfa()
    try:
        yield {u: Phone(sb, u) for u in (ALICE, BOB)}
    finally:
        if sb.status().up:
            sb.disable_mfa()


@pytest.fixture
def mfa(sandbox: Sandbox, _mfa_on: dict[str, Phone]) -> Iterator[dict[str, Phone]]:
    """The sandbox with MFA at the login host; each test user's phone."""
    yield _mfa_on
    for user in (ALICE, BOB):
        end_leftovers(user)


def _nothing_left(sb: Sandbox, user: str) -> None:
    wait_until(lambda: squeue(sb) == [], timeout_s=30, what="the job to be gone")
    wait_until(lambda: user_processes(user) == [], timeout_s=15,
               what="no nodetunnel, tunnel or shared connection left")  # fmt: skip
    assert not list(state_dir(user).glob("nt-*.json")) if state_dir(user).is_dir() else True


def test_foreground_one_slow_prompt_and_ctrl_c_costs_no_login(sandbox, mfa, laptop_nodetunnel):
    """Start (the code typed 25 s after the prompt) -> use -> Ctrl-C: 1 prompt, 1 login."""
    log = SshdLog(sandbox, ALICE)
    started = time.monotonic()
    run = spawn(ALICE, jupyter_argv(laptop_nodetunnel))
    # The result's URL (the progress events before it carry none with the token).
    answer_until(run, mfa[ALICE], r'"url": "http://127\.0\.0\.1:(\d+)/[^"?]*\?token=([^"]+)"',
                 delay_s=25, timeout_s=150)  # fmt: skip
    port, token = int(run.child.match.group(1)), run.child.match.group(2)
    start_s = time.monotonic() - started
    assert http_status(port, "/api/status", token) == 200
    assert (run.prompts, log.since().prompts, log.since().logins) == (1, 1, 1), run.output
    log.mark()
    gateway = sandbox.paths.log_dir / "sshd-gateway.log"
    gateway_at = gateway.stat().st_size
    run.child.sendintr()  # Ctrl-C on the terminal: the whole foreground group gets SIGINT
    answer_until(run, mfa[ALICE], pexpect.EOF, timeout_s=60)
    assert run.exitstatus == ExitCode.INTERRUPTED, run.output
    assert run.prompts == 1, run.output  # none at the clean-up
    after = log.since()
    assert (after.prompts, after.logins) == (0, 0)
    # Nor at the inner hop: its ProxyJump helper survived the Ctrl-C.
    with gateway.open("rb") as f:
        f.seek(gateway_at)
        assert f"Accepted publickey for {ALICE}".encode() not in f.read()
    _nothing_left(sandbox, ALICE)
    print(f"foreground: start {start_s:.1f} s (answer after 25 s), 1 prompt, clean-up 0 logins")


def test_wrong_code_is_named_and_leaves_nothing(sandbox, mfa, laptop_nodetunnel):
    log = SshdLog(sandbox, BOB)
    run = run_to_end(BOB, jupyter_argv(laptop_nodetunnel), mfa[BOB], wrong=True, timeout_s=90)
    assert run.exitstatus == ExitCode.CONNECTION, run.output
    assert "authentication failed at login (keyboard-interactive)" in run.output, run.output
    assert "Traceback" not in run.output
    seen = log.since()
    assert run.prompts >= 1
    assert (seen.logins, seen.failures) == (0, run.prompts)
    _nothing_left(sandbox, BOB)


HOSTILE_CONFIG = "\nHost login\n    RemoteCommand tmux new -A\n    RequestTTY yes\n"


def test_detached_lifecycle_costs_one_prompt(sandbox, mfa, laptop_nodetunnel):
    """--detach, 3x list, logs, open, stop: one prompt in all, with a tmux-starting ssh config."""
    user_config = sandbox.paths.user_home(ALICE) / ".ssh" / "config"
    before = user_config.read_text()
    user_config.write_text(before + HOSTILE_CONFIG)
    base, phone = laptop_nodetunnel, mfa[ALICE]
    log = SshdLog(sandbox, ALICE)
    counts: dict[str, int] = {}
    try:
        run = run_to_end(ALICE, jupyter_argv(base, "--detach"), phone)
        assert run.exitstatus == 0, run.output
        info = result_json(run.output[run.output.index("{") :])
        sid, port = str(info["session_id"]), int(info["local_port"])
        token = str(info["url"]).split("token=", 1)[1]
        assert http_status(port, "/api/status", token) == 200
        counts["start --detach"] = run.prompts
        for i in range(3):
            run = run_to_end(ALICE, [*base, "list", "--json"], phone)
            assert run.exitstatus == 0, run.output
            assert sid in run.output
            counts[f"list {i + 1}"] = run.prompts
        no_browser = ["env", "BROWSER=true"]  # 'open' hands the page to $BROWSER
        for step in (["logs", sid], ["open", sid], ["stop", sid]):
            run = run_to_end(ALICE, [*no_browser, *base, *step], phone)
            assert run.exitstatus == 0, run.output
            counts[step[0]] = run.prompts
        print("detached lifecycle prompts per step:", counts)
        assert sum(counts.values()) == 1, counts
        assert log.since().logins == 1
        _nothing_left(sandbox, ALICE)
    finally:
        user_config.write_text(before)


def test_a_keeper_that_needs_a_code_stops_and_attach_hands_back(sandbox, mfa, laptop_nodetunnel):
    """The shared connections drop under a detached keeper: it cannot answer MFA, so it says
    "needs you" and stops; the job runs on; `attach` logs in once and a keeper takes over."""
    base, phone = laptop_nodetunnel, mfa[BOB]
    run = run_to_end(BOB, jupyter_argv(base, "--detach"), phone)
    assert run.exitstatus == 0, run.output
    info = result_json(run.output[run.output.index("{") :])
    sid, job_id = str(info["session_id"]), str(info["job_id"])
    record_path = state_dir(BOB) / f"{sid}.json"
    dropped = time.monotonic()
    for sock in runtime_dir(BOB).glob("c-*/*"):  # the connections die (as in a network drop)
        if sock.is_socket():
            as_user(BOB, ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"])

    def waiting() -> dict[str, object]:
        record = json.loads(record_path.read_text())
        if record.get("needs") != "attach" or record.get("pid") is not None:
            raise NotReady(f"record: needs={record.get('needs')!r} pid={record.get('pid')}")
        return record

    wait_until(waiting, timeout_s=60, what="the keeper to say it needs the user")
    gave_up_s = time.monotonic() - dropped
    assert job_state(sandbox, job_id)["JobState"] == "RUNNING"
    log = SshdLog(sandbox, BOB)
    run = run_to_end(BOB, jupyter_attach(base, sid), phone)
    assert run.exitstatus == 0, run.output
    assert run.prompts == 1, run.output
    keeper = json.loads(record_path.read_text())
    assert keeper["pid"], keeper  # a keeper again
    assert keeper["needs"] == "", keeper
    again = result_json(run.output[run.output.index("{") :])
    token = str(again["url"]).split("token=", 1)[1]
    assert http_status(int(again["local_port"]), "/api/status", token) == 200
    run = run_to_end(BOB, [*base, "stop", sid], phone)
    assert (run.exitstatus, run.prompts) == (0, 0), run.output
    assert log.since().logins == 1
    _nothing_left(sandbox, BOB)
    print(f"keeper gave up {gave_up_s:.1f} s after the drop; attach: 1 prompt; stop: 0")


def jupyter_attach(base: list[str], sid: str) -> list[str]:
    return [*base, "attach", sid, "--no-browser", "--json"]
