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


# ------------------------------------------- corrupted and future-version records
def _write(store: SessionStore, session_id: str, text: str) -> Path:
    store.root.mkdir(parents=True, exist_ok=True)
    path = store.root / f"{session_id}.json"
    path.write_text(text)
    return path


def _valid_json(**changes: object) -> str:
    data = _record().to_json()
    data.update(changes)
    return json.dumps(data)


def test_scan_reports_a_record_that_is_not_json(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_record("nt-0000000a", "1"))
    _write(store, "nt-1234abcd", '{"version": 1, "session_id": "nt-1')  # cut short
    records, problems = store.scan()
    assert [r.session_id for r in records] == ["nt-0000000a"]
    assert problems == [
        f"{tmp_path}/nt-1234abcd.json: unreadable record (not JSON); remove it if its job has ended"
    ]
    assert store.all() == records


def test_scan_names_the_file_under_home_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = SessionStore(tmp_path / ".local" / "state" / "nodetunnel" / "sessions")
    _write(store, "nt-1234abcd", "\x00\xff garbage")
    _records, problems = store.scan()
    assert problems == [
        "~/.local/state/nodetunnel/sessions/nt-1234abcd.json: unreadable record (not JSON); "
        "remove it if its job has ended"
    ]


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        pytest.param(_valid_json(jump=5), "field 'jump' should be a list of strings, not 5", id="jump-int"),
        pytest.param(_valid_json(jump=["login", 7]), "field 'jump' should be a list of strings, not [\"login\", 7]", id="jump-item"),
        pytest.param(_valid_json(local_port="8888"), "field 'local_port' should be an integer, not \"8888\"", id="port-str"),
        pytest.param(_valid_json(local_port=True), "field 'local_port' should be an integer, not true", id="port-bool"),
        pytest.param(_valid_json(keep="yes"), "field 'keep' should be true or false, not \"yes\"", id="keep-str"),
        pytest.param(_valid_json(created=None), "field 'created' should be a number, not null", id="created-null"),
        pytest.param(_valid_json(created=float("nan")), "field 'created' should be a number, not NaN", id="created-nan"),
        pytest.param(_valid_json(pid="12"), "field 'pid' should be an integer or null, not \"12\"", id="pid-str"),
        pytest.param(_valid_json(cluster=["a"]), "field 'cluster' should be a string or null, not [\"a\"]", id="cluster-list"),
        pytest.param(_valid_json(session_id="../../x"), "field 'session_id' is not a session id: \"../../x\"", id="bad-id"),
        pytest.param(_valid_json(session_id="nt-ffffffff"), "it names session nt-ffffffff, not nt-0123abcd", id="other-id"),
        pytest.param(json.dumps({"version": 1, "session_id": "nt-0123abcd", "app": "x", "job_id": "1"}), "field 'jump' is missing", id="missing"),
        pytest.param("[1, 2]", "not a JSON object", id="list"),
        pytest.param("", "not JSON", id="empty"),
        pytest.param(_valid_json(version=0), "unknown record version 0", id="version-0"),
        pytest.param(_valid_json(version="1"), 'unknown record version "1"', id="version-str"),
        pytest.param(_valid_json(version=True), "unknown record version true", id="version-bool"),
        pytest.param(json.dumps({"session_id": "nt-0123abcd"}), "unknown record version null", id="no-version"),
    ],
)  # fmt: skip
def test_wrong_fields_are_reported_never_a_type_error_later(
    tmp_path: Path, text: str, cause: str
) -> None:
    store = SessionStore(tmp_path)
    path = _write(store, "nt-0123abcd", text)
    records, problems = store.scan()
    assert records == []
    assert problems == [f"{path}: unreadable record ({cause}); remove it if its job has ended"]
    with pytest.raises(NodetunnelError) as info:
        store.load("nt-0123abcd")
    assert not isinstance(info.value, UsageError)
    assert info.value.message == f"the record of session nt-0123abcd is unreadable: {cause}"
    assert str(path) in (info.value.hint or "")
    assert store.matching("nt-0123abcd") == []


def test_record_of_a_newer_nodetunnel_is_a_readable_problem(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_record("nt-0000000a", "1"))
    path = _write(store, "nt-0123abcd", _valid_json(version=2, new_field={"x": 1}))
    records, problems = store.scan()
    assert [r.session_id for r in records] == ["nt-0000000a"]
    assert problems == [
        f"{path}: written by a newer nodetunnel (record version 2; this one reads version 1); "
        "use that nodetunnel to see or stop its session"
    ]
    with pytest.raises(NodetunnelError, match="written by a newer nodetunnel") as info:
        store.load("nt-0123abcd")
    assert "upgrade" in (info.value.hint or "")


