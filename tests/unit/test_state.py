"""The session store: atomic 0600 records, lookup by id, prefix or job id."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nodetunnel.errors import NodetunnelError, UsageError
from nodetunnel.state import SessionRecord, SessionStore


def _record(session_id: str = "nt-0123abcd", job_id: str = "42", **kw: object) -> SessionRecord:
    return SessionRecord(
        session_id=session_id, app="jupyter", job_id=job_id, jump=["login", "gateway"],
        url="http://127.0.0.1:8888/lab?token=SECRET", token="SECRET", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_save_load_round_trip_with_private_files(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    rec = _record(node="node1", local_port=8888)
    store.save(rec)
    path = tmp_path / "sessions" / "nt-0123abcd.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "sessions").stat().st_mode) == 0o700
    assert store.load("nt-0123abcd") == rec
    assert not list((tmp_path / "sessions").glob("*.tmp"))  # written by rename, nothing left


def test_job_check_interval_is_kept_and_old_records_still_load(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_record(job_check_interval_s=5.0))
    assert store.load("nt-0123abcd").job_check_interval_s == 5.0
    data = json.loads((tmp_path / "nt-0123abcd.json").read_text())
    del data["job_check_interval_s"]  # written before the setting existed
    (tmp_path / "nt-0123abcd.json").write_text(json.dumps(data))
    assert store.load("nt-0123abcd").job_check_interval_s is None


def test_public_view_has_no_token(tmp_path: Path) -> None:
    data = _record().public()
    assert "token" not in data
    assert "SECRET" not in json.dumps(data)
    assert data["url"] == "http://127.0.0.1:8888/lab"


def test_find_by_id_prefix_and_job_id(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_record("nt-0123abcd", "42"))
    store.save(_record("nt-0199ffff", "43"))
    assert store.find("nt-0123abcd").job_id == "42"
    assert store.find("nt-019").job_id == "43"
    assert store.find("43").session_id == "nt-0199ffff"
    with pytest.raises(UsageError, match="several sessions"):
        store.find("nt-01")
    with pytest.raises(UsageError, match="no session 'nt-ffff'") as exc:
        store.find("nt-ffff")
    assert "nodetunnel list" in (exc.value.hint or "")


def test_remove_and_all(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    assert store.all() == []
    store.save(_record("nt-0000000a", "1", created=2.0))
    store.save(_record("nt-0000000b", "2", created=1.0))
    assert [r.session_id for r in store.all()] == ["nt-0000000b", "nt-0000000a"]
    store.remove("nt-0000000a")
    store.remove("nt-0000000a")  # already gone: fine
    assert [r.session_id for r in store.all()] == ["nt-0000000b"]


def test_bad_ids_and_unreadable_records(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    with pytest.raises(UsageError, match="not a session id"):
        store.load("../../etc/passwd")
    (tmp_path / "nt-0123abcd.json").write_text('{"version": 99}')
    with pytest.raises(NodetunnelError, match="unreadable"):
        store.load("nt-0123abcd")
    assert store.all() == []  # skipped, not fatal


def test_matching_is_find_without_the_errors(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_record("nt-0123abcd", "101"))
    store.save(_record("nt-0123ffff", "102"))
    assert [r.job_id for r in store.matching("nt-0123")] == ["101", "102"]
    assert [r.job_id for r in store.matching("102")] == ["102"]
    assert store.matching("nt-9") == []


def test_logs_of_gone_sessions_are_pruned_when_old(tmp_path: Path) -> None:
    import os
    import time

    store = SessionStore(tmp_path)
    store.save(_record("nt-0123abcd", "101"))
    live, gone_old, gone_new = (store.log_path(i) for i in ("nt-0123abcd", "nt-00000001",
                                                            "nt-00000002"))  # fmt: skip
    for log in (live, gone_old, gone_new):
        log.write_text("x\n")
    week_ago = time.time() - 8 * 24 * 3600
    for log in (live, gone_old):
        os.utime(log, (week_ago, week_ago))
    store.prune_logs(max_age_s=7 * 24 * 3600)
    assert live.exists()  # its session is still there
    assert not gone_old.exists()
    assert gone_new.exists()  # recent: it may tell why the session ended
    store.remove_log("nt-00000002")
    assert not gone_new.exists()
