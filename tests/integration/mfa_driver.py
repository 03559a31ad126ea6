"""Drive nodetunnel on a pseudo-terminal and answer its MFA prompts like a person.

A person reads the code off a phone (``oathtool --totp`` here) when asked, and a
code is accepted once: after a login, the next one waits for the next 30 s step.
Prompts are counted on the terminal and, independently, in the login host's
sshd log (one "Postponed keyboard-interactive" line per prompt, one "Accepted
keyboard-interactive/pam" per login).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

import pexpect

from nodetunnel.sandbox import mfa
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv

PROMPT = r"One-time password \(OATH\) for `[^']*': "
STEP_S = mfa.STEP_S


def totp(secret_hex: str, at: float) -> str:
    argv = ["oathtool", "--totp", "-N", f"@{int(at)}", secret_hex]
    return subprocess.check_output(argv, text=True).strip()


class Phone:
    """One user's authenticator: the current code, never one already used (a person waits)."""

    def __init__(self, sb: Sandbox, user: str) -> None:
        self.user = user
        self.secret = mfa.secret_file(sb, user).read_text().strip()
        self.last_step = -1

    def code(self) -> str:
        while int(time.time()) // STEP_S <= self.last_step:
            time.sleep(min(1.0, (self.last_step + 1) * STEP_S - time.time() + 0.05))
        now = time.time()
        self.last_step = int(now) // STEP_S
        return totp(self.secret, now)

    def wrong(self) -> str:
        now = time.time()
        valid = {totp(self.secret, now + d) for d in (-STEP_S, 0, STEP_S)}
        return next(f"{n:06d}" for n in range(123456, 1_000_000) if f"{n:06d}" not in valid)


@dataclasses.dataclass
class LogCount:
    prompts: int
    logins: int
    failures: int


class SshdLog:
    """Counts in the login host's sshd log from a starting point."""

    def __init__(self, sb: Sandbox, user: str) -> None:
        self.path: Path = sb.paths.log_dir / "sshd-login.log"
        self.user = user
        self.offset = self.path.stat().st_size

    def since(self) -> LogCount:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        u = re.escape(self.user)

        def n(pat: str) -> int:
            return len(re.findall(pat + rf" for {u} from", text))

        return LogCount(
            n(r"Postponed keyboard-interactive"),
            n(r"Accepted keyboard-interactive/pam"),
            n(r"Failed keyboard-interactive/pam"),
        )

    def mark(self) -> None:
        self.offset = self.path.stat().st_size


@dataclasses.dataclass
class Run:
    child: pexpect.spawn
    prompts: int = 0
    output: str = ""

    @property
    def exitstatus(self) -> int | None:
        return self.child.exitstatus


def spawn(user: str, argv: list[str], *, timeout_s: float = 120) -> Run:
    """``argv`` as ``user`` on a new pty that is its controlling terminal."""
    full = as_user_argv(user, argv)
    child = pexpect.spawn(full[0], full[1:], encoding="utf-8", timeout=timeout_s, cwd="/",
                          dimensions=(40, 200))  # fmt: skip
    return Run(child)


def answer_until(
    run: Run,
    phone: Phone,
    until: str | type[pexpect.EOF],
    *,
    delay_s: float = 0.0,
    wrong: bool = False,
    timeout_s: float = 120,
) -> Run:
    """Answer every prompt (after ``delay_s``) until ``until`` (a regex, or EOF) is seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = max(1.0, deadline - time.monotonic())
        i = run.child.expect([PROMPT, until], timeout=left)
        run.output += (run.child.before or "") + (
            run.child.after if isinstance(run.child.after, str) else ""
        )
        if i == 1:
            break
        run.prompts += 1
        if delay_s:
            time.sleep(delay_s)
        run.child.sendline(phone.wrong() if wrong else phone.code())
    if until is pexpect.EOF:
        run.child.close()
    return run


def run_to_end(user: str, argv: list[str], phone: Phone, **kw: object) -> Run:
    """Run ``argv`` to its end, answering prompts; its exit status in ``.exitstatus``."""
    return answer_until(spawn(user, argv), phone, pexpect.EOF, **kw)  # type: ignore[arg-type]
