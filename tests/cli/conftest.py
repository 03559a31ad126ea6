"""Safety net for the CLI tests: they must never build, inspect or remove a real sandbox.

The tests run as whatever user runs pytest (often root in CI), and another test
layer may have a real sandbox up at the default directory. So every test here
gets its own default sandbox directory, and anything that would lock, run a
program or start a daemon for the sandbox fails the test instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import pytest

from nodetunnel import cli as cli_module
from nodetunnel.sandbox import cluster, provision, teardown


def _forbidden(what: str) -> Any:
    def fail(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise AssertionError(f"a CLI unit test reached {what}: it would touch the real machine")

    return fail


@pytest.fixture(autouse=True)
def _no_real_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODETUNNEL_SANDBOX_DIR", str(tmp_path / "default-sandbox-dir"))
    monkeypatch.setattr(cluster, "LOCK_FILE", tmp_path / "sandbox.lock")
    monkeypatch.setattr(cluster.Sandbox, "_locked", _forbidden("Sandbox._locked (up/down)"))
    for module in (cluster, provision, teardown):  # every sandbox module that runs programs
        monkeypatch.setattr(module, "run", _forbidden("nodetunnel.proc.run"))
    monkeypatch.setattr(cluster, "spawn", _forbidden("nodetunnel.proc.spawn"))
    monkeypatch.setattr(cli_module, "_debug", False)


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Any:
    """main() installs handlers (and ignores Ctrl-C once it is leaving): undo it per test."""
    import signal

    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names}
    yield
    for name, handler in saved.items():
        signal.signal(getattr(signal, name), handler)
