"""remote_command: every argv word reaches the remote program as one literal word."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from nodetunnel.errors import UsageError
from nodetunnel.quoting import remote_command

CANARY = "CANARY"  # replaced by a path in tmp_path in the tests

HOSTILE = [
    "a'; echo foo",
    "a'; touch CANARY; echo '",
    'a"; touch CANARY; echo "',
    "with spaces  and\ttabs",
    " leading and trailing ",
    "$(touch CANARY)",
    "`touch CANARY`",
    "${HOME}",
    "$HOME",
    "$((6*7))",
    "line one\nline two\n",
    "\n; touch CANARY",
    "x; touch CANARY",
    "x && touch CANARY",
    "x | touch CANARY",
    "x > CANARY",
    "héllo wörld ✓ 日本語 🚀",
    "",
    "*",
    "?",
    "[a-z]*",
    "~",
    "~root",
    "~/x",
    "\\",
    "\\n",
    "'",
    "''",
    '"',
    "'\"'\"'",
    "-n",
    "--",
    "#not a comment",
    "!",
    "a=b",
    "{a,b}",
    "%s\\0",
    "\x01\x7f\x1b[31m",
]


def _values(tmp_path: Path) -> list[str]:
    canary = str(tmp_path / "canary")
    return [v.replace(CANARY, canary) for v in HOSTILE]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_round_trip_through_shlex(value: str) -> None:
    argv = ["prog", value, "--opt", value]
    assert shlex.split(remote_command(argv)) == argv


def test_round_trip_of_all_values_at_once(tmp_path: Path) -> None:
    argv = ["printf", "%s\\0", *_values(tmp_path)]
    assert shlex.split(remote_command(argv)) == argv


def test_plain_words_stay_readable() -> None:
    assert (
        remote_command(["squeue", "-h", "-j", "123", "-o", "%T|%N"])
        == "squeue -h -j 123 -o '%T|%N'"
    )


SHELLS = [s for s in ("/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/zsh") if Path(s).exists()]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_real_shell_receives_every_value_literally(tmp_path: Path, shell: str) -> None:
    values = _values(tmp_path)
    # Files that an unquoted * or ? would expand to.
    (tmp_path / "a").write_text("")
    (tmp_path / "b").write_text("")
    command = remote_command(["printf", "%s\\0", *values])
    proc = subprocess.run(
        [shell, "-c", command],
        capture_output=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LC_ALL": "C.UTF-8"},
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    out = proc.stdout.decode()
    assert out.endswith("\0")
    assert out[:-1].split("\0") == values
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("value", HOSTILE[:8], ids=repr)
def test_one_value_alone(tmp_path: Path, value: str) -> None:
    value = value.replace(CANARY, str(tmp_path / "canary"))
    proc = subprocess.run(
        ["/bin/sh", "-c", remote_command(["printf", "%s", value])],
        capture_output=True,
        cwd=tmp_path,
        timeout=10,
        check=True,
    )
    assert proc.stdout.decode() == value
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "trailing\x00"], ids=repr)
def test_nul_byte_is_a_usage_error_naming_the_value(value: str) -> None:
    with pytest.raises(UsageError) as info:
        remote_command(["echo", "fine", value])
    assert repr(value) in info.value.message
    assert "NUL" in info.value.message
    assert info.value.hint
    assert info.value.exit_code == 2


def test_empty_argv_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        remote_command([])