def test_a_file_that_cannot_be_read_is_a_problem(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_record("nt-0000000a", "1"))
    (tmp_path / "nt-0123abcd.json").mkdir()  # read_text fails with an OSError, as without rights
    records, problems = store.scan()
    assert [r.session_id for r in records] == ["nt-0000000a"]
    assert problems == [
        f"{tmp_path}/nt-0123abcd.json: unreadable record (cannot be read: Is a directory); "
        "remove it if its job has ended"
    ]


def test_scan_leaves_files_that_are_not_records_alone(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.save(_record())
    (tmp_path / "nt-notes.json").write_text("my own notes")
    (tmp_path / "nt-0123abcd.log").write_text("log")
    records, problems = store.scan()
    assert [r.session_id for r in records] == ["nt-0123abcd"]
    assert problems == []


def test_scan_of_a_missing_store(tmp_path: Path) -> None:
    assert SessionStore(tmp_path / "nope").scan() == ([], [])


def test_every_field_type_round_trips(tmp_path: Path) -> None:
    # Every field a record has is of a type from_json can check (a new field cannot slip by).
    full = _record(cluster="c", user="u", ssh_includes=["/a b"], walltime_end=1.5, keep=True,
                   pid=1, pid_start=2, tunnel_pid=3, tunnel_start=4, warn_before_s=60,
                   lease_s=300.0, job_check_interval_s=3)  # fmt: skip
    assert SessionRecord.from_json(json.loads(json.dumps(full.to_json()))) == full
    bare = _record()
    assert SessionRecord.from_json(json.loads(json.dumps(bare.to_json()))) == bare


def test_unknown_keys_of_the_same_version_are_ignored(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    _write(store, "nt-0123abcd", _valid_json(added_later="x"))
    assert store.load("nt-0123abcd") == _record(created=store.load("nt-0123abcd").created)


# ------------------------------------------------------------------------ lock
def test_lock_blocks_another_thread(tmp_path: Path) -> None:
    import threading
    import time

    store = SessionStore(tmp_path)
    saved = threading.Event()

    def save() -> None:
        store.save(_record())
        saved.set()

    with store._locked():
        worker = threading.Thread(target=save)
        worker.start()
        assert not saved.wait(0.3)  # blocked while we hold the lock
    assert saved.wait(5)
    worker.join(5)
    assert store.load("nt-0123abcd").job_id == "42"
    started = time.monotonic()
    store.save(_record())  # and free again afterwards
    assert time.monotonic() - started < 1


def test_lock_blocks_another_process(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from nodetunnel.proc import wait_until

    store = SessionStore(tmp_path)
    store.save(_record())  # creates the store and its lock file
    held, release = tmp_path / "held", tmp_path / "release"
    script = (
        "import pathlib, sys, time\n"
        "from nodetunnel.state import SessionStore\n"
        "store = SessionStore(pathlib.Path(sys.argv[1]))\n"
        "with store._locked():\n"
        "    pathlib.Path(sys.argv[2]).touch()\n"
        "    deadline = time.monotonic() + 30\n"
        "    while not pathlib.Path(sys.argv[3]).exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(held), str(release)]
    )
    try:
        wait_until(held.exists, timeout_s=30, what="the other process to take the lock")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("nodetunnel.state.LOCK_TIMEOUT_S", 0.3)
            with pytest.raises(NodetunnelError, match="lock of the session store"):
                store.remove("nt-0123abcd")
        assert store.load("nt-0123abcd")  # not removed: the lock held
        release.touch()
        started = time.monotonic()
        store.remove("nt-0123abcd")  # waits for the other process, then goes ahead
        assert time.monotonic() - started < 10
    finally:
        release.touch()
        holder.wait(timeout=30)
    assert store.all() == []


def test_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from nodetunnel.proc import wait_until

    store = SessionStore(tmp_path)
    held = tmp_path / "held"
    script = (
        "import pathlib, sys, time\n"
        "from nodetunnel.state import SessionStore\n"
        "with SessionStore(pathlib.Path(sys.argv[1]))._locked():\n"
        "    pathlib.Path(sys.argv[2]).touch()\n"
        "    time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(held)])
    try:
        wait_until(held.exists, timeout_s=30, what="the other process to take the lock")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        store.save(_record())  # a lock file left behind does not hold anyone up
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    assert store.load("nt-0123abcd").job_id == "42"


def test_missing_filelock_is_a_prerequisite_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from nodetunnel.errors import PrerequisiteError

    monkeypatch.setitem(sys.modules, "filelock", None)
    with pytest.raises(PrerequisiteError, match="filelock"):
        SessionStore(tmp_path).save(_record())
