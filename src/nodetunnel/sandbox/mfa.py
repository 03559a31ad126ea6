"""MFA at the login host of the mini-cluster, as at sites with a TOTP bastion.

:func:`enable_mfa` makes the login host's sshd ask for a key *and* a one-time
code (``AuthenticationMethods publickey,keyboard-interactive``); the code comes
from a real PAM module, Debian's ``pam_oath`` (TOTP, 30 s steps, 6 digits, one
step of slack either side). As with a phone app, a code is accepted once: a
second login in the same 30 s step needs the next step's code.

Each test user gets its own secret, kept root-only in ``ROOT/mfa/USER.hex``;
``oathtool --totp $(cat ROOT/mfa/ntalice.hex)`` prints the current code. The
usersfile (``ROOT/mfa/users.oath``, 0600) is rewritten by pam_oath on every
login (it records the last step used), so it lives in a directory of its own.

The switch rewrites the login host's ``sshd_config`` and its private
``/etc/pam.d/sshd`` in place and has sshd re-read them (SIGHUP: it re-executes
itself, same PID); connections already made are untouched. A self-check then
logs in without a terminal and expects the refusal ssh gives when a code is
needed (or, for :func:`disable_mfa`, a plain key login to work).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PrerequisiteError, SandboxError
from ..proc import NotReady, run, wait_until
from . import render
from .topology import USERS

if TYPE_CHECKING:
    from .cluster import Sandbox

HOST = "login"
STEP_S = 30
_PAM_DIRS = ("/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security",
             "/usr/lib/x86_64-linux-gnu/security", "/usr/lib/security", "/lib/security")  # fmt: skip
#: What ssh shows (after a "(user@host) " prefix) when pam_oath asks for the code.
PROMPT_TEXT = "One-time password (OATH) for `USER': "


def mfa_dir(sb: Sandbox) -> Path:
    return sb.paths.root / "mfa"


def secret_file(sb: Sandbox, user: str) -> Path:
    """The user's TOTP secret (hex), readable by root only."""
    return mfa_dir(sb) / f"{user}.hex"


def pam_stack(system_sshd_pam: str, usersfile: Path) -> str:
    """Debian's /etc/pam.d/sshd with its password stack replaced by pam_oath. Pure."""
    oath = (f"auth requisite pam_oath.so usersfile={usersfile} window=1 digits=6\n"
            "# (the key is checked by sshd itself: AuthenticationMethods publickey,...)")  # fmt: skip
    lines = system_sshd_pam.splitlines()
    at = [i for i, line in enumerate(lines) if line.split() == ["@include", "common-auth"]]
    if not at:
        raise SandboxError("/etc/pam.d/sshd has no '@include common-auth' line to replace",
                           hint="the MFA mode expects Debian's /etc/pam.d/sshd")  # fmt: skip
    lines[at[0]] = oath
    return "\n".join(lines) + "\n"


def usersfile_text(secrets_hex: dict[str, str]) -> str:
    """pam_oath's usersfile: one TOTP (30 s, 6 digits) line per user, no PIN. Pure."""
    return "".join(f"HOTP/T{STEP_S}/6\t{u}\t-\t{h}\n" for u, h in sorted(secrets_hex.items()))


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _check_prerequisites() -> None:
    if shutil.which("oathtool") is None or not any(
        Path(d, "pam_oath.so").exists() for d in _PAM_DIRS
    ):
        raise PrerequisiteError("pam_oath or oathtool is not installed: the MFA mode needs them",
                                hint="apt-get install libpam-oath oathtool (./scripts/setup does)")  # fmt: skip


def _switch(sb: Sandbox, state: dict[str, Any], mfa: bool) -> None:
    """Write the login host's sshd and PAM config for ``mfa`` and have sshd re-read them."""
    host = sb.topo.host(HOST)
    hd = sb.paths.host_dir(HOST)
    base = render.pam_sshd(Path("/etc/pam.d/sshd").read_text(), adopt=False)
    pam = pam_stack(base, mfa_dir(sb) / "users.oath") if mfa else base
    # In place: the host's /etc/pam.d is a bind mount of this directory; PAM reads it per login.
    (hd / "etc" / "pam.d" / "sshd").write_text(pam)
    (hd / "sshd_config").write_text(render.sshd_config(host, sb.paths, mfa=mfa))
    ref = state["processes"][f"{HOST}/sshd"]
    sb.check_alive(state, f"{HOST}/sshd")
    os.kill(int(ref["pid"]), signal.SIGHUP)  # sshd re-executes itself with the new config

    def switched() -> bool:
        sb.check_alive(state, f"{HOST}/sshd")
        done = run(probe_argv(sb), timeout_s=15, check=False)
        if mfa and "Permission denied (keyboard-interactive)" in done.stderr:
            return True
        if not mfa and done.returncode == 0:
            return True
        raise NotReady(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")

    wait_until(switched, timeout_s=20, what=f"the login host's sshd with MFA {'on' if mfa else 'off'}",
               hint=f"see {sb.paths.log_dir}/sshd-{HOST}.log")  # fmt: skip


def probe_argv(sb: Sandbox) -> list[str]:
    """A key-only, terminal-less login to the login host as the first test user."""
    from .cluster import as_user_argv

    ssh = ["ssh", "-F", str(sb.paths.ssh_config), "-o", "BatchMode=yes", "-o", "ControlPath=none",
           "-o", "ConnectTimeout=5", HOST, "true"]  # fmt: skip
    return as_user_argv(USERS[0], ssh)


def enable_mfa(sb: Sandbox, state: dict[str, Any]) -> dict[str, Path]:
    """Key + TOTP at the login host; new secrets. Returns each user's secret file."""
    _check_prerequisites()
    d = mfa_dir(sb)
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    hexes = {u: secrets.token_hex(20) for u in USERS}
    for user, h in hexes.items():
        _private_write(secret_file(sb, user), h + "\n")
    _private_write(d / "users.oath", usersfile_text(hexes))
    state["mfa"] = {"host": HOST, "users": list(USERS)}
    try:
        _switch(sb, state, True)
    except BaseException:
        state.pop("mfa", None)
        _switch(sb, state, False)
        raise
    return {u: secret_file(sb, u) for u in USERS}


def disable_mfa(sb: Sandbox, state: dict[str, Any]) -> bool:
    """A key alone is enough again at the login host; return whether MFA was on."""
    was = bool(state.pop("mfa", None))
    _switch(sb, state, False)
    shutil.rmtree(mfa_dir(sb), ignore_errors=True)
    return was


def describe(state: dict[str, Any] | None) -> str:
    """One line for ``sandbox status``: how the login host authenticates."""
    if (state or {}).get("mfa"):
        return f"key + one-time code (TOTP, pam_oath) at {HOST}"
    return "key only"


__all__ = ["PROMPT_TEXT", "STEP_S", "describe", "disable_mfa", "enable_mfa", "mfa_dir",
           "pam_stack", "probe_argv", "secret_file", "usersfile_text"]  # fmt: skip
