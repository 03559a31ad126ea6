"""The mini-cluster fixture for integration tests.

In CI (``CI=true``) a sandbox that cannot start fails the run; elsewhere the
integration tests are skipped with the reason (not root, packages missing).
The sandbox is always torn down at the end of the session, also on failure.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetunnel.errors import PrerequisiteError
from nodetunnel.proc import NotReady, wait_until
from nodetunnel.sandbox.cluster import Sandbox, check_prerequisites
from nodetunnel.sandbox.topology import Paths

from .helpers import ALICE, BOB, CLUSTER_VENV, LAPTOP_VENV, squeue

SRC = Path(__file__).resolve().parents[2] / "src"

IN_CI = os.environ.get("CI", "").lower() == "true"
# The machine has one sandbox: test runs from several checkouts take turns.
SANDBOX_LOCK = Path("/run/lock/nodetunnel-sandbox-tests.lock")


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
    lock = os.open(SANDBOX_LOCK, os.O_RDWR | os.O_CREAT, 0o600)

    def take() -> bool:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NotReady(f"another test run holds {SANDBOX_LOCK}") from None
        return True

    sb = Sandbox(Paths(), node_count=2)
    try:
        wait_until(take, timeout_s=3600, what="the sandbox to be free", interval_s=1,
                   max_interval_s=5)  # fmt: skip
    except BaseException:
        os.close(lock)
        raise
    try:
        sb.up()
        yield sb
    finally:
        # The test users' laptop-side runtime dirs (their sessions' dirs are gone already).
        uids = [pwd.getpwnam(u).pw_uid for u in (ALICE, BOB) if _exists(u)]
        sb.down()
        for uid in uids:
            shutil.rmtree(f"/tmp/nodetunnel-{uid}", ignore_errors=True)
        os.close(lock)


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


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
        for user in (ALICE, BOB):  # and their laptop-side session records
            shutil.rmtree(sb.paths.user_home(user) / ".local" / "state" / "nodetunnel",
                          ignore_errors=True)  # fmt: skip


# The cached view of the shared home (NFS-like): a name looked up before it exists stays
# missing for this long. Every host caches, so the nodes' view of what the laptop writes
# (the lease's heartbeat) is cached too, as on NFS clients.
HOME_CACHE_S = 30.0
HOME_CACHE_HOSTS = ("login", "gateway", "node1", "node2")


@pytest.fixture(params=["direct"])
def home_view(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[str]:
    """How the hosts see the shared home: ``direct`` or ``cached`` (parametrize indirectly)."""
    view = str(request.param)
    if view != "cached":
        yield view
        return
    sandbox.cache_home(HOME_CACHE_S, HOME_CACHE_HOSTS)
    try:
        yield view
    finally:
        sandbox.uncache_home()


@pytest.fixture(scope="session")
def laptop_nodetunnel() -> Iterator[list[str]]:
    """argv that runs this checkout's nodetunnel as a test user (a world-readable copy of src/)."""
    missing = [p for p in (CLUSTER_VENV, LAPTOP_VENV) if not (p / "bin" / "python").exists()]
    if missing:
        msg = f"{', '.join(map(str, missing))} missing: run ./scripts/setup"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    copy = Path(tempfile.mkdtemp(prefix="nodetunnel-src-", dir="/var/tmp"))
    try:
        shutil.copytree(SRC / "nodetunnel", copy / "nodetunnel",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        # Byte-compiled as an installed package is: the test users cannot write here, and
        # every command of every test would compile the modules anew.
        python = str(LAPTOP_VENV / "bin" / "python")
        subprocess.run([python, "-m", "compileall", "-q", str(copy)], check=True, timeout=120)
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield ["env", f"PYTHONPATH={copy}", python, "-m", "nodetunnel"]
    finally:
        shutil.rmtree(copy)


CHROMIUM = "/usr/bin/chromium"
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


@pytest.fixture(scope="session")
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
