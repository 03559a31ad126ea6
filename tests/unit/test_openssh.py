"""nodetunnel.transport.openssh: the per-session config (golden file), argv building and ssh's failures.

No real connection is ever made: ``OpenSSH.run`` is pointed at a fake ``ssh``
program in tmp_path that records its argv and stdin, then prints and exits as
told. The only real ``ssh`` use is ``ssh -G`` (parse the config, print the
result, connect nowhere), skipped where ssh is not installed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import pytest

from nodetunnel.errors import (
    CommandError,
    CommandNotFound,
    ExitCode,
    NodetunnelError,
    SshError,
    UsageError,
)
from nodetunnel.proc import Completed
from nodetunnel.quoting import remote_command
from nodetunnel.transport import openssh as ssh
from nodetunnel.transport.openssh import (
    OUTPUT_MARK,
    OpenSSH,
    SshSettings,
    after_marker,
    default_includes,
    marked_command,
    render_config,
    translate_ssh_failure,
)
from nodetunnel.transport.sharing import check_control_dir, private_runtime_dir

from .conftest import Golden

CONTROL_DIR = Path("/run/user/1000/nodetunnel/nt-0123abcd")
INCLUDES = ["/home/alice/.ssh/config", "/etc/ssh/ssh_config"]
CONFIG = Path("/run/user/1000/nodetunnel/nt-0123abcd/ssh_config")

HOSTILE = [
    "a'; touch CANARY; echo '",
    'a"; touch CANARY; echo "',
    "$(touch CANARY)",
    "`touch CANARY`",
    "${HOME}",
    "with spaces  and\ttabs",
    " leading and trailing ",
    "line one\nline two",
    "héllo wörld ✓ 日本語",
    "",
    "*",
    "~",
    "\\",
    "'",
    '"',
    "-n",
    "--",
    "#not a comment",
    "x; rm -rf /",
]

BAD_HOSTS = [
    "",
    "-oProxyCommand=touch CANARY",
    "-J",
    "host name",
    "host\tname",
    "host\nname",
    " host",
    "host\x00",
    "host\x1b",
]


def make_ssh(*, user: str | None = None, ssh_binary: str = "ssh") -> OpenSSH:
    return OpenSSH(["login", "gateway"], config_path=CONFIG, user=user, ssh_binary=ssh_binary)


# ------------------------------------------------------------------ render_config
HOPS = ["login", "gateway"]


def test_render_config_golden(golden: Golden) -> None:
    text = render_config(control_dir=CONTROL_DIR, settings=SshSettings(), includes=INCLUDES,
                         hops=HOPS)  # fmt: skip
    golden("ssh_config.session", text)


def test_render_config_no_multiplex_golden(golden: Golden) -> None:
    text = render_config(
        control_dir=CONTROL_DIR, settings=SshSettings(multiplex=False), includes=INCLUDES,
        hops=HOPS,
    )  # fmt: skip
    golden("ssh_config.session-nomux", text)


def test_render_config_settings_and_include_order() -> None:
    settings = SshSettings(
        keepalive_interval_s=7, keepalive_count=3, control_persist_s=42, connect_timeout_s=9
    )
    text = render_config(control_dir=CONTROL_DIR, settings=settings, includes=INCLUDES)
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines[2] == "Host *"
    assert "ServerAliveInterval 7" in lines
    assert "ServerAliveCountMax 3" in lines
    assert "ConnectTimeout 9" in lines
    assert "ControlMaster auto" in lines
    assert f'ControlPath "{CONTROL_DIR}/%C"' in lines
    assert "ControlPersist 42" in lines
    # Our settings come first (ssh takes the first value it reads), the includes last, in order.
    includes = [i for i, ln in enumerate(lines) if ln.startswith("Include ")]
    assert [lines[i] for i in includes] == [f'Include "{p}"' for p in INCLUDES]
    assert includes == list(range(len(lines) - len(INCLUDES), len(lines)))
    assert text.endswith("\n")


def test_render_config_never_weakens_host_key_checking() -> None:
    text = render_config(control_dir=CONTROL_DIR, settings=SshSettings(), includes=INCLUDES)
    low = text.lower()
    for word in ("stricthostkeychecking", "userknownhostsfile", "/dev/null", "loglevel"):
        assert word not in low


def test_render_config_without_multiplex_omits_control_options() -> None:
    text = render_config(
        control_dir=CONTROL_DIR, settings=SshSettings(multiplex=False), includes=INCLUDES
    )
    assert "Control" not in text
    assert str(CONTROL_DIR) not in text
    assert "ServerAliveInterval 2" in text
    assert [ln.strip() for ln in text.splitlines() if ln.strip().startswith("Include")] == [
        f'Include "{p}"' for p in INCLUDES
    ]


def test_render_config_without_includes() -> None:
    text = render_config(control_dir=CONTROL_DIR, settings=SshSettings(), includes=[])
    assert not [ln for ln in text.splitlines() if ln.strip().startswith("Include")]
    assert "ControlPath" in text


def test_render_config_include_paths_are_double_quoted() -> None:
    text = render_config(
        control_dir=CONTROL_DIR,
        settings=SshSettings(),
        includes=["/home/alice/my configs/ssh config", Path("/etc/ssh/ssh_config")],
    )
    assert '    Include "/home/alice/my configs/ssh config"\n' in text
    assert '    Include "/etc/ssh/ssh_config"\n' in text


def test_render_config_control_dir_with_spaces_is_quoted() -> None:
    text = render_config(control_dir=Path("/tmp/run dir/nt-1"), settings=SshSettings(), includes=[])
    (line,) = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("ControlPath")]
    # One config word that ssh reads as '/tmp/run dir/nt-1/%C' (the quotes are not part of it).
    assert shlex.split(line) == ["ControlPath", "/tmp/run dir/nt-1/%C"]


@pytest.mark.parametrize("bad", ['/home/a"b/.ssh/config', "/home/a\nHost evil/.ssh/config"])
def test_render_config_refuses_include_path_it_cannot_quote(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        render_config(control_dir=CONTROL_DIR, settings=SshSettings(), includes=[bad])
    assert repr(bad) in info.value.message
    assert info.value.hint


def test_render_config_refuses_control_dir_with_double_quote() -> None:
    with pytest.raises(UsageError):
        render_config(control_dir=Path('/tmp/a"b'), settings=SshSettings(), includes=[])


def test_render_config_control_dir_with_quote_is_fine_without_multiplex() -> None:
    # Without connection sharing the control directory is not written at all.
    text = render_config(
        control_dir=Path('/tmp/a"b'), settings=SshSettings(multiplex=False), includes=[]
    )
    assert '"' not in text


needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")


def _ssh_g_all(config: Path, host: str, *options: str) -> dict[str, list[str]]:
    """``ssh -G``: how ssh reads ``config`` for ``host`` (parses only, connects nowhere),
    every value of each keyword."""
    done = subprocess.run(
        ["ssh", "-G", "-F", str(config), *options, host],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


def _ssh_g(config: Path, host: str, *options: str) -> dict[str, str]:
    """``ssh -G``'s first value of each keyword (the one ssh uses)."""
    return {key: values[0] for key, values in _ssh_g_all(config, host, *options).items()}


