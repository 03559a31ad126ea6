"""No connection sharing (``multiplex = false``, as with Windows' OpenSSH): every step
logs in on its own, and the whole detached flow still works. Logins are counted per
step in the login and gateway hosts' sshd logs (key logins: the sandbox without MFA).
"""

from __future__ import annotations

import re

from nodetunnel.proc import wait_until
from nodetunnel.sandbox.cluster import Sandbox

from .helpers import (
    BOB,
    as_user,
    end_leftovers,
    jupyter_argv,
    result_json,
    squeue,
    state_dir,
    user_processes,
)
from .test_jupyter import http_status


def _logins(sb: Sandbox, user: str) -> dict[str, int]:
    """Key logins so far at login and gateway, from their sshd logs."""
    pat = re.compile(rf"Accepted (?:publickey|keyboard-interactive/pam) for {user} from")
    return {h: len(pat.findall((sb.paths.log_dir / f"sshd-{h}.log").read_text(errors="replace")))
            for h in ("login", "gateway")}  # fmt: skip


def test_without_connection_sharing_every_step_logs_in_and_works(sandbox, laptop_nodetunnel):
    """multiplex = false (as with Windows' OpenSSH): the detached flow, logins counted per step."""
    config = sandbox.paths.user_home(BOB) / "nodetunnel-nomux.toml"
    config.write_text("[clusters.sandbox]\nmultiplex = false\n")
    config.chmod(0o644)
    base = laptop_nodetunnel
    steps: dict[str, dict[str, int]] = {}

    def step(name: str, argv: list[str]) -> str:
        before = _logins(sandbox, BOB)
        res = as_user(BOB, argv, timeout_s=120)
        assert res.returncode == 0, res.stderr
        after = _logins(sandbox, BOB)
        steps[name] = {h: after[h] - before[h] for h in after}
        return res.stdout

    try:
        info = result_json(step("start --detach",
                               jupyter_argv(base, "--detach", "--config", str(config))))  # fmt: skip
        sid, port = str(info["session_id"]), int(info["local_port"])
        assert http_status(port, "/api/status", str(info["url"]).split("token=", 1)[1]) == 200
        assert sid in step("list", [*base, "list", "--json"])
        step("logs", [*base, "logs", sid])
        step("stop", [*base, "stop", sid])
        print("logins per step without connection sharing (login, gateway):", steps)
        assert all(n["login"] >= 1 for n in steps.values()), steps  # nothing shared
        wait_until(lambda: squeue(sandbox) == [], timeout_s=30, what="the job to be gone")
        wait_until(lambda: user_processes(BOB) == [], timeout_s=15, what="nothing left running")
        assert not list(state_dir(BOB).glob("nt-*.json"))
    finally:
        end_leftovers(BOB)
