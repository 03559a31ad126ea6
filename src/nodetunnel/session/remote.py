"""The session directory on the cluster: the one owner of its files, on both sides.

Each session has a private directory ``~/.nodetunnel/sessions/ID`` (mode 0700)
in the cluster home, which the login host and the job's node share. Its files:

========== ============ ================================================
file       written by   what it holds
========== ============ ================================================
token      laptop       the app's secret (0600; the app reads it)
endpoint   job          ``socket=PATH`` or ``port=N``, and ``host=NODE``
error      job          why the job gave up before the app was ready
heartbeat  laptop       the time of the last check-in (for the lease)
lease      job          the lease length in seconds (for other laptops)
ended      job          why the job ended itself (the lease expired)
job.log    scheduler    the job's output
========== ============ ================================================

The job side is shell (the fragments below, used by :mod:`.jobscript`); the
laptop side is :class:`RemoteDir`, over a transport. Remote output the laptop
parses is always marked (``nodetunnel-KEY=VALUE`` lines), so a login script
that prints a banner cannot be taken for an answer.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..errors import NodetunnelError
from ..scheduler.base import CommandRunner
from .model import SESSIONS_DIR, Endpoint, parse_key_values

TOKEN = "token"  # noqa: S105 - the name of the file that holds it
ENDPOINT = "endpoint"
ERROR = "error"
HEARTBEAT = "heartbeat"
LEASE = "lease"
ENDED = "ended"
JOB_LOG = "job.log"
MARK = "nodetunnel-"  # prefix of the lines we parse from remote output
DIR_VAR = "NT_SESSION_DIR"  # the directory, in the job script


def _in_dir(name: str) -> str:
    return f'"${DIR_VAR}/{name}"'


in_dir = _in_dir  # a file of the session directory, in the job script


def marked(out: str) -> dict[str, str]:
    """The ``nodetunnel-KEY=VALUE`` lines of remote output (login scripts may print too)."""
    lines = (ln.removeprefix(MARK) for ln in out.splitlines() if ln.startswith(MARK))
    return parse_key_values("\n".join(lines))


# ------------------------------------------------------------------ job side
def job_prelude(session_dir_quoted: str) -> list[str]:
    """The directory, the token file, and ``nt_fail`` (writes ``error``, ends the job)."""
    return [
        f"{DIR_VAR}={session_dir_quoted}",
        f"NT_TOKEN_FILE={_in_dir(TOKEN)}",
        "umask 077",
        "nt_fail() {",
        "    printf 'nodetunnel: %s\\n' \"$1\" >&2",
        f"    printf '%s\\n' \"$1\" > {_in_dir(ERROR + '.tmp')} && "
        f"mv -f {_in_dir(ERROR + '.tmp')} {_in_dir(ERROR)}",
        "    exit 1",
        "}",
    ]


def job_write_endpoint(kind: str, value_var: str, node_var: str) -> str:
    """Write the endpoint (``socket`` or ``port``) to a temporary file, see :func:`job_publish`."""
    return (f"printf '{kind}=%s\\nhost=%s\\n' \"${value_var}\" \"${node_var}\" > "
            f"{_in_dir(ENDPOINT + '.tmp')}")  # fmt: skip


def job_publish() -> str:
    """Publish the endpoint atomically: the laptop sees all of it or nothing."""
    return f"mv -f {_in_dir(ENDPOINT + '.tmp')} {_in_dir(ENDPOINT)}"


def job_lease_start(lease_s: float) -> list[str]:
    """The lease starts when the app is ready (its length is kept for other laptops)."""
    return [f"date +%s > {_in_dir(HEARTBEAT)}", f"echo {int(lease_s)} > {_in_dir(LEASE)}"]


def lease_check_interval_s(lease_s: float) -> int:
    """How often the job looks at the heartbeat: often enough to end close to the lease."""
    return max(1, min(30, int(lease_s // 4)))


def job_lease_watcher(lease_s: float, cancel_self: str) -> list[str]:
    """A watcher that ends the job (``cancel_self``) when the heartbeat is older than the lease."""
    expired = f"no nodetunnel has kept this session for {int(lease_s)} s: the lease expired"
    return [
        f"NT_LEASE_S={int(lease_s)}",
        "# The laptop rewrites the heartbeat while it keeps the session; the job ends without it.",
        "# Its content is read (an open gets it fresh even from a caching shared home); a read",
        "# that finds nothing readable keeps the last good time, so only a lease without any",
        "# check-in ends the job.",
        "NT_LAST=$(date +%s)",
        f"( while sleep {lease_check_interval_s(lease_s)}; do",
        '    kill -0 "$NT_PID" 2>/dev/null || exit 0',
        f'    NT_SEEN=$(cat {_in_dir(HEARTBEAT)} 2>/dev/null) || NT_SEEN=""',
        '    case "$NT_SEEN" in ""|*[!0-9]*) ;; *) NT_LAST=$NT_SEEN ;; esac',
        '    if [ $(( $(date +%s) - NT_LAST )) -gt "$NT_LEASE_S" ]; then',
        f"        printf 'nodetunnel: %s\\n' {shlex.quote(expired + '; ending the job')} >&2",
        f"        printf '%s\\n' {shlex.quote(expired)} > {_in_dir(ENDED)}",
        f'        {cancel_self} 2>/dev/null || kill "$NT_PID"',
        "        exit 0",
        "    fi",
        "done ) &",
    ]


# --------------------------------------------------------------- laptop side
_CREATE = (
    'umask 077; d="$HOME/$1/$2"; mkdir -p "$d" && chmod 700 "$d" && cat > "$d/token" && '
    'printf "\\n$3dir=%s\\n$3user=%s\\n" "$d" "$(id -un)"'
)
_CLAIM = (
    'd="$HOME/$1/$2"; m="$3"; printf "\\n%sdir=%s\\n" "$m" "$d"; '
    '[ -r "$d/endpoint" ] && while IFS= read -r l; do printf "%s%s\\n" "$m" "$l"; '
    'done < "$d/endpoint"; [ -r "$d/lease" ] && printf "%slease=%s\\n" "$m" "$(cat "$d/lease")"; '
    'printf "%stoken=%s\\n" "$m" "$(cat "$d/token")"'
)
_BEAT = 'date +%s > "$1.tmp" && mv -f "$1.tmp" "$1"'


class RemoteDir:
    """The laptop's side of one session's directory, through ``runner`` (the transport)."""

    def __init__(self, runner: CommandRunner, session_id: str, path: str = "") -> None:
        self.runner = runner
        self.session_id = session_id
        self.path = path  # known once created (or from the session's record)

    def create(self, token: str, *, where: str) -> str:
        """Create the 0700 directory with the token; return the user's name there."""
        out = self.runner(["sh", "-c", _CREATE, "sh", SESSIONS_DIR, self.session_id, MARK],
                          input=token, timeout_s=60).stdout  # fmt: skip
        fields = marked(out)
        try:
            self.path = fields["dir"]
            return fields["user"]
        except KeyError:
            raise NodetunnelError(
                f"could not create the session directory on {where}: "
                f"unexpected output {out[-300:]!r}",
                hint="check that your home directory there is writable",
            ) from None

    def read(self, name: str) -> str | None:
        done = self.runner(["cat", f"{self.path}/{name}"], check=False, timeout_s=30)
        return done.stdout if done.returncode == 0 else None

    def endpoint(self) -> Endpoint | None:
        text = self.read(ENDPOINT)
        return Endpoint.parse(text) if text else None

    def error(self) -> str | None:
        return self.read(ERROR)

    def ended(self) -> str | None:
        return self.read(ENDED)

    def log_tail(self, lines: int = 15) -> str:
        done = self.runner(["tail", "-n", str(lines), f"{self.path}/{JOB_LOG}"],
                           check=False, timeout_s=30)  # fmt: skip
        return done.stdout.strip()

    def beat(self, *, timeout_s: float = 30) -> None:
        """Check in for the lease: the heartbeat file gets the cluster's time, atomically."""
        self.runner(["sh", "-c", _BEAT, "sh", f"{self.path}/{HEARTBEAT}"], timeout_s=timeout_s)

    def claim_info(self) -> dict[str, str]:
        """What another laptop needs to attach: ``dir``, ``token``, the endpoint, ``lease``."""
        out = self.runner(["sh", "-c", _CLAIM, "sh", SESSIONS_DIR, self.session_id, MARK],
                          timeout_s=60).stdout  # fmt: skip
        info = marked(out)
        self.path = info.get("dir", self.path)
        return info


def remove_dirs(runner: CommandRunner, dirs: Sequence[str]) -> None:
    """Remove session directories on the cluster (best effort: a failure is not fatal)."""
    if dirs:
        runner(["rm", "-rf", "--", *dirs], check=False, timeout_s=30)


def job_log_argv(session_dir: str, *, follow: bool, lines: int = 100) -> list[str]:
    """The command (for the submit host) that shows the end of a session's job log."""
    return ["tail", "-n", str(lines), *(["-F"] if follow else []), f"{session_dir}/{JOB_LOG}"]