@needs_ssh
def test_a_hostile_user_config_keeps_its_own_settings_but_cannot_break_ours(
    tmp_path: Path,
) -> None:
    # Common at sites: tmux started on login, a forced tty, a long ConnectTimeout for MFA,
    # a SOCKS proxy and a forward to a licence server set up with every login.
    user = tmp_path / "user config"
    user.write_text("Host login gateway\n    RemoteCommand tmux new -A -s main\n"
                    "    RequestTTY yes\n    ConnectTimeout 45\n    User jdoe\n"
                    "    LocalForward 27000 licence:27000\n    DynamicForward 1080\n"
                    "    RemoteForward 2222 127.0.0.1:22\n    ExitOnForwardFailure yes\n"
                    "Host node1\n    User jdoe\n")  # fmt: skip
    config = tmp_path / "ssh_config"
    config.write_text(render_config(control_dir=tmp_path / "ctl", settings=SshSettings(),
                                    includes=[user], hops=HOPS))  # fmt: skip
    for hop in HOPS:  # where nodetunnel keeps its long-lived shared connections
        seen = _ssh_g(config, hop)
        assert "remotecommand" not in seen  # ssh -G shows none at all: our commands run as given
        assert seen["requesttty"] in ("no", "false")
        assert seen["connecttimeout"] == "45"  # the site's own value, never overridden
        assert seen["user"] == "jdoe"
        assert seen["clearallforwardings"] == "yes"
        for forward in ("localforward", "dynamicforward", "remoteforward"):
            assert forward not in seen  # none of the user's forwards rides our connections
    # The tunnel to the node keeps its own command-line forwards (ClearAllForwardings, where
    # it applies, clears those too: so it is set for the hops only).
    tunnel = _ssh_g(config, "node1", "-L", "127.0.0.1:8888:/tmp/nt.x/s", "-L",
                    "127.0.0.1:6006:127.0.0.1:41234")  # fmt: skip
    assert tunnel["clearallforwardings"] == "no"
    assert tunnel["user"] == "jdoe"
    assert _ssh_g_all(config, "node1", "-L", "127.0.0.1:8888:/tmp/nt.x/s", "-L",
                      "127.0.0.1:6006:127.0.0.1:41234")["localforward"] == [
        "[127.0.0.1]:8888 /tmp/nt.x/s", "[127.0.0.1]:6006 [127.0.0.1]:41234"]  # fmt: skip
    # A profile may still bound it on purpose (connect_timeout_s).
    config.write_text(render_config(control_dir=tmp_path / "ctl",
                                    settings=SshSettings(connect_timeout_s=90), includes=[user]))  # fmt: skip
    assert _ssh_g(config, "login")["connecttimeout"] == "90"


@needs_ssh
def test_clear_all_forwardings_would_clear_the_tunnel_s_own_forwards(tmp_path: Path) -> None:
    # Why ClearAllForwardings is not set for every host: OpenSSH applies it to the
    # command line's -L too, and the tunnel to the node is exactly such forwards.
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    ClearAllForwardings yes\n")
    seen = _ssh_g_all(config, "node1", "-L", "127.0.0.1:8888:/tmp/nt.x/s")
    assert "localforward" not in seen


