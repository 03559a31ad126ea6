"""A session's events on the fakes: the queue while pending, running, ready, the keeper's end."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetunnel import events as ev
from nodetunnel.errors import SchedulerError
from nodetunnel.events import Event, parse_json_output
from nodetunnel.scheduler import JobState, Slurm
from nodetunnel.scheduler.testing import Call, FakeSlurm
from nodetunnel.session import startup
from nodetunnel.transport.testing import FakeTransport

from .test_lifecycle import USER, make_session, publish, runs_after


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    return tmp_path / "run" / "nodetunnel"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"
    FakeTransport(tmp_path / "home").stop_all()  # its fake app servers end with the test


def _mine(fake: FakeSlurm) -> str | None:
    ids = [j for j, job in fake.jobs.items() if job.user == USER]
    return ids[-1] if ids else None


def queue_then_run(ahead: int, *, estimate_after: int, run_after: int):  # type: ignore[no-untyped-def]
    """A hook: ``ahead`` other jobs wait before ours in gpu; after ``estimate_after`` queue
    queries SLURM knows an estimate, after ``run_after`` status queries those jobs are
    gone and ours runs."""
    state = {"queue": 0, "status": 0, "others": []}

    def hook(call: Call, fake: FakeSlurm) -> None:
        if call.program == "sbatch" and not state["others"]:
            state["others"] = [fake.queue_job(partition="gpu") for _ in range(ahead)]
            return
        mine = _mine(fake)
        if call.program != "squeue" or mine is None:
            return
        if "--states=PD" in call.argv:
            state["queue"] += 1
            if state["queue"] > estimate_after:
                fake.jobs[mine].start = "2026-12-02T14:05:00"
            return
        state["status"] += 1
        if state["status"] > run_after and fake.jobs[mine].state is JobState.PENDING:
            for other in state["others"]:
                fake.forget(other)
            fake.start(mine)
            publish(fake, mine)

    return hook


@pytest.fixture
def quick_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "QUEUE_FIRST_S", 0.0)
    monkeypatch.setattr(startup, "QUEUE_EVERY_S", 0.0)


@pytest.mark.usefixtures("quick_queue")
def test_pending_events_say_reason_position_estimate_then_running_and_ready(
    runtime: Path, home: Path
) -> None:
    session, _fake, _ = make_session(home, queue_then_run(2, estimate_after=2, run_after=4))
    seen: list[Event] = []
    session.on_event = seen.append
    with session:
        info = session.start()
    kinds = [e.kind for e in seen]
    assert kinds[0] == ev.SUBMITTED
    assert kinds[-2:] == [ev.RUNNING, ev.READY]
    assert set(kinds[1:-2]) == {ev.PENDING}
    pending = [e.to_json() for e in seen if e.kind == ev.PENDING]
    first, last = pending[0], pending[-1]
    assert first["position"] == 3
    assert first["pending_in_partition"] == 3
    assert first["partition"] == "gpu"
    assert first["reason"] == "Priority"
    assert first["estimated_start"] is None  # N/A at first ...
    assert last["estimated_start"] == "2026-12-02T14:05:00"  # ... asked again, then known
    assert all(e["state"] == "PENDING" and e["job_id"] == info.job_id for e in pending)
    assert all(isinstance(e["elapsed_s"], float) for e in pending)
    # One event per change: no two in a row say the same.
    fields = [{k: v for k, v in e.items() if k != "elapsed_s"} for e in pending]
    assert all(a != b for a, b in itertools.pairwise(fields))
    running, ready = seen[-2].to_json(), seen[-1].to_json()
    assert running["node"] == "node1"
    assert ready["url"] == f"http://127.0.0.1:{info.local_port}/lab"  # no token in an event
    assert ready["app"] == "jupyter"
    assert ready["local_port"] == info.local_port
    assert session.token not in json.dumps([e.to_json() for e in seen])
    lines = [line for line in session.said if "PENDING" in line]  # type: ignore[attr-defined]
    assert f"job {info.job_id}: PENDING (Priority), position 3 of 3 in gpu" in lines[0]
    assert "(waiting " in lines[0]
    assert "expected to start 2026-12-02T14:05:00" in lines[-1]
    assert len(lines) == len(pending)  # the terminal line changes exactly when the event does


def test_the_queue_is_asked_at_a_bounded_rate(
    runtime: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(startup, "QUEUE_FIRST_S", 0.0)
    monkeypatch.setattr(startup, "QUEUE_EVERY_S", 3600.0)  # once, unless the reason changes
    session, fake, _ = make_session(home, queue_then_run(1, estimate_after=99, run_after=4))
    with session:
        session.start()
    queue_asks = [c for c in fake.calls if "--states=PD" in c.argv]
    status_asks = [c for c in fake.calls if c.program == "squeue" and "--states=PD" not in c.argv]
    assert len(queue_asks) == 1
    assert len(status_asks) >= 4


def test_a_job_that_starts_at_once_never_asks_the_queue(runtime: Path, home: Path) -> None:
    session, fake, _ = make_session(home, runs_after(1))
    seen: list[Event] = []
    session.on_event = seen.append
    with session:
        session.start()
    assert not [c for c in fake.calls if "--states=PD" in c.argv]  # QUEUE_FIRST_S not reached
    assert [e.kind for e in seen][-2:] == [ev.RUNNING, ev.READY]


@pytest.mark.usefixtures("quick_queue")
def test_a_failing_queue_query_does_not_fail_the_start(runtime: Path, home: Path) -> None:
    class Broken(Slurm):
        def pending_info(self, job_id: str):  # type: ignore[no-untyped-def]
            raise SchedulerError("squeue timed out")

    session, fake, _ = make_session(home, runs_after(3))
    session.scheduler = Broken(fake)
    seen: list[Event] = []
    session.on_event = seen.append
    with session:
        session.start()
    pending = [e for e in seen if e.kind == ev.PENDING]
    assert pending
    assert all(e.get("position") is None for e in pending)


def test_events_are_json_with_the_documented_fields() -> None:
    event = Event(ev.PENDING, "nt-12345678", "42", {"reason": "Resources", "position": 3})
    data = json.loads(event.json_line())
    assert data == {"event": "pending", "session_id": "nt-12345678", "job_id": "42",
                    "reason": "Resources", "position": 3}  # fmt: skip
    assert "\n" not in event.json_line()
    with pytest.raises(ValueError, match="unknown event kind"):
        Event("exploded", "nt-1")


def test_parse_json_output_splits_events_from_the_result() -> None:
    lines = [Event(k, "nt-1", "7").json_line() for k in (ev.SUBMITTED, ev.PENDING, ev.READY)]
    result = {"session_id": "nt-1", "url": "http://127.0.0.1:8888/lab?token=x"}
    text = "\n".join(lines) + "\n" + json.dumps(result, indent=2) + "\n"
    events, found = parse_json_output(text)
    assert [e["event"] for e in events] == ["submitted", "pending", "ready"]
    assert found == result
    assert parse_json_output(json.dumps([1, 2]))[1] == [1, 2]  # list --json, as before
    with pytest.raises(ValueError, match="no result"):
        parse_json_output("\n".join(lines))
    with pytest.raises(ValueError, match="Expecting value"):
        parse_json_output(lines[0] + '\n{"session_id": ')  # not whole yet


# ------------------------------------------------------------------- the keeper's events
def test_walltime_warning_and_an_unexpected_end_are_events(runtime: Path, home: Path) -> None:
    seen: list[Event] = []

    def hook(call: Call, fake: FakeSlurm) -> None:
        runs_after(0, time_left="0:30")(call, fake)
        if any(e.kind == ev.WALLTIME_WARNING for e in seen):
            fake.finish(max(fake.jobs), JobState.TIMEOUT)

    session, _fake, _ = make_session(home, hook, job_check_interval_s=0.2, warn_before_s=60.0)
    session.on_event = seen.append
    with session:
        info = session.start()
        why = session.watch()
    (warning,) = [e for e in seen if e.kind == ev.WALLTIME_WARNING]
    assert 0 <= warning.get("time_left_s") <= 30
    assert warning.get("message").startswith(f"job {info.job_id} reaches its time limit")
    ended = seen[-1]
    assert ended.kind == ev.ENDED
    assert ended.to_json() == {"event": "ended", "session_id": session.session_id,
                               "job_id": info.job_id, "state": "TIMEOUT", "expected": False,
                               "message": why}  # fmt: skip


def test_a_cancel_is_an_expected_end(runtime: Path, home: Path) -> None:
    seen: list[Event] = []

    def hook(call: Call, fake: FakeSlurm) -> None:
        runs_after(0)(call, fake)
        if any(e.kind == ev.READY for e in seen):
            fake.finish(max(fake.jobs), JobState.CANCELLED)

    session, _fake, _ = make_session(home, hook, job_check_interval_s=0.2, warn_before_s=None)
    session.on_event = seen.append
    with session:
        session.start()
        session.watch()
    assert seen[-1].kind == ev.ENDED
    assert seen[-1].get("expected") is True
    assert seen[-1].get("state") == "CANCELLED"
    assert not [e for e in seen if e.kind == ev.WALLTIME_WARNING]
