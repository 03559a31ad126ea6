"""The mini-cluster fixture for integration tests.

In CI (``CI=true``) a sandbox that cannot start fails the run; elsewhere the
integration tests are skipped with the reason (not root, packages missing).
The sandbox is always torn down at the end of the session, also on failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetunnel.errors import PrerequisiteError
from nodetunnel.proc import wait_until
from nodetunnel.sandbox.cluster import Sandbox, check_prerequisites
from nodetunnel.sandbox.topology import Paths

from .helpers import ALICE, BOB, squeue

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def _sandbox_session() -> Iterator[Sandbox]:
    try:
        check_prerequisites()
    except PrerequisiteError as exc:
        msg = f"mini-cluster unavailable: {exc.message} ({exc.hint})"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    sb = Sandbox(Paths(), node_count=2)
    try:
        sb.up()
        yield sb
    finally:
        sb.down()


@pytest.fixture
def sandbox(_sandbox_session: Sandbox) -> Iterator[Sandbox]:
    """A healthy mini-cluster (re-built if a test took it down); no jobs left after the test."""
    sb = _sandbox_session
    if not sb.status().up:
        sb.up()
    yield sb
    if sb.status().up:
        sb.run_in("gateway", ["scancel", "--user", ALICE])
        sb.run_in("gateway", ["scancel", "--user", BOB])
        wait_until(lambda: not squeue(sb), timeout_s=30, what="the test's jobs to end")