@needs_ssh
def test_rendered_config_is_read_by_openssh(tmp_path: Path) -> None:
    inc_dir = tmp_path / "my configs"
    inc_dir.mkdir()
    (inc_dir / "user config").write_text("Host cluster\n    User fromuserconfig\n    Port 2222\n")
    control = tmp_path / "ctl dir"
    config = tmp_path / "ssh_config"
    config.write_text(
        render_config(
            control_dir=control,
            settings=SshSettings(keepalive_interval_s=5, connect_timeout_s=11),
            includes=[inc_dir / "user config"],
        )
    )
    seen = _ssh_g(config, "cluster")
    assert seen["user"] == "fromuserconfig"
    assert seen["port"] == "2222"
    assert seen["serveraliveinterval"] == "5"
    assert seen["connecttimeout"] == "11"
    assert seen["controlmaster"] == "auto"
    assert seen["controlpath"].startswith(f"{control}/")
    assert seen["stricthostkeychecking"] != "false"
    # Hosts not in the user's config get the session settings too.
    assert _ssh_g(config, "other")["serveraliveinterval"] == "5"


@needs_ssh
def test_rendered_config_with_single_quote_in_paths_is_read_by_openssh(tmp_path: Path) -> None:
    odd = tmp_path / "o'brien"
    odd.mkdir()
    (odd / "config").write_text("Host cluster\n    User fromuserconfig\n")
    config = tmp_path / "ssh_config"
    config.write_text(
        render_config(control_dir=odd, settings=SshSettings(), includes=[odd / "config"])
    )
    seen = _ssh_g(config, "cluster")
    assert seen["user"] == "fromuserconfig"
    assert seen["controlpath"].startswith(f"{odd}/")


# --------------------------------------------------------------- default_includes
def test_default_includes_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    user = tmp_path / "user_config"
    system = tmp_path / "system_config"
    user.write_text("")
    system.write_text("")
    monkeypatch.setattr(ssh, "USER_CONFIG", user)
    monkeypatch.setattr(ssh, "SYSTEM_CONFIG", system)
    found = default_includes(["~/extra one.conf", tmp_path / "extra2.conf"])
    assert found == [
        str(tmp_path / "home" / "extra one.conf"),  # ~ expanded, even if it does not exist
        str(tmp_path / "extra2.conf"),
        str(user),
        str(system),
    ]


def test_default_includes_expands_the_user_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("")
    monkeypatch.setattr(ssh, "USER_CONFIG", Path("~/.ssh/config"))
    monkeypatch.setattr(ssh, "SYSTEM_CONFIG", tmp_path / "missing")
    assert default_includes() == [str(tmp_path / ".ssh" / "config")]


@pytest.mark.parametrize(("has_user", "has_system"), [(False, True), (True, False), (False, False)])
def test_default_includes_leaves_out_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_user: bool, has_system: bool
) -> None:
    user = tmp_path / "user_config"
    system = tmp_path / "system_config"
    if has_user:
        user.write_text("")
    if has_system:
        system.write_text("")
    monkeypatch.setattr(ssh, "USER_CONFIG", user)
    monkeypatch.setattr(ssh, "SYSTEM_CONFIG", system)
    expected = [str(user)] * has_user + [str(system)] * has_system
    assert default_includes() == expected
    assert default_includes(["/x.conf"]) == ["/x.conf", *expected]


# ------------------------------------------------------- control dir, runtime dir
# Worked out here, not taken from ssh.py: macOS's sun_path is 104 bytes with the NUL, so a
# socket path has at most 103; ssh binds "<dir>/<40 hex digits of %C>.<16 random characters>".
_MAX_SOCKET = 104 - 1
_MAX_DIR = _MAX_SOCKET - len("/" + "0" * 40 + "." + "x" * 16)  # longest directory that still fits


def _temporary_socket(control_dir: Path) -> bytes:
    """The path ssh binds first (then renames to ControlPath), as ssh -G would expand it."""
    return os.fsencode(control_dir) + b"/" + b"f" * 40 + b"." + b"Ab3dEf7hIj1lMn0p"


def test_check_control_dir_boundary_is_macos_usable_socket_length() -> None:
    longest = Path("/tmp/" + "d" * (_MAX_DIR - len("/tmp/")))
    assert len(os.fsencode(longest)) == _MAX_DIR == 45
    check_control_dir(longest)  # accepted ...
    assert len(_temporary_socket(longest)) == 103  # ... and its socket still fits macOS
    shortest_refused = Path(str(longest) + "d")
    assert len(_temporary_socket(shortest_refused)) == 104
    with pytest.raises(UsageError):
        check_control_dir(shortest_refused)


def test_check_control_dir_never_lets_a_socket_past_103_bytes() -> None:
    accepted = []
    for length in range(2, 120):
        path = Path("/" + "a" * (length - 1))
        try:
            check_control_dir(path)
        except UsageError:
            assert len(_temporary_socket(path)) > 103
        else:
            accepted.append(length)
            assert len(_temporary_socket(path)) <= 103
    assert max(accepted) == _MAX_DIR  # and nothing that fits is refused
    assert accepted == list(range(2, _MAX_DIR + 1))


