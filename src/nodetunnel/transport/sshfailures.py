"""What ssh's exit 255 means: one message naming the real cause, with a next step."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from ..errors import SshError
from ..proc import Completed

#: Failures whose cause ssh has already named: a diagnostic retry (which cannot answer an
#: MFA prompt) would only replace it with a misleading one.
_KNOWN_FAILURE = re.compile(
    r"Permission denied|Too many authentication failures|Host key verification failed|"
    r"REMOTE HOST IDENTIFICATION HAS CHANGED|Could not resolve hostname|Name or service not known|"
    r"timed out during banner exchange|Connection timed out|No route to host|"
    r"Network is unreachable|Connection refused|not responding"
)
_REFUSED_AT = re.compile(
    r"(?:^|\n)(?:[^@\s]+@)?(?P<host>[^:\s]+): Permission denied \((?P<how>[^)]*)\)"
)


#: The methods a person answers at a prompt (a one-time code, a password).
_INTERACTIVE = ("keyboard-interactive", "password")


def needs_prompt(stderr: str) -> bool:
    """Whether ssh was refused only for want of an answer to a prompt: the methods the host
    still offers are interactive ones (keyboard-interactive, password), and no key is among
    them (the key, if any, was accepted). A login without a terminal, or with ``BatchMode``,
    cannot answer them: an MFA host always refuses it so."""
    refused = _REFUSED_AT.search(stderr)
    if refused is None:
        return False
    how = refused["how"].split(",")
    return any(m in _INTERACTIVE for m in how) and "publickey" not in how


def translate_ssh_failure(
    argv: Sequence[str],
    done: Completed,
    jump: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    *,
    finding: str = "",
    prompt: bool = True,
) -> SshError:
    """Turn ssh's exit 255 and its stderr into one message with a next step.

    ``aliases`` maps the host names ssh may report (a hop's HostName) to the hop names.
    ``finding`` is what a diagnostic retry of the same connection printed: it may name the
    cause, and it is shown after the original error, never in its place. ``prompt`` says
    whether the failed ssh could ask on a terminal (False: no terminal, or BatchMode).
    """
    err = done.stderr.strip()
    found = finding.strip()
    text = f"{err}\n{found}" if found else err
    last = err.splitlines()[-1] if err else "no error output"
    if found:
        last += f" (retried without connection sharing or prompts: {found.splitlines()[-1]})"
    chain = " -> ".join(jump)
    own = _REFUSED_AT.search(err)
    refused = own or _REFUSED_AT.search(found)
    if refused and not prompt and needs_prompt(refused[0]):
        host = (aliases or {}).get(refused["host"], refused["host"])
        hint = (
            "run the command from a terminal. At a site with MFA, connection sharing is needed "
            "(multiplex = true in the profile, the default except on Windows): the tunnel and a "
            "detached session's keeper cannot ask for a code, they ride the connections you "
            "logged in once"
        )
        msg = (
            f"authentication at {host} asks for a one-time code or password ({refused['how']}), "
            f"and this ssh had no terminal to ask it on (on the way {chain}): {last}"
        )
    elif own and "keyboard-interactive" in own["how"] and "publickey" not in own["how"]:
        host = (aliases or {}).get(own["host"], own["host"])
        last = next(ln for ln in err.splitlines() if "Permission denied" in ln).strip()
        hint = (
            f"the one-time code (or password) was not accepted: run the command again and enter "
            f"a fresh code; check that 'ssh {shlex.quote(host)}' works in this terminal"
        )
        msg = f"authentication failed at {host} ({own['how']}) on the way {chain}: {last}"
    elif "Permission denied" in text or "Too many authentication failures" in text:
        hint = (
            f"check that 'ssh {shlex.quote(jump[0])}' works from this terminal (keys, agent, "
            "user name in ~/.ssh/config)"
        )
        msg = f"authentication refused on the way {chain}: {last}"
    elif "timed out during banner exchange" in text:
        hint = (
            "a host on the way did not answer in time: if it asked for a code, answer sooner or "
            "raise connect_timeout_s (or ConnectTimeout in your ssh config); else check the network"
        )
        msg = f"timed out waiting for a host on the way {chain} to answer: {last}"
    elif "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        hint = "connect once with plain ssh to review and accept the host key; nodetunnel never skips it"
        msg = f"host key check failed on the way {chain}: {last}"
    elif any(s in text for s in ("Could not resolve hostname", "Name or service not known")):
        hint = "check the host names in the cluster profile (nodetunnel config)"
        msg = f"unknown host on the way {chain}: {last}"
    elif any(
        s in text
        for s in (
            "Connection timed out",
            "No route to host",
            "Network is unreachable",
            "Connection refused",
            "not responding",
            "Connection closed",
        )
    ):
        hint = "check your network or VPN, then try again"
        msg = f"cannot reach the cluster ({chain}): {last}"
    else:
        hint = "run the same with --debug to see the ssh command, and try it by hand"
        msg = f"ssh failed on the way {chain}: {last}"
    return SshError(argv, 255, text, message=msg, hint=hint)


__all__ = ["needs_prompt", "translate_ssh_failure"]
