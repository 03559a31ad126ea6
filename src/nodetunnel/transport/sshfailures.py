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


def translate_ssh_failure(
    argv: Sequence[str],
    done: Completed,
    jump: Sequence[str],
    aliases: Mapping[str, str] | None = None,
) -> SshError:
    """Turn ssh's exit 255 and its stderr into one message with a next step.

    ``aliases`` maps the host names ssh may report (a hop's HostName) to the hop names.
    """
    err = done.stderr.strip()
    last = err.splitlines()[-1] if err else "no error output"
    chain = " -> ".join(jump)
    refused = _REFUSED_AT.search(err)
    if refused and "keyboard-interactive" in refused["how"] and "publickey" not in refused["how"]:
        host = (aliases or {}).get(refused["host"], refused["host"])
        last = next(ln for ln in err.splitlines() if "Permission denied" in ln).strip()
        hint = (
            f"the one-time code (or password) was not accepted: run the command again and enter "
            f"a fresh code; check that 'ssh {shlex.quote(host)}' works in this terminal"
        )
        msg = f"authentication failed at {host} ({refused['how']}) on the way {chain}: {last}"
    elif "Permission denied" in err or "Too many authentication failures" in err:
        hint = (
            f"check that 'ssh {shlex.quote(jump[0])}' works from this terminal (keys, agent, "
            "user name in ~/.ssh/config)"
        )
        msg = f"authentication refused on the way {chain}: {last}"
    elif "timed out during banner exchange" in err:
        hint = (
            "a host on the way did not answer in time: if it asked for a code, answer sooner or "
            "raise connect_timeout_s (or ConnectTimeout in your ssh config); else check the network"
        )
        msg = f"timed out waiting for a host on the way {chain} to answer: {last}"
    elif "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        hint = "connect once with plain ssh to review and accept the host key; nodetunnel never skips it"
        msg = f"host key check failed on the way {chain}: {last}"
    elif any(s in err for s in ("Could not resolve hostname", "Name or service not known")):
        hint = "check the host names in the cluster profile (nodetunnel config)"
        msg = f"unknown host on the way {chain}: {last}"
    elif any(
        s in err
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
    return SshError(argv, 255, err, message=msg, hint=hint)


__all__ = ["translate_ssh_failure"]
