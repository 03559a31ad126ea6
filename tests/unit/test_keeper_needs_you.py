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