def test_check_control_dir_counts_multibyte_characters_at_the_boundary() -> None:
    fits = Path("/" + "é" * ((_MAX_DIR - 1) // 2))  # 1 + 2 * 22 = 45 bytes, 23 characters
    assert len(os.fsencode(fits)) == _MAX_DIR
    check_control_dir(fits)
    with pytest.raises(UsageError):
        check_control_dir(Path(str(fits) + "é"))  # 47 bytes, though only 24 characters


@pytest.mark.parametrize(
    "path",
    [
        Path("/run/user/1000/nodetunnel/nt-0123abcd"),
        Path("/tmp/nodetunnel-1000/nt-0123abcd"),
        Path("/" + "a" * (_MAX_DIR - 1)),
    ],
)
def test_check_control_dir_accepts_short_paths(path: Path) -> None:
    check_control_dir(path)


@pytest.mark.parametrize(
    "path",
    [
        Path("/" + "a" * _MAX_DIR),
        Path("/Users/someone/Library/Caches/TemporaryItems/nodetunnel/nt-0123abcd"),
        Path("/" + "é" * (_MAX_DIR // 2 + 1)),  # counted in bytes, not characters
    ],
)
def test_check_control_dir_refuses_long_paths(path: Path) -> None:
    with pytest.raises(UsageError) as info:
        check_control_dir(path)
    assert str(path) in info.value.message
    assert info.value.hint is not None
    assert "XDG_RUNTIME_DIR" in info.value.hint


def test_private_runtime_dir_under_xdg_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    root = private_runtime_dir()
    assert root == tmp_path / "nodetunnel"
    st = root.lstat()
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()
    assert private_runtime_dir() == root  # a second call reuses it


def test_private_runtime_dir_is_private_even_with_a_lax_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    old = os.umask(0o002)
    try:
        root = private_runtime_dir()
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.lstat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o755, 0o701, 0o777])
def test_private_runtime_dir_refuses_a_shared_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    existing = tmp_path / "nodetunnel"
    existing.mkdir()
    existing.chmod(mode)
    with pytest.raises(NodetunnelError) as info:
        private_runtime_dir()
    assert str(existing) in info.value.message
    assert info.value.hint is not None


def test_multiplex_default_is_off_only_on_windows() -> None:
    assert SshSettings().multiplex is (os.name != "nt")


def test_private_runtime_dir_refuses_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    runtime = tmp_path / "xdg"
    runtime.mkdir()
    (runtime / "nodetunnel").symlink_to(target)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(NodetunnelError):
        private_runtime_dir()


# ------------------------------------------------------------------- argv building
def test_command_argv_shape() -> None:
    argv = make_ssh().command_argv("gateway", ["login"], ["squeue", "--me"])
    assert argv == [
        "ssh",
        "-F",
        str(CONFIG),
        "-J",
        "login",
        "-T",
        "--",
        "gateway",
        "squeue --me",
    ]


def test_command_argv_with_user_and_chain() -> None:
    conn = OpenSSH(["a", "b", "c"], config_path=CONFIG, user="alice")
    argv = conn.command_argv("c", ["a", "b"], ["true"])
    assert argv[argv.index("-J") + 1] == "alice@a,alice@b"
    assert argv[argv.index("--") + 1] == "alice@c"
    assert argv[1:3] == ["-F", str(CONFIG)]


def test_command_argv_without_jump_hosts_has_no_j() -> None:
    argv = make_ssh().command_argv("login", [], ["true"])
    assert "-J" not in argv
    assert argv[-3:] == ["--", "login", "true"]


def test_command_argv_destination_comes_after_double_dash() -> None:
    argv = make_ssh().command_argv("gateway", ["login"], ["echo", "-oProxyCommand=x"])
    dd = argv.index("--")
    assert argv[dd + 1] == "gateway"
    assert len(argv) == dd + 3  # destination, then the one command string


def test_command_argv_quotes_hostile_words() -> None:
    argv = make_ssh().command_argv("gateway", ["login"], ["printf", "%s\\n", *HOSTILE])
    assert argv[-1] == remote_command(["printf", "%s\\n", *HOSTILE])
    assert shlex.split(argv[-1]) == ["printf", "%s\\n", *HOSTILE]


@pytest.mark.parametrize("word", HOSTILE)
def test_command_argv_hostile_word_round_trips(word: str) -> None:
    argv = make_ssh().command_argv("gateway", ["login"], ["echo", word])
    assert shlex.split(argv[-1]) == ["echo", word]


def test_command_argv_refuses_nul() -> None:
    with pytest.raises(UsageError):
        make_ssh().command_argv("gateway", ["login"], ["echo", "a\x00b"])


def test_forward_argv_shape() -> None:
    argv = make_ssh(user="alice").forward_argv("node1", 8888, "/tmp/nt.abc123/s")
    assert argv == [
        "ssh",
        "-F",
        str(CONFIG),
        "-J",
        "alice@login,alice@gateway",
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-L",
        "127.0.0.1:8888:/tmp/nt.abc123/s",
        "alice@node1",
    ]


def test_forward_argv_binds_loopback_only() -> None:
    argv = make_ssh().forward_argv("node1", 9123, "/tmp/nt.x/s")
    assert argv.count("-L") == 1
    assert argv[argv.index("-L") + 1] == "127.0.0.1:9123:/tmp/nt.x/s"
    for flag in ("-g", "-R", "-D", "-A", "-X", "-Y"):
        assert flag not in argv
    options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert "ExitOnForwardFailure=yes" in options
    assert "ControlMaster=no" in options
    assert "ControlPath=none" in options
    assert not any(o.lower().startswith(("stricthostkeychecking", "gatewayports")) for o in options)
    assert argv[argv.index("-J") + 1] == "login,gateway"  # the whole chain
    assert argv[-1] == "node1"


def test_submit_host_is_the_last_hop() -> None:
    assert make_ssh().submit_host == "gateway"
    assert OpenSSH(["solo"], config_path=CONFIG).submit_host == "solo"


def test_empty_jump_chain_raises() -> None:
    with pytest.raises(UsageError) as info:
        OpenSSH([], config_path=CONFIG)
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("bad", BAD_HOSTS)
def test_bad_jump_host_raises(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        OpenSSH(["login", bad], config_path=CONFIG)
    assert repr(bad) in info.value.message


@pytest.mark.parametrize("bad", [h for h in BAD_HOSTS if h])
def test_bad_user_raises(bad: str) -> None:
    with pytest.raises(UsageError):
        OpenSSH(["login"], config_path=CONFIG, user=bad)


@pytest.mark.parametrize("bad", BAD_HOSTS)
def test_bad_node_or_destination_raises(bad: str) -> None:
    conn = make_ssh()
    with pytest.raises(UsageError):
        conn.forward_argv(bad, 8888, "/tmp/nt.x/s")
    with pytest.raises(UsageError):
        conn.command_argv(bad, ["login"], ["true"])


# ------------------------------------------------------------ run with a fake ssh
class FakeSsh(Protocol):
    def __call__(self, *, rc: int = 0, stdout: str = "", stderr: str = "") -> str: ...


@pytest.fixture
def fake_ssh(tmp_path: Path) -> FakeSsh:
    """Write a fake ``ssh`` that records argv + stdin (one JSON line per call) and exits ``rc``."""
    calls = tmp_path / "ssh-calls.jsonl"

    def make(*, rc: int = 0, stdout: str = "", stderr: str = "") -> str:
        prog = tmp_path / "fake-ssh"
        prog.write_text(
            f"#!{sys.executable} -IS\n"
            "import json, sys\n"
            "stdin = sys.stdin.read()\n"
            f"with open({str(calls)!r}, 'a') as f:\n"
            "    f.write(json.dumps({'argv': sys.argv, 'stdin': stdin}) + '\\n')\n"
            f"sys.stdout.write({stdout!r})\n"
            f"sys.stderr.write({stderr!r})\n"
            f"sys.exit({rc})\n"
        )
        prog.chmod(0o755)
        return str(prog)

    return make


def recorded(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "ssh-calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_sends_argv_through_the_chain(tmp_path: Path, fake_ssh: FakeSsh) -> None:
    binary = fake_ssh(stdout="12345\n")
    conn = make_ssh(user="bob", ssh_binary=binary)
    done = conn.run(["sbatch", "--parsable", "a b"], input="#!/bin/sh\necho hi\n", timeout_s=10)
    assert done.returncode == 0
    assert done.stdout == "12345\n"
    (call,) = recorded(tmp_path)
    assert call["argv"][1:] == [
        "-F",
        str(CONFIG),
        "-J",
        "bob@login",
        "-T",
        "--",
        "bob@gateway",
        marked_command("sbatch --parsable 'a b'"),
    ]
    assert call["stdin"] == "#!/bin/sh\necho hi\n"


def test_call_is_a_command_runner(tmp_path: Path, fake_ssh: FakeSsh) -> None:
    conn = make_ssh(ssh_binary=fake_ssh(stdout="ok"))
    assert conn(["true"], timeout_s=10).stdout == "ok"
    assert recorded(tmp_path)[0]["stdin"] == ""  # no input: stdin is empty, never the terminal


def test_run_remote_failure_with_check_raises_command_error(fake_ssh: FakeSsh) -> None:
    conn = make_ssh(ssh_binary=fake_ssh(rc=1, stderr="squeue: error: invalid user\n"))
    with pytest.raises(CommandError) as info:
        conn.run(["squeue", "--me"], timeout_s=10)
    err = info.value
    assert not isinstance(err, SshError)
    assert err.returncode == 1
    assert "invalid user" in err.stderr_tail
    assert err.exit_code == ExitCode.COMMAND


def test_run_remote_failure_without_check_returns(fake_ssh: FakeSsh) -> None:
    conn = make_ssh(ssh_binary=fake_ssh(rc=2, stdout="out", stderr="err"))
    done = conn.run(["false"], timeout_s=10, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (2, "out", "err")


def test_run_missing_ssh_binary(tmp_path: Path) -> None:
    conn = make_ssh(ssh_binary=str(tmp_path / "no-such-ssh"))
    with pytest.raises(CommandNotFound):
        conn.run(["true"], timeout_s=10)


SSH_FAILURES = [
    pytest.param(
        "alice@login: Permission denied (publickey).\r\n",
        "authentication refused on the way login -> gateway",
        "ssh login",
        id="auth",
    ),
    pytest.param(
        "ssh: Could not resolve hostname login: Name or service not known\r\n",
        "unknown host on the way login -> gateway",
        "host names",
        id="unknown-host",
    ),
    pytest.param(
        "ssh: connect to host login port 22: Connection timed out\r\n",
        "cannot reach the cluster (login -> gateway)",
        "network",
        id="timeout",
    ),
    pytest.param(
        "@@@@@@@@@@@\nHost key verification failed.\r\n",
        "host key check failed on the way login -> gateway",
        "plain ssh",
        id="host-key",
    ),
    pytest.param(
        "(alice@login) One-time password (OATH) for `alice': \r\n"
        "alice@login: Permission denied (keyboard-interactive).\r\n",
        "authentication failed at login (keyboard-interactive) on the way login -> gateway",
        "fresh code",
        id="mfa-code-refused",
    ),
    pytest.param(
        "Connection timed out during banner exchange\r\n"
        "Connection to UNKNOWN port 65535 timed out\r\n",
        "timed out waiting for a host on the way login -> gateway to answer",
        "connect_timeout_s",
        id="banner-timeout",
    ),
]


@pytest.mark.parametrize(("stderr", "message", "hint"), SSH_FAILURES)
def test_run_translates_ssh_failures(
    fake_ssh: FakeSsh, stderr: str, message: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "has_terminal", lambda: True)  # where a code could be typed
    conn = make_ssh(ssh_binary=fake_ssh(rc=255, stderr=stderr))
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    err = info.value
    assert err.message.startswith(message)
    assert err.message.endswith(stderr.strip().splitlines()[-1])
    assert err.hint is not None
    assert hint in err.hint
    assert err.returncode == 255
    assert err.exit_code == ExitCode.CONNECTION
    assert err.argv[0] == conn.ssh_binary


def test_run_ssh_failure_raises_even_without_check(fake_ssh: FakeSsh) -> None:
    conn = make_ssh(ssh_binary=fake_ssh(rc=255, stderr="Permission denied (publickey).\n"))
    with pytest.raises(SshError):
        conn.run(["true"], timeout_s=10, check=False)


def _completed(stderr: str, rc: int = 255) -> Completed:
    return Completed(["ssh", "x"], rc, "", stderr, 0.1)


@pytest.mark.parametrize(
    ("stderr", "start"),
    [
        ("Permission denied (publickey,keyboard-interactive).", "authentication refused"),
        ("Received disconnect: Too many authentication failures", "authentication refused"),
        (
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nOffending key",
            "host key check failed",
        ),
        ("Host key verification failed.", "host key check failed"),
        ("ssh: Could not resolve hostname nope: Name or service not known", "unknown host"),
        ("ssh: nope: Name or service not known", "unknown host"),
        ("ssh: connect to host login port 22: Connection timed out", "cannot reach"),
        ("ssh: connect to host login port 22: No route to host", "cannot reach"),
        ("ssh: connect to host login port 22: Network is unreachable", "cannot reach"),
        ("ssh: connect to host login port 22: Connection refused", "cannot reach"),
        ("Timeout, server login not responding.", "cannot reach"),
        ("kex_exchange_identification: Connection closed by remote host", "cannot reach"),
        ("something entirely different", "ssh failed"),
        ("", "ssh failed"),
    ],
)
def test_translate_ssh_failure(stderr: str, start: str) -> None:
    err = translate_ssh_failure(["ssh", "x"], _completed(stderr), ["login", "gateway"])
    assert isinstance(err, SshError)
    assert err.message.startswith(start)
    assert "login" in err.message
    assert "gateway" in err.message
    assert err.hint
    assert err.argv == ["ssh", "x"]
    assert err.returncode == 255
    if not stderr:
        assert err.message.endswith("no error output")


def test_translate_ssh_failure_reports_the_last_line() -> None:
    stderr = "debug1: a\nWarning: something\nalice@login: Permission denied (publickey).\n"
    err = translate_ssh_failure(["ssh"], _completed(stderr), ["login"])
    assert err.message == "authentication refused on the way login: " + (
        "alice@login: Permission denied (publickey)."
    )
    assert "Permission denied" in err.stderr_tail


def test_translate_ssh_failure_auth_hint_quotes_the_first_hop() -> None:
    err = translate_ssh_failure(["ssh"], _completed("Permission denied"), ["first", "second"])
    assert err.hint is not None
    assert "'ssh first'" in err.hint
    assert "second" not in err.hint


@pytest.mark.parametrize(
    "stderr",
    ["Host key verification failed.", "REMOTE HOST IDENTIFICATION HAS CHANGED!"],
)
def test_host_key_hint_never_suggests_skipping_the_check(stderr: str) -> None:
    err = translate_ssh_failure(["ssh"], _completed(stderr), ["login"])
    assert err.hint is not None
    low = err.hint.lower()
    for bad in (
        "stricthostkeychecking",
        "userknownhostsfile",
        "/dev/null",
        "disable",
        "accept-new",
        "=no",
        "ssh-keygen -r",
        "-o ",
    ):
        assert bad not in low


# ----------------------------------------------------------------------- close
def test_close_exits_shared_connections_innermost_first(tmp_path: Path, fake_ssh: FakeSsh) -> None:
    conn = OpenSSH(
        ["a", "b", "c"], config_path=CONFIG, user="u", ssh_binary=fake_ssh(rc=255, stderr="x")
    )
    conn.close(timeout_s=10)  # failures are ignored
    calls = [c["argv"][1:] for c in recorded(tmp_path)]
    assert calls == [
        ["-F", str(CONFIG), "-J", "u@a,u@b", "-O", "exit", "u@c"],
        ["-F", str(CONFIG), "-J", "u@a", "-O", "exit", "u@b"],
        ["-F", str(CONFIG), "-O", "exit", "u@a"],
    ]


def test_close_without_ssh_binary_does_not_raise(tmp_path: Path) -> None:
    make_ssh(ssh_binary=str(tmp_path / "no-such-ssh")).close(timeout_s=5)


def test_close_masters_asks_each_socket_to_exit(tmp_path: Path) -> None:
    import socket as socketlib

    from nodetunnel.transport.sharing import close_masters

    control = tmp_path / "ctl"
    control.mkdir()
    socks = []
    for name in ("a" * 40, "b" * 40):
        s = socketlib.socket(socketlib.AF_UNIX)
        s.bind(str(control / name))
        socks.append(s)
    (control / "ssh_config").write_text("not a socket\n")
    log = tmp_path / "calls"
    fake = tmp_path / "ssh"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n')
    fake.chmod(0o755)
    try:
        close_masters(control, ssh_binary=str(fake))
    finally:
        for s in socks:
            s.close()
    calls = sorted(log.read_text().splitlines())
    assert calls == [
        f"-F /dev/null -o ControlPath={control / name} -O exit x" for name in ("a" * 40, "b" * 40)
    ]
    close_masters(tmp_path / "missing", ssh_binary=str(fake))  # no directory: nothing to do


# ------------------------------------------------------------- login banners
def test_a_login_banner_on_stdout_is_not_taken_for_the_output(tmp_path: Path) -> None:
    """A fake ssh that runs the remote command in sh after a login script's banner."""
    prog = tmp_path / "ssh-with-banner"
    prog.write_text('#!/bin/sh\nfor last; do :; done\nprintf "Welcome to HPC!\\nno newline"\n'
                    'exec sh -c "$last"\n')  # fmt: skip
    prog.chmod(0o755)
    conn = make_ssh(ssh_binary=str(prog))
    done = conn.run(["printf", "12345\\n"], timeout_s=10)
    assert done.stdout == "12345\n"
    squeue = conn.run(["printf", "%s\\n", "7|RUNNING|node1|59:00|N/A|alice|None"], timeout_s=10)
    assert squeue.stdout == "7|RUNNING|node1|59:00|N/A|alice|None\n"


@pytest.mark.parametrize(
    ("stdout", "output"),
    [
        (f"\n{OUTPUT_MARK}\nout\n", "out\n"),
        (f"banner\nmore\n{OUTPUT_MARK}\nout\n", "out\n"),
        (f"half a line\n{OUTPUT_MARK}\n", ""),
        ("no marker: the command did not run\n", "no marker: the command did not run\n"),
    ],
)
def test_after_marker(stdout: str, output: str) -> None:
    assert after_marker(stdout) == output


def test_a_known_cause_is_never_replaced_by_the_diagnostic_retry(
    tmp_path: Path, fake_ssh: FakeSsh
) -> None:
    binary = fake_ssh(rc=255, stderr="Connection timed out during banner exchange\r\n")
    diagnose = tmp_path / "diagnose"
    diagnose.write_text("")
    conn = OpenSSH(["login", "gateway"], config_path=CONFIG, ssh_binary=binary,
                   diagnose_config_path=diagnose)  # fmt: skip
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    assert "timed out waiting for a host" in info.value.message
    assert len(recorded(tmp_path)) == 1  # no BatchMode retry, which an MFA host always refuses


def test_a_refused_code_names_the_hop_not_its_address() -> None:
    stderr = (
        "ntbob@198.18.1.2: Permission denied (keyboard-interactive).\r\n"
        "Connection closed by UNKNOWN port 65535\r\n"
    )
    err = translate_ssh_failure(["ssh"], _completed(stderr), ["login", "gateway"],
                                {"198.18.1.2": "login"})  # fmt: skip
    assert err.message.startswith("authentication failed at login (keyboard-interactive)")
    assert err.message.endswith("ntbob@198.18.1.2: Permission denied (keyboard-interactive).")
    assert "'ssh login'" in (err.hint or "")


CLOSED = "Connection closed by UNKNOWN port 65535\r\n"
ASKS_CODE = "ntbob@login: Permission denied (keyboard-interactive).\r\n"


def _two_faced_ssh(tmp_path: Path, first: str, retry: str, retry_rc: int = 255) -> OpenSSH:
    """An ssh that fails with ``first``, and with ``retry`` when run with the diagnose config."""
    diagnose = tmp_path / "ssh_config.diagnose"
    diagnose.write_text("")
    calls = tmp_path / "ssh-calls.jsonl"
    prog = tmp_path / "two-faced-ssh"
    prog.write_text(
        f"#!{sys.executable} -IS\n"
        "import json, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv, 'stdin': ''}) + '\\n')\n"
        f"again = sys.argv[2] == {str(diagnose)!r}\n"
        f"sys.stderr.write({retry!r} if again else {first!r})\n"
        f"sys.exit({retry_rc} if again else 255)\n"
    )
    prog.chmod(0o755)
    return OpenSSH(["login", "gateway"], config_path=CONFIG, ssh_binary=str(prog),
                   diagnose_config_path=diagnose)  # fmt: skip


def test_a_retry_refused_only_for_want_of_a_code_never_reports_a_refused_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ProxyJump whose inner ssh failed says only "Connection closed"; the BatchMode retry
    # at an MFA host is always refused for want of a code, which nobody typed.
    monkeypatch.setattr(ssh, "has_terminal", lambda: True)
    conn = _two_faced_ssh(tmp_path, CLOSED, ASKS_CODE)
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    err = info.value
    assert len(recorded(tmp_path)) == 2  # the retry ran
    assert err.message == "cannot reach the cluster (login -> gateway): " + CLOSED.strip()
    assert "code" not in err.message
    assert "code" not in (err.hint or "")
    assert err.exit_code == ExitCode.CONNECTION


def test_a_retry_asking_for_a_code_without_a_terminal_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "has_terminal", lambda: False)
    conn = _two_faced_ssh(tmp_path, CLOSED, ASKS_CODE)
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    err = info.value
    assert err.message.startswith(
        "authentication at login asks for a one-time code or password (keyboard-interactive), "
        "and this ssh had no terminal to ask it on (on the way login -> gateway): "
        + CLOSED.strip()  # the original error first, what the retry found after it
    )
    assert err.message.endswith(f"(retried without connection sharing or prompts: "
                                f"{ASKS_CODE.strip()})")  # fmt: skip
    assert "not accepted" not in err.message + (err.hint or "")
    assert "multiplex = true" in (err.hint or "")


def test_a_retry_names_a_refused_key_after_the_original_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "has_terminal", lambda: True)
    refused = "ntbob@login: Permission denied (publickey).\r\n"
    conn = _two_faced_ssh(tmp_path, CLOSED, refused)
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    err = info.value
    assert err.message == (
        f"authentication refused on the way login -> gateway: {CLOSED.strip()} "
        f"(retried without connection sharing or prompts: {refused.strip()})"
    )
    assert "Permission denied (publickey)" in err.stderr_tail


@pytest.mark.parametrize(("retry", "rc"), [("", 255), ("fine\n", 0), ("odd\n", 1)])
def test_a_retry_that_finds_nothing_leaves_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry: str, rc: int
) -> None:
    monkeypatch.setattr(ssh, "has_terminal", lambda: True)
    conn = _two_faced_ssh(tmp_path, CLOSED, retry, retry_rc=rc)
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    assert info.value.message == "cannot reach the cluster (login -> gateway): " + CLOSED.strip()


def test_a_retry_that_times_out_leaves_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodetunnel.errors import CommandTimeout

    conn = _two_faced_ssh(tmp_path, CLOSED, ASKS_CODE)
    real = ssh.run

    def run(argv: list[str], **kw: Any) -> Completed:
        if str(conn.diagnose_config_path) in argv:
            raise CommandTimeout(argv, 60, "")
        return real(argv, **kw)

    monkeypatch.setattr(ssh, "run", run)
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    assert info.value.message == "cannot reach the cluster (login -> gateway): " + CLOSED.strip()


def test_a_batch_mode_login_at_an_mfa_host_is_not_a_refused_code(
    fake_ssh: FakeSsh, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A keeper's config says BatchMode yes: ssh asks nothing even where a terminal is.
    monkeypatch.setattr(ssh, "has_terminal", lambda: True)
    conn = make_ssh(ssh_binary=fake_ssh(rc=255, stderr=ASKS_CODE))
    conn.batch_mode = True
    with pytest.raises(SshError) as info:
        conn.run(["squeue"], timeout_s=10)
    err = info.value
    assert err.message.startswith("authentication at login asks for a one-time code")
    assert "not accepted" not in (err.hint or "")


@pytest.mark.parametrize(
    ("stderr", "start"),
    [
        (ASKS_CODE, "authentication at login asks for a one-time code or password"),
        ("u@login: Permission denied (password).", "authentication at login asks for"),
        # A key was refused too: not only for want of an answer.
        ("u@login: Permission denied (publickey,keyboard-interactive).", "authentication refused"),
        ("u@login: Permission denied (publickey).", "authentication refused"),
    ],
)
def test_a_login_without_a_terminal(stderr: str, start: str) -> None:
    err = translate_ssh_failure(["ssh"], _completed(stderr), ["login", "gateway"], prompt=False)
    assert err.message.startswith(start)
    assert "not accepted" not in (err.hint or "")


@needs_ssh
def test_every_config_of_a_session_clears_forwardings_at_its_hops_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodetunnel.transport.openssh import OpenSSHTransport

    user = tmp_path / "user config"
    user.write_text("Host *\n    LocalForward 27000 licence:27000\n")
    monkeypatch.setattr(ssh, "USER_CONFIG", user)
    monkeypatch.setattr(ssh, "SYSTEM_CONFIG", tmp_path / "no-system-config")
    monkeypatch.setattr(ssh, "has_terminal", lambda: False)
    transport = OpenSSHTransport(["login", "gateway"], local_dir=tmp_path / "s",
                                 settings=SshSettings(multiplex=False))  # fmt: skip
    transport.connect()
    transport.adopt()  # a keeper without a terminal: BatchMode
    for name in ("ssh_config", "ssh_config.diagnose", "ssh_config.batch"):
        config = tmp_path / "s" / name
        for hop in ("login", "gateway"):
            assert "localforward" not in _ssh_g(config, hop), name
        assert _ssh_g(config, "node1")["localforward"] == "27000 [licence]:27000", name
