"""The error tree: the exit codes and hierarchy the errors module's docstring promises."""

from __future__ import annotations

import inspect
import re

import pytest

from nodetunnel import errors
from nodetunnel.errors import (
    CommandError,
    CommandNotFound,
    CommandTimeout,
    ExitCode,
    NodetunnelError,
    PrerequisiteError,
    SandboxError,
    UsageError,
    WaitTimeout,
)

_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)\b(?:\s+exit (?P<code>\d+))?")


def documented_tree() -> dict[str, tuple[str | None, int]]:
    """class name -> (documented parent, documented exit code) from the module docstring.

    A class with no ``exit N`` column inherits its parent's code, as a subclass does.
    """
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n")[1]
    tree: dict[str, tuple[str | None, int]] = {}
    stack: list[tuple[int, str]] = []  # (column, name)
    for line in block.splitlines():
        m = _TREE_LINE.match(line)
        assert m, f"cannot parse docstring tree line {line!r}"
        col, name = len(m["indent"]), m["name"]
        while stack and stack[-1][0] >= col:
            stack.pop()
        parent = stack[-1][1] if stack else None
        code = int(m["code"]) if m["code"] else tree[parent][1] if parent else None
        assert code is not None, f"root {name} has no exit code in the docstring"
        tree[name] = (parent, code)
        stack.append((col, name))
    return tree


ERROR_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, NodetunnelError) and cls.__module__ == errors.__name__
    ),
    key=lambda c: c.__name__,
)


def test_docstring_tree_parses() -> None:
    tree = documented_tree()
    assert tree["NodetunnelError"] == (None, 1)
    assert tree["CommandNotFound"][0] == "CommandError"


def test_every_error_class_is_in_the_docstring_tree() -> None:
    assert {c.__name__ for c in ERROR_CLASSES} == set(documented_tree())


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_exit_code_matches_the_docstring(cls: type[NodetunnelError]) -> None:
    _, code = documented_tree()[cls.__name__]
    assert cls.exit_code == code


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_hierarchy_matches_the_docstring(cls: type[NodetunnelError]) -> None:
    parent, _ = documented_tree()[cls.__name__]
    if parent is None:
        assert cls is NodetunnelError
    else:
        assert cls.__bases__ == (getattr(errors, parent),)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (NodetunnelError, ExitCode.FAILURE),
        (UsageError, ExitCode.USAGE),
        (PrerequisiteError, ExitCode.PREREQUISITE),
        (CommandError, ExitCode.COMMAND),
        (CommandNotFound, ExitCode.COMMAND),
        (CommandTimeout, ExitCode.TIMEOUT),
        (WaitTimeout, ExitCode.TIMEOUT),
        (SandboxError, ExitCode.SANDBOX),
    ],
)
def test_exit_codes(cls: type[NodetunnelError], code: ExitCode) -> None:
    """The codes as implemented (CommandTimeout has the timeout code, like WaitTimeout)."""
    assert cls.exit_code == code


def test_exit_code_values() -> None:
    assert int(ExitCode.OK) == 0
    assert int(ExitCode.FAILURE) == 1
    assert int(ExitCode.USAGE) == 2
    assert int(ExitCode.PREREQUISITE) == 3
    assert int(ExitCode.COMMAND) == 4
    assert int(ExitCode.TIMEOUT) == 5
    assert int(ExitCode.SANDBOX) == 6
    assert int(ExitCode.INTERRUPTED) == 130
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


@pytest.mark.parametrize("cls", [NodetunnelError, UsageError, PrerequisiteError, SandboxError])
def test_str_is_the_message_and_hint_is_kept(cls: type[NodetunnelError]) -> None:
    err = cls("the value 'x' is wrong", hint="use 'y'")
    assert str(err) == "the value 'x' is wrong"
    assert err.message == "the value 'x' is wrong"
    assert err.hint == "use 'y'"
    assert cls("no hint").hint is None
    assert isinstance(err, Exception)


def test_command_error_message() -> None:
    err = CommandError(["ip", "netns", "add", "a b"], 2, "line1\nRTNETLINK answers: File exists\n")
    assert err.argv == ["ip", "netns", "add", "a b"]
    assert err.returncode == 2
    assert err.command_line == "ip netns add 'a b'"
    assert err.stderr_tail == "line1\nRTNETLINK answers: File exists"
    assert str(err) == (
        "command \"ip netns add 'a b'\" failed with exit code 2: "
        "line1\nRTNETLINK answers: File exists"
    )
    assert str(CommandError(["false"], 1)) == "command 'false' failed with exit code 1"


def test_command_error_tail_is_bounded() -> None:
    err = CommandError(["x"], 1, "\n".join(f"line {i}" for i in range(1000)) + "x" * 5000)
    assert len(err.stderr_tail) <= 2000
    assert err.stderr_tail.endswith("x")
    assert len(str(err)) < 2200


def test_command_error_custom_message() -> None:
    err = CommandError(["x"], None, "ignored in message", message="custom", hint="h")
    assert str(err) == "custom"
    assert err.hint == "h"
    assert err.stderr_tail == "ignored in message"


def test_command_not_found() -> None:
    err = CommandNotFound(["sinfo", "-h"])
    assert str(err) == "program 'sinfo' was not found"
    assert err.hint is not None
    assert "sinfo" in err.hint
    assert err.returncode is None
    assert CommandNotFound(["sinfo"], hint="install slurm-client").hint == "install slurm-client"


def test_command_timeout() -> None:
    err = CommandTimeout(["sleep", "5"], 0.25, "partial\n")
    assert str(err) == "command 'sleep 5' did not finish within 0.25 s: partial"
    assert err.timeout_s == 0.25
    assert str(CommandTimeout(["sleep", "5"], 3)) == "command 'sleep 5' did not finish within 3 s"
    long = CommandTimeout(["echo", "y" * 500], 1)
    assert len(long.message) < 300
    assert "..." in long.message


def test_wait_timeout() -> None:
    err = WaitTimeout("slurmctld to answer", 20, "connection refused", hint="see the log")
    assert (
        str(err)
        == "timed out after 20 s waiting for slurmctld to answer (last check: connection refused)"
    )
    assert (err.what, err.timeout_s, err.last, err.hint) == (
        "slurmctld to answer",
        20,
        "connection refused",
        "see the log",
    )
    assert str(WaitTimeout("x", 1.5)) == "timed out after 1.5 s waiting for x"
