"""Helpers for integration tests: run things as the test users, submit and watch jobs."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nodetunnel.events import parse_json_output
from nodetunnel.proc import Completed, NotReady, ProcessRef, run, wait_until
from nodetunnel.quoting import remote_command
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv
from nodetunnel.sandbox.topology import CGROUP_NAME, USERS

ALICE, BOB = USERS
CLUSTER_VENV = Path("/opt/nodetunnel-cluster-venv")  # built by scripts/setup
LAPTOP_VENV = Path("/opt/nodetunnel-laptop-venv")


def result_json(stdout: str) -> Any:
    """The result object a ``--json`` start command printed, after its progress events."""
    return parse_json_output(stdout)[1]


@contextlib.contextmanager
def recorded_notifications(base: list[str], user: str = ALICE) -> Iterator[tuple[list[str], Path]]:
    """``base`` (an ``env ... nodetunnel`` argv) that records its notifications instead of
    showing them (``NODETUNNEL_NOTIFIER=record:PATH``), and PATH, in a directory of ``user``'s
    removed afterwards."""
    notes_dir = Path(tempfile.mkdtemp(prefix="nodetunnel-notes-", dir="/var/tmp"))
    try:
        account = pwd.getpwnam(user)
        os.chown(notes_dir, account.pw_uid, account.pw_gid)
        notes = notes_dir / "notes.jsonl"
        assert base[0] == "env"
        yield ["env", f"NODETUNNEL_NOTIFIER=record:{notes}", *base[1:]], notes
    finally:
        shutil.rmtree(notes_dir, ignore_errors=True)


def _has_result(out: bytes) -> bool:
    """Whether a ``--json`` command's stdout holds its result object (not only progress events)."""
    try:
        parse_json_output(out.decode())
    except ValueError:
        return False
    return True


def squeue(sb: Sandbox) -> list[str]:
    out = sb.run_in("gateway", ["squeue", "-h", "-o", "%i %u %T %N"])
    return [line for line in out.splitlines() if line.strip()]


def as_user(user: str, argv: list[str], *, timeout_s: float = 30, check: bool = False) -> Completed:
    """Run ``argv`` on the laptop as a test user (their HOME, no root environment)."""
    return run(
        as_user_argv(user, argv),
        timeout_s=timeout_s,
        check=check,
        cwd="/",
    )


def ssh_argv(
    sb: Sandbox, *, jump: str | None, host: str, command: list[str] | None = None
) -> list[str]:
    argv = ["ssh", "-F", str(sb.paths.ssh_config), "-o", "BatchMode=yes"]
    if jump:
        argv += ["-J", jump]
    argv.append(host)
    if command:
        argv += ["--", remote_command(command)]
    return argv


def user_ssh(
    sb: Sandbox,
    user: str,
    *,
    jump: str | None,
    host: str,
    command: list[str],
    timeout_s: float = 30,
) -> Completed:
    return as_user(user, ssh_argv(sb, jump=jump, host=host, command=command), timeout_s=timeout_s)


