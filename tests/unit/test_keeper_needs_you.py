"""A keeper that would need a login it cannot do (MFA, no terminal) stops and says so."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nodetunnel.errors import SshError, TunnelError
from nodetunnel.session import keeper
from nodetunnel.state import SessionRecord, SessionStore

REFUSED = SshError(["ssh"], 255, "x@1.2.3.4: Permission denied (keyboard-interactive).",
                   message="authentication failed at login (keyboard-interactive) on the way "
                   "login -> gateway: Permission denied")  # fmt: skip


def _session(tmp_path: Path, *, keep: bool = True) -> Any:
    store = SessionStore(tmp_path / "sessions")
    record = SessionRecord(session_id="nt-0000beef", app="jupyter", job_id="7", jump=["login"],
                           pid=123, pid_start=456)  # fmt: skip
    store.save(record)
    return SimpleNamespace(req=SimpleNamespace(keep=keep), session_id=record.session_id,
                           store=store, record=record)  # fmt: skip


def test_a_refused_login_without_a_terminal_needs_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keeper, "has_terminal", lambda: False)
    session = _session(tmp_path)
    with pytest.raises(keeper.NeedsYou) as info:
        keeper.needs_you(session, REFUSED)
    assert info.value.hint == "run 'nodetunnel attach nt-0000beef'"
    keeper.needs_you(session, TunnelError("the tunnel dropped"))  # not a login: retried
    keeper.needs_you(_session(tmp_path, keep=False), REFUSED)  # a foreground session: its own
    monkeypatch.setattr(keeper, "has_terminal", lambda: True)
    keeper.needs_you(session, REFUSED)  # a terminal can answer: the login is retried there


def test_watch_records_needs_you_and_keeps_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _session(tmp_path)

    def refused(_session: Any, *, poll_s: float) -> tuple[str, Any, bool]:
        raise keeper.NeedsYou("authentication failed at login (keyboard-interactive)")

    monkeypatch.setattr(keeper, "keep_up", refused)
    why = keeper.watch(session)
    assert "needs you" in why
    assert "nodetunnel attach nt-0000beef" in why
    saved = session.store.load("nt-0000beef")
    assert saved.needs == "attach"
    assert dataclasses.replace(saved, needs="") == dataclasses.replace(session.record, needs="")


def test_a_reconnect_whose_tunnel_needs_a_code_needs_the_user_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without connection sharing the tunnel logs in itself, and a keeper cannot type a code.
    from nodetunnel.proc import Completed
    from nodetunnel.transport.sshfailures import translate_ssh_failure

    monkeypatch.setattr(keeper, "has_terminal", lambda: False)
    asks = translate_ssh_failure(["ssh"], Completed(["ssh"], 255, "", "u@login: Permission "
                                 "denied (keyboard-interactive).\n", 0.0), ["login"],
                                 prompt=False)  # fmt: skip
    tries: list[int] = []

    def open_tunnel(port: int, *, reach_timeout_s: float) -> None:
        tries.append(port)
        raise asks

    session = _session(tmp_path)
    session.tunnel = SimpleNamespace(stop_quietly=lambda: None, open=open_tunnel)
    session._notice = lambda text: None
    session.reconnect_timeout_s = 600
    session.req.lease_s = None
    monkeypatch.setattr(keeper, "job_finished", lambda *a: pytest.fail("no need to ask"))
    info = SimpleNamespace(local_port=8888, job_id="7")
    with pytest.raises(keeper.NeedsYou) as info_exc:
        keeper.reconnect(session, info)  # type: ignore[arg-type]
    assert tries == [8888]  # one try, no more logins that cannot succeed
    assert info_exc.value.message.startswith("authentication at login asks for a one-time code")


def test_list_says_the_session_needs_you_until_a_keeper_holds_it_again(tmp_path: Path) -> None:
    from nodetunnel.scheduler.base import JobState, JobStatus
    from nodetunnel.session import fleet

    store = SessionStore(tmp_path / "sessions")
    record = SessionRecord(session_id="nt-0000beef", app="jupyter", job_id="7", jump=["login"],
                           needs="attach")  # fmt: skip
    store.save(record)
    running = {"7": ("", JobStatus("7", JobState.RUNNING, time_left_s=600))}
    row = fleet._reconciled(store, record, running, "")
    assert row.state == "RUNNING"
    assert row.problem == "needs you: run `nodetunnel attach nt-0000beef`"
    assert not fleet._reconciled(store, dataclasses.replace(record, needs=""), running, "").problem