def sbatch(sb: Sandbox, user: str, *args: str) -> str:
    """Submit a job as ``user`` through login -> gateway, like a researcher would; return its id."""
    home = str(sb.paths.user_home(user))
    res = user_ssh(
        sb, user, jump="login", host="gateway", command=["sbatch", "--parsable", "-D", home, *args]
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def job_state(sb: Sandbox, job_id: str) -> dict[str, str]:
    out = sb.run_in("gateway", ["scontrol", "-o", "show", "job", job_id])
    fields = {}
    for word in out.split():
        key, _, value = word.partition("=")
        fields[key] = value
    return fields


def wait_job(sb: Sandbox, job_id: str, states: set[str], timeout_s: float = 30) -> dict[str, str]:
    def probe() -> dict[str, str] | None:
        info = job_state(sb, job_id)
        if info.get("JobState") in states:
            return info
        raise NotReady(f"job {job_id} is {info.get('JobState')}")

    return wait_until(probe, timeout_s=timeout_s, what=f"job {job_id} to reach {sorted(states)}")


def popen_as_user(user: str, argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        as_user_argv(user, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd="/",
    )


def jupyter_argv(base: list[str], *extra: str) -> list[str]:
    return [*base, "jupyter", "--cluster", "sandbox", "--venv", str(CLUSTER_VENV),
            "--no-browser", "--json", *extra]  # fmt: skip


def user_processes(user: str) -> list[str]:
    """The user's live processes on the laptop side (not jobs or sessions on the cluster)."""
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,stat=,args="], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    return [
        line
        for line in out.splitlines()
        if line.split()[1][0] not in "ZX" and not _on_the_cluster(int(line.split()[0]))
    ]


def node_processes(user: str, node: str) -> list[str]:
    """The user's live processes on one host of the mini-cluster (e.g. a job's app on node1)."""
    out = subprocess.run(["ps", "-ww", "-u", user, "-o", "pid=,stat=,args="], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    return [
        line
        for line in out.splitlines()
        if line.split()[1][0] not in "ZX" and _cgroup_of(int(line.split()[0])) == node
    ]


def _cgroup_of(pid: int) -> str | None:
    """The mini-cluster host whose cgroup ``pid`` is in (one PID namespace with the laptop)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        _, hierarchy, path = line.split(":", 2)
        if hierarchy == "name=systemd" and path.startswith(f"/{CGROUP_NAME}/"):
            return path.split("/")[2]
    return None


def _on_the_cluster(pid: int) -> bool:
    """True for processes of the mini-cluster's hosts (one PID namespace with the laptop)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return f":name=systemd:/{CGROUP_NAME}/" in text


def state_dir(user: str) -> Path:
    """Where nodetunnel keeps ``user``'s session records on the laptop."""
    return Path(pwd.getpwnam(user).pw_dir) / ".local" / "state" / "nodetunnel" / "sessions"


def runtime_dir(user: str) -> Path:
    """``user``'s private laptop-side runtime dir (no XDG_RUNTIME_DIR under setpriv)."""
    return Path(f"/tmp/nodetunnel-{pwd.getpwnam(user).pw_uid}")


def end_leftovers(user: str) -> None:
    """After a failed test: end what nodetunnel left for ``user`` on the laptop, by PID.

    The processes keeping sessions (from the records), their tunnels, then the
    shared connections of every session directory.
    """
    records = sorted(state_dir(user).glob("nt-*.json")) if state_dir(user).is_dir() else []
    for path in records:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for pid, start in ((record.get("pid"), record.get("pid_start")),
                           (record.get("tunnel_pid"), record.get("tunnel_start"))):  # fmt: skip
            if pid and start:
                ProcessRef(pid, start).stop(timeout_s=3)
    top = runtime_dir(user)
    # Session dirs, then the clusters' shared-connection dirs (see transport.sharing).
    for session_dir in sorted(top.glob("nt-*")) + sorted(top.glob("q-*")) + sorted(top.glob("c-*")):
        with contextlib.suppress(OSError, ValueError):  # a keeper may remove it meanwhile
            pid_file = session_dir / "tunnel.pid"
            if pid_file.exists():
                pid, start = map(int, pid_file.read_text().split())
                ProcessRef(pid, start).stop(timeout_s=3)
            for sock in session_dir.iterdir():
                if sock.is_socket():
                    exit_master = ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "nodetunnel"]
                    run(as_user_argv(user, exit_master), timeout_s=10, check=False)
    # What a hard-killed session leaves: its directory (no process of it is left to remove it).
    for session_dir in sorted(top.glob("nt-*")) + sorted(top.glob("q-*")):
        shutil.rmtree(session_dir, ignore_errors=True)


class Cli:
    """A `nodetunnel` process run as a test user, in its own process group (so SIGINT works)."""

    def __init__(self, user: str, argv: list[str]) -> None:
        self.user = user
        self.proc = popen_as_user(user, argv)
        self.events: list[dict[str, object]] = []  # the --json progress events read so far
        self._out = b""  # stdout read so far
        self._parsed = 0  # how much of it wait_event has read as event lines

    def wait_event(self, matches: Any, timeout_s: float = 90) -> dict[str, object]:
        """The first ``--json`` progress event (a line of stdout) for which ``matches`` is true,
        reading stdout as it comes; every event read is kept in :attr:`events`."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while True:
            while (end := self._out.find(b"\n", self._parsed)) != -1:
                try:
                    event = json.loads(self._out[self._parsed : end])
                except ValueError:
                    break  # the first line of the result object: read_json's
                if not (isinstance(event, dict) and "event" in event):
                    break
                self._parsed = end + 1
                self.events.append(event)
                if matches(event):
                    return event  # type: ignore[no-any-return]
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"no such event within {timeout_s} s; events: "
                                     f"{self.events}; stderr: {self.stderr()}")  # fmt: skip
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    continue  # end of output: poll() tells above
                self._out += chunk

    def read_json(self, timeout_s: float = 90, *, allow_exit: bool = False) -> dict[str, object]:
        """The JSON object the CLI prints once the app is reachable (raw reads: no buffering);
        the progress events before it are kept in :attr:`events`."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = self._out  # what wait_event read already
        if buf.rstrip().endswith(b"}"):
            with contextlib.suppress(ValueError):
                self.events, result = parse_json_output(buf.decode())
                return result  # type: ignore[no-any-return]
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    if allow_exit and not _has_result(buf):
                        self.proc.wait(timeout=10)
                        return {}
                    break
                buf += chunk
                self._out = buf
                if buf.rstrip().endswith(b"}"):
                    with contextlib.suppress(ValueError):  # only events so far, or half an object
                        self.events, result = parse_json_output(buf.decode())
                        return result  # type: ignore[no-any-return]
            elif self.proc.poll() is not None:
                break
        if allow_exit and self.proc.poll() is not None and not _has_result(buf):
            return {}
        self.stop()
        raise AssertionError(f"no JSON from nodetunnel; stdout={buf!r} stderr={self.stderr()}")

    def interrupt(self, timeout_s: float = 30) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Hard stop after a failed test: the CLI, then what it left (tunnel, shared connections)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        end_leftovers(self.user)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else "(still running)"


ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# Runs in the page (same origin as JupyterLab): start a kernel over the REST API (or use
# the given one), execute code over the kernel's websocket, return what it printed.
EXECUTE_JS = """
async ([token, code, kernelId]) => {
  const headers = {Authorization: 'token ' + token, 'Content-Type': 'application/json'};
  const kernel = kernelId ? {id: kernelId}
    : await (await fetch('/api/kernels', {method: 'POST', headers, body: '{}'})).json();
  const ws = new WebSocket(
    `ws://${location.host}/api/kernels/${kernel.id}/channels?token=${token}`);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const msgId = 'nodetunnel-test-' + Date.now();
  const request = {
    header: {msg_id: msgId, username: 'test', session: 'nodetunnel-test',
             msg_type: 'execute_request', version: '5.3', date: new Date().toISOString()},
    parent_header: {}, metadata: {}, channel: 'shell', buffers: [],
    content: {code, silent: false, store_history: false, user_expressions: {},
              allow_stdin: false, stop_on_error: true},
  };
  const printed = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no output within 60 s')), 60000);
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.parent_header.msg_id !== msgId) return;
      if (msg.msg_type === 'stream') { clearTimeout(timer); resolve(msg.content.text); }
      if (msg.msg_type === 'error') { clearTimeout(timer); reject(new Error(msg.content.evalue)); }
    };
    ws.send(JSON.stringify(request));
  });
  ws.close();
  return {printed, kernel: kernel.id};
}
"""
