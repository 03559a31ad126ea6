"""Speed and cost of nodetunnel sessions, measured on the mini-cluster.

Run as root from a checkout: ``scripts/bench`` (``--quick`` for a short run,
``--help`` for the options). It takes the lock the integration tests take
(the machine has one sandbox), uses the mini-cluster if it is up or brings it
up (and then down again at the end), runs nodetunnel as the test user
``ntalice`` the way a researcher runs it on a laptop, prints a table and
writes ``artifacts/bench.json``.

What is measured:

1. **startup**: seconds from the command to a working URL (``/api/status``
   with the token answers 200 through the tunnel) for ``nodetunnel jupyter
   --cluster sandbox --venv ... --no-browser --json``, for ``nodetunnel attach``
   of a kept session and for ``jupyter --detach``; min/median/max over the
   repetitions, and where the time of ``jupyter`` goes (from ``--debug``).
2. **SSH handshakes**: sshd's "Accepted publickey for ntalice" lines per host
   in the sandbox's sshd logs, for one whole foreground session (start, use,
   Ctrl-C), for each attach, and for a detached session plus ``list``/``stop``.
3. **scheduler queries**: the squeue/sbatch/scancel nodetunnel runs (its
   ``--debug`` output names every command) while a healthy session is kept,
   in the foreground and detached, per minute; slurmctld's own count of RPCs
   from the user (``sdiag``) as a cross-check; and the commands per session.
4. **throughput**: a file in the user's home downloaded from JupyterLab's
   ``/files/`` endpoint through nodetunnel's tunnel and through a plain
   ``ssh -N -J login,gateway -L PORT:SOCKET NODE`` to the same socket.

Every wait has a deadline; processes are ended by PID; the sessions, jobs,
tunnels and the test file are removed also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import functools
import http.client
import json
import os
import platform
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import nodetunnel
from nodetunnel.errors import NodetunnelError
from nodetunnel.events import parse_json_output
from nodetunnel.proc import Completed, NotReady, ProcessRef, run, wait_until
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv, check_prerequisites
from nodetunnel.sandbox.topology import USERS, Paths

from . import homecache

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "artifacts" / "bench.json"
SANDBOX_LOCK = Path("/run/lock/nodetunnel-sandbox-tests.lock")  # shared with the tests
CLUSTER_VENV = Path("/opt/nodetunnel-cluster-venv")  # JupyterLab for the nodes (scripts/setup)
LAPTOP_VENV = Path("/opt/nodetunnel-laptop-venv")  # nodetunnel's dependencies, for the test user
USER = USERS[0]  # ntalice
SCHEDULER_COMMANDS = ("sbatch", "squeue", "scancel")
MB = 1_000_000
RESULT_VERSION = 1
START_TIMEOUT_S = 180.0  # one session's start, generous for a loaded 2-core machine

Say = Callable[[str], None]


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Settings:
    repetitions: int = 5  # timed starts of jupyter and of attach
    # How long a healthy session is kept while its queries are counted: a little over a
    # minute, so that a once-a-minute check falls inside the window.
    hold_s: float = 65.0
    file_mb: int = 200  # the file downloaded through both tunnels (MB = 10^6 bytes)
    rounds: int = 5  # downloads per tunnel, alternating
    quick: bool = False


QUICK = Settings(repetitions=1, hold_s=5.0, file_mb=20, rounds=1, quick=True)


# --------------------------------------------------------------------------- processes
def _collect(stream: IO[bytes], lines: list[tuple[float, str]]) -> None:
    """Append each line of ``stream`` with the time it arrived (monotonic)."""
    for raw in iter(stream.readline, b""):
        lines.append((time.monotonic(), raw.decode(errors="replace")))
    stream.close()


class Watched:
    """A program run as the test user in its own process group (so Ctrl-C can be sent to it),
    with every line of its output kept with the time it arrived."""

    def __init__(self, argv: list[str], label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            as_user_argv(USER, argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd="/",
        )
        self.stdout: list[tuple[float, str]] = []
        self.stderr: list[tuple[float, str]] = []
        if self.popen.stdout is None or self.popen.stderr is None:
            raise RuntimeError("no pipes")  # cannot happen with PIPE; tells mypy
        self._readers = [
            threading.Thread(target=_collect, args=(self.popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=_collect, args=(self.popen.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def running(self) -> bool:
        return self.popen.poll() is None

    def stderr_tail(self, lines: int = 8) -> str:
        text = "".join(line for _, line in self.stderr[-lines:]).strip()
        return text or "(no error output)"

    def json_result(self, timeout_s: float = START_TIMEOUT_S) -> tuple[dict[str, Any], float]:
        """The JSON object the command prints once the app is reachable, and when it arrived."""

        def probe() -> tuple[dict[str, Any], float]:
            lines = list(self.stdout)
            text = "".join(line for _, line in lines)
            if text.rstrip().endswith("}"):
                with contextlib.suppress(ValueError):  # the progress events come first
                    return parse_json_output(text)[1], lines[-1][0]
            if not self.running():
                self._join()
                raise BenchError(
                    f"{self.label} exited with code {self.popen.returncode} before printing its "
                    f"JSON: {self.stderr_tail()}"
                )
            raise NotReady(f"no JSON from {self.label} yet")

        return wait_until(
            probe,
            timeout_s=timeout_s,
            what=f"{self.label} to print its JSON",
            interval_s=0.01,
            max_interval_s=0.05,
        )

    def wait_exit(self, timeout_s: float) -> int:
        wait_until(
            lambda: not self.running(),
            timeout_s=timeout_s,
            what=f"{self.label} to exit",
            interval_s=0.01,
            max_interval_s=0.2,
        )
        self._join()
        return self.popen.returncode

    def interrupt(self, timeout_s: float = 60) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the process group; wait for the exit."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGINT)
        return self.wait_exit(timeout_s)

    def kill(self) -> None:
        """Hard stop (after a failure): SIGKILL to the process group we started."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.wait_exit(10)

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)


class Follower:
    """The new lines of a growing log file, each stamped with when it was read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size
        self.partial = b""
        self.lines: list[tuple[float, str]] = []

    def poll(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        now = time.monotonic()
        self.lines += [(now, line.decode(errors="replace")) for line in complete]


# ------------------------------------------------------------------- what nodetunnel ran
@dataclasses.dataclass(frozen=True)
class Command:
    """One command from nodetunnel's ``--debug`` output (``debug: run: ...``/``spawn: ...``)."""

    at: float  # when the line arrived (monotonic), 0 if unknown
    kind: str  # "run" or "spawn"
    argv: tuple[str, ...]

    @property
    def remote(self) -> str | None:
        """The program an ``ssh ... -- 'PROGRAM ARGS'`` command runs on the cluster."""
        if not self.argv or os.path.basename(self.argv[0]) != "ssh" or "--" not in self.argv:
            return None
        after = self.argv[self.argv.index("--") + 1 :]
        if len(after) != 2:
            return None
        words = shlex.split(after[1])
        if "&&" in words and words[:1] == ["printf"]:  # nodetunnel's output marker comes first
            words = words[words.index("&&") + 1 :]
        return words[0] if words else None


_DEBUG_LINE = re.compile(r"^debug: (run|spawn): (.*)$")


def parse_commands(lines: Iterable[tuple[float, str]]) -> list[Command]:
    found = []
    for at, line in lines:
        m = _DEBUG_LINE.match(line.rstrip("\n"))
        if m:
            with contextlib.suppress(ValueError):
                found.append(Command(at, m[1], tuple(shlex.split(m[2]))))
    return found


def commands_in(text: str) -> list[Command]:
    """The commands in captured ``--debug`` output (when each ran is not known)."""
    return parse_commands((0.0, line) for line in text.splitlines())


def scheduler_counts(commands: Iterable[Command]) -> dict[str, int]:
    """How many times each of squeue, sbatch and scancel was run (and their total)."""
    counts = Counter(c.remote for c in commands if c.remote in SCHEDULER_COMMANDS)
    result = {name: counts.get(name, 0) for name in SCHEDULER_COMMANDS}
    result["total"] = sum(result.values())
    return result


def parse_sdiag_user_rpcs(text: str, user: str) -> int | None:
    """The RPC count of ``user`` in sdiag's "Remote Procedure Call statistics by user"."""
    _, found, rest = text.partition("statistics by user")
    if not found:
        return None
    for line in rest.splitlines():
        m = re.match(rf"^\s*{re.escape(user)}\s*\(\s*\d+\)\s*count:\s*(\d+)", line)
        if m:
            return int(m[1])
    return 0  # no RPC from this user since slurmctld started


# ------------------------------------------------------------------------------ HTTP
def http_status(port: int, path: str, token: str | None, timeout_s: float = 10) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Authorization": f"token {token}"} if token else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_working(port: int, token: str, timeout_s: float = 30) -> float:
    """Wait until the URL works (``/api/status`` answers 200 with the token); return when."""

    def probe() -> float:
        try:
            code = http_status(port, "/api/status", token)
        except (OSError, http.client.HTTPException) as exc:
            raise NotReady(f"no answer on 127.0.0.1:{port}: {exc}") from exc
        if code != 200:
            raise NotReady(f"HTTP {code} from /api/status on 127.0.0.1:{port}")
        return time.monotonic()

    return wait_until(
        probe,
        timeout_s=timeout_s,
        what=f"the URL on port {port} to work",
        interval_s=0.01,
        max_interval_s=0.2,
    )


def download_mb_s(port: int, name: str, token: str, size: int, timeout_s: float) -> float:
    """Download ``/files/NAME`` through 127.0.0.1:port, check its size, return MB/s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    got = 0
    started = time.monotonic()
    try:
        conn.request(
            "GET", "/files/" + urllib.parse.quote(name), headers={"Authorization": f"token {token}"}
        )
        response = conn.getresponse()
        if response.status != 200:
            raise BenchError(f"GET /files/{name} on port {port}: HTTP {response.status}")
        while n := response.readinto(view):
            got += n
            if time.monotonic() - started > timeout_s:
                raise BenchError(f"downloading {name} on port {port} took over {timeout_s:.0f} s")
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    if got != size:
        raise BenchError(f"downloaded {got} bytes of {name} on port {port}, expected {size}")
    return size / elapsed / MB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ----------------------------------------------------------------------------- numbers
def summary(samples: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "min": round(min(samples), 3),
        "median": round(statistics.median(samples), 3),
        "max": round(max(samples), 3),
        "samples": [round(s, 3) for s in samples],
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    d = {host: after[host] - before[host] for host in before}
    d["total"] = sum(d.values())
    return d


def minus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] - b.get(k, 0) for k in a}


# ------------------------------------------------------------------------------ bench
class Bench:
    """The measurements, on a running sandbox, with ``nodetunnel`` (argv) run as the test user."""

    def __init__(
        self, sb: Sandbox, nodetunnel_argv: list[str], settings: Settings, say: Say
    ) -> None:
        self.sb = sb
        self.nodetunnel = nodetunnel_argv
        self.settings = settings
        self.say = say
        self.hosts = [h.name for h in sb.topo.hosts]
        self.home = sb.paths.user_home(USER)
        self.state_dir = self.home / ".local" / "state" / "nodetunnel" / "sessions"
        # Everything this run started, for the clean-up.
        self._procs: list[Watched] = []
        self._sessions: set[str] = set()
        self._jobs: set[str] = set()
        self._files: list[Path] = []

    # ------------------------------------------------------------ helpers
    def nt(self, *args: str) -> list[str]:
        return [*self.nodetunnel, "--debug", *args]

    def jupyter_argv(self, *extra: str) -> list[str]:
        return self.nt(
            "jupyter",
            "--cluster",
            "sandbox",
            "--venv",
            str(CLUSTER_VENV),
            "--no-browser",
            "--json",
            *extra,
        )

    def start(self, argv: list[str], label: str) -> Watched:
        w = Watched(argv, label)
        self._procs.append(w)
        return w

    def as_user(self, argv: list[str], timeout_s: float = 120) -> Completed:
        return run(as_user_argv(USER, argv), timeout_s=timeout_s, check=False, cwd="/")

    def ready(self, w: Watched) -> tuple[dict[str, Any], float]:
        """The session's JSON (tracked for the clean-up) and the time the URL worked."""
        info, _ = w.json_result()
        self._sessions.add(str(info["session_id"]))
        self._jobs.add(str(info["job_id"]))
        return info, wait_working(int(info["local_port"]), token_of(info))

    def auth_counts(self) -> dict[str, int]:
        """sshd's accepted public-key logins of the test user so far, per host."""
        counts = {}
        for host in self.hosts:
            log = self.sb.paths.log_dir / f"sshd-{host}.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            counts[host] = text.count(f"Accepted publickey for {USER} ")
        return counts

    def user_rpcs(self) -> int | None:
        """slurmctld's count of RPCs from the test user (run as root: not counted itself)."""
        out = self.sb.run_in("gateway", ["sdiag"], timeout_s=20, check=False)
        return parse_sdiag_user_rpcs(out, USER)

    def user_jobs(self) -> list[str]:
        out = self.sb.run_in("gateway", ["squeue", "-h", "-u", USER, "-o", "%i"], timeout_s=20)
        return out.split()

    def wait_job_gone(self, job_id: str, timeout_s: float = 60) -> None:
        """A cancelled job passes through COMPLETING; the next step starts on a quiet cluster."""
        wait_until(
            lambda: job_id not in self.user_jobs(),
            timeout_s=timeout_s,
            what=f"job {job_id} to leave the queue",
            interval_s=0.1,
        )

    def hold(
        self,
        seconds: float,
        alive: Callable[[], bool],
        port: int,
        token: str,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        """Keep a healthy session for ``seconds``: its keeper runs, the URL works at the end.

        Nothing here touches the cluster (that would be counted); ``tick`` runs every 0.2 s.
        """
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if not alive():
                raise BenchError("the process keeping the session exited during the hold")
            tick()
            time.sleep(min(0.2, left))
        tick()
        wait_working(port, token)

    # --------------------------------------------------------- the phases
    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        leftover = self.user_jobs()
        if leftover:
            raise BenchError(
                f"{USER} has jobs on the sandbox already ({', '.join(leftover)}); they would "
                "distort the numbers: end them (nodetunnel stop --all as that user) and retry"
            )
        try:
            results: dict[str, Any] = {
                "version": RESULT_VERSION,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "machine": self.machine(),
                "settings": dataclasses.asdict(self.settings),
            }
            cli_start = [self.cli_start() for _ in range(self.settings.repetitions)]
            foreground = [self.foreground_session(i) for i in range(self.settings.repetitions)]
            kept = self.kept_session()
            detached = self.detached_session()
            shared_home = homecache.measure(self, runs=self.settings.repetitions)
        except BaseException:
            try:
                self.clean_up()
            except BenchError as cleanup:  # the first error is the one to report
                self.say(str(cleanup))
            raise
        self.clean_up()
        first = foreground[0]
        results["startup"] = {
            "jupyter": summary([f["ready_s"] for f in foreground]),
            "jupyter_phases": {
                name: summary([f["phases"][name] for f in foreground]) for name in first["phases"]
            },
            "jupyter_squeue_polls": statistics.median(f["startup_squeue"] for f in foreground),
            "ctrl_c_s": summary([f["ctrl_c_s"] for f in foreground]),
            "attach": summary(kept["attach_ready_s"]),
            "detach": summary([detached["ready_s"]]),
            "detach_returns_s": summary([detached["returned_s"]]),
            "cli_start_s": summary(cli_start),
        }
        results["handshakes"] = {
            "foreground_session": first["handshakes"],
            "foreground_session_totals": [f["handshakes"]["total"] for f in foreground],
            "foreground_steps": first["handshake_steps"],
            "attach": kept["attach_handshakes"],
            "detached_list_stop": detached["handshakes"],
            "detached_steps": detached["handshake_steps"],
            "plain_ssh_forward": kept["plain_handshakes"],
        }
        results["scheduler"] = {
            "foreground_hold": first["hold"],
            "detached_hold": detached["hold"],
            "per_command": {
                "jupyter (whole session)": first["commands"],
                "jupyter --detach (until it returns)": detached["commands"]["detach"],
                "attach": kept["attach_commands"],
                "list": detached["commands"]["list"],
                "stop": detached["commands"]["stop"],
            },
        }
        results["throughput"] = kept["throughput"]
        results["shared_home"] = shared_home
        results["duration_s"] = round(time.monotonic() - started, 1)
        return results

    def machine(self) -> dict[str, Any]:
        ssh = run(["ssh", "-V"], timeout_s=10, check=False)
        slurm = self.sb.run_in("gateway", ["sinfo", "--version"], timeout_s=20, check=False)
        return {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "openssh": (ssh.stderr or ssh.stdout).strip(),
            "slurm": slurm.strip(),
            "nodes": len(self.sb.topo.nodes),
        }

    def cli_start(self) -> float:
        """How long the CLI itself takes to start (``nodetunnel --version``), for scale."""
        started = time.monotonic()
        done = self.as_user([*self.nodetunnel, "--version"], timeout_s=60)
        if done.returncode != 0:
            raise BenchError(f"nodetunnel --version failed: {done.stderr.strip()[-500:]}")
        return time.monotonic() - started

    def foreground_session(self, rep: int) -> dict[str, Any]:
        """``nodetunnel jupyter``: start, use, (hold,) Ctrl-C."""
        n = self.settings.repetitions
        self.say(f"jupyter {rep + 1}/{n}: start, use, Ctrl-C")
        before = self.auth_counts()
        cli = self.start(self.jupyter_argv(), "nodetunnel jupyter")
        info, ok_at = self.ready(cli)
        port, token = int(info["local_port"]), token_of(info)
        json_at = max(at for at, _ in cli.stdout)
        # When the job wrote its endpoint file (shared home: same path here), on our clock.
        endpoint = Path(str(info["session_dir"])) / "endpoint"
        # The URL can work a moment before the job has written that file: wait for it.
        mtime = wait_until(lambda: endpoint.exists() and endpoint.stat().st_mtime,
                           timeout_s=30, what=f"{endpoint} to be written")  # fmt: skip
        written_at = mtime - time.time() + time.monotonic()
        self.use(port, token)
        hold = None
        if rep == 0:
            hold = self.foreground_hold(cli, port, token)
        running = self.auth_counts()
        interrupted = time.monotonic()
        code = cli.interrupt()
        if code != 130:
            raise BenchError(
                f"nodetunnel jupyter exited with {code} on Ctrl-C: {cli.stderr_tail()}"
            )
        ctrl_c_s = time.monotonic() - interrupted
        self.wait_job_gone(str(info["job_id"]))
        after = self.auth_counts()
        commands = parse_commands(cli.stderr)
        sbatch_at = next(c.at for c in commands if c.remote == "sbatch")
        tunnel_at = next(c.at for c in commands if c.kind == "spawn")
        return {
            "ready_s": ok_at - cli.started,
            "phases": {
                # CLI start, ssh to login and gateway, the session directory on the cluster
                "connect_s": sbatch_at - cli.started,
                # sbatch, scheduling, until nodetunnel sees the job RUNNING and opens the tunnel
                "until_running_s": tunnel_at - sbatch_at,
                # JupyterLab starting on the node (the tunnel is up meanwhile), until its
                # endpoint file is written (nodetunnel does not wait for that file)
                "app_start_s": written_at - tunnel_at,
                # from the app listening to nodetunnel's first good answer through the tunnel
                "url_after_app_s": json_at - written_at,
            },
            "startup_squeue": sum(1 for c in commands if c.remote == "squeue" and c.at <= json_at),
            "ctrl_c_s": ctrl_c_s,
            "handshakes": delta(before, after),
            "handshake_steps": {
                "start_use": delta(before, running),
                "ctrl_c": delta(running, after),
            },
            "commands": scheduler_counts(commands),
            "hold": hold,
        }

    def use(self, port: int, token: str) -> None:
        """What a browser does first: the page, the status, the file list, the kernels."""
        for path, want in (
            ("/lab", 200),
            ("/api/status", 200),
            ("/api/contents", 200),
            ("/api/kernelspecs", 200),
            ("/api/kernels", 200),
        ):
            code = http_status(port, path, token)
            if code != want:
                raise BenchError(f"GET {path} through the tunnel: HTTP {code}, expected {want}")
        if http_status(port, "/api/status", None) != 403:
            raise BenchError("/api/status answered without the token")

    def foreground_hold(self, cli: Watched, port: int, token: str) -> dict[str, Any]:
        seconds = self.settings.hold_s
        self.say(f"  keeping the session for {seconds:g} s, counting scheduler queries")
        rpcs_before = self.user_rpcs()
        begin = time.monotonic()
        self.hold(seconds, cli.running, port, token)
        end = time.monotonic()
        rpcs_after = self.user_rpcs()
        window = [c for c in parse_commands(cli.stderr) if begin <= c.at <= end]
        return hold_result(window, begin, end, rpcs_before, rpcs_after)

    def kept_session(self) -> dict[str, Any]:
        """A ``--keep`` session, left with Ctrl-C; then ``attach`` (timed) and ``stop``."""
        self.say("jupyter --keep, Ctrl-C: a kept session to attach to")
        cli = self.start(self.jupyter_argv("--keep"), "nodetunnel jupyter --keep")
        info, _ = self.ready(cli)
        if (code := cli.interrupt()) != 130:
            raise BenchError(
                f"nodetunnel jupyter --keep exited with {code} on Ctrl-C: {cli.stderr_tail()}"
            )
        session_id = str(info["session_id"])
        ready_s: list[float] = []
        handshakes: dict[str, int] = {}
        plain: dict[str, int] = {}
        commands: dict[str, int] = {}
        throughput: dict[str, Any] = {}
        for rep in range(self.settings.repetitions):
            self.say(f"attach {rep + 1}/{self.settings.repetitions}")
            before = self.auth_counts()
            att = self.start(
                self.nt("attach", session_id, "--no-browser", "--json"), "nodetunnel attach"
            )
            again, ok_at = self.ready(att)
            ready_s.append(ok_at - att.started)
            if rep == 0:
                plain_before = self.auth_counts()
                throughput = self.throughput(again)
                plain = delta(plain_before, self.auth_counts())
            if (code := att.interrupt()) != 130:
                raise BenchError(
                    f"nodetunnel attach exited with {code} on Ctrl-C: {att.stderr_tail()}"
                )
            if rep == 0:
                # The plain forward's own logins are not the attach's.
                handshakes = minus(delta(before, self.auth_counts()), plain)
                commands = scheduler_counts(parse_commands(att.stderr))
        self.say("stop the kept session")
        done = self.as_user(self.nt("stop", session_id))
        if done.returncode != 0:
            raise BenchError(f"nodetunnel stop failed: {done.stderr.strip()[-500:]}")
        self.wait_job_gone(str(info["job_id"]))
        return {
            "attach_ready_s": ready_s,
            "attach_handshakes": handshakes,
            "attach_commands": commands,
            "plain_handshakes": plain,
            "throughput": throughput,
        }

    def throughput(self, info: dict[str, Any]) -> dict[str, Any]:
        """The same file through nodetunnel's tunnel and through a plain ``ssh -L``."""
        mb = self.settings.file_mb
        name, size = self.make_file(mb)
        token, node, remote = token_of(info), str(info["node"]), str(info["remote"])
        port = free_port()
        self.say(f"  throughput: {mb} MB from /files/ through nodetunnel's tunnel and plain ssh -L")
        forward = self.start(
            [
                "ssh",
                "-F",
                str(self.sb.paths.ssh_config),
                "-N",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-J",
                "login,gateway",
                "-L",
                f"127.0.0.1:{port}:{remote}",
                node,
            ],
            "plain ssh -L",
        )
        try:
            wait_working(port, token, timeout_s=30)
            paths = {"nodetunnel": int(info["local_port"]), "plain_ssh": port}
            samples: dict[str, list[float]] = {k: [] for k in paths}
            limit = max(60.0, size / MB)  # at least 1 MB/s
            for r in range(self.settings.rounds):
                order = list(paths) if r % 2 == 0 else list(reversed(paths))
                for label in order:
                    samples[label].append(download_mb_s(paths[label], name, token, size, limit))
        finally:
            if forward.running():
                forward.popen.terminate()  # by PID: the ssh we started (setpriv execs it)
            forward.wait_exit(10)
        ours = statistics.median(samples["nodetunnel"])
        theirs = statistics.median(samples["plain_ssh"])
        return {
            "file_mb": mb,
            "rounds": self.settings.rounds,
            "nodetunnel_mb_s": round(ours, 1),
            "plain_ssh_mb_s": round(theirs, 1),
            "ratio": round(ours / theirs, 3),
            "samples_mb_s": {k: [round(v, 1) for v in vs] for k, vs in samples.items()},
        }

    def make_file(self, mb: int) -> tuple[str, int]:
        """``mb`` MB of random bytes in the user's home (JupyterLab's root), owned by the user."""
        name = f"nt-bench-{secrets.token_hex(4)}.bin"
        path = self.home / name
        self._files.append(path)
        pw = pwd.getpwnam(USER)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            for _ in range(mb):
                f.write(os.urandom(MB))  # incompressible
        os.chown(path, pw.pw_uid, pw.pw_gid)
        return name, mb * MB

    def detached_session(self) -> dict[str, Any]:
        """``jupyter --detach``: the keeper holds the session; then ``list`` and ``stop``."""
        self.say("jupyter --detach, keep, list, stop")
        counts = [self.auth_counts()]
        cli = self.start(self.jupyter_argv("--detach"), "nodetunnel jupyter --detach")
        info, ok_at = self.ready(cli)
        if (code := cli.wait_exit(60)) != 0:
            raise BenchError(f"nodetunnel jupyter --detach exited with {code}: {cli.stderr_tail()}")
        returned_s = time.monotonic() - cli.started
        counts.append(self.auth_counts())
        session_id = str(info["session_id"])
        port, token = int(info["local_port"]), token_of(info)
        record = json.loads((self.state_dir / f"{session_id}.json").read_text())
        keeper = ProcessRef(int(record["pid"]), int(record["pid_start"]))
        log = self.state_dir / f"{session_id}.log"

        seconds = self.settings.hold_s
        self.say(f"  keeping the detached session for {seconds:g} s, counting scheduler queries")
        follower = Follower(log)
        rpcs_before = self.user_rpcs()
        begin = time.monotonic()
        self.hold(seconds, keeper.alive, port, token, tick=follower.poll)
        end = time.monotonic()
        rpcs_after = self.user_rpcs()
        window = parse_commands(follower.lines)
        hold = hold_result(window, begin, end, rpcs_before, rpcs_after)
        counts.append(self.auth_counts())

        listed = self.as_user(self.nt("list", "--json"))
        if listed.returncode != 0:
            raise BenchError(f"nodetunnel list failed: {listed.stderr.strip()[-500:]}")
        rows = [r for r in json.loads(listed.stdout) if r["session_id"] == session_id]
        if not rows or rows[0]["state"] != "RUNNING" or rows[0]["tunnel"] != "up":
            raise BenchError(f"nodetunnel list does not show the session healthy: {rows}")
        counts.append(self.auth_counts())
        stopped = self.as_user(self.nt("stop", session_id))
        if stopped.returncode != 0:
            raise BenchError(f"nodetunnel stop failed: {stopped.stderr.strip()[-500:]}")
        self.wait_job_gone(str(info["job_id"]))
        counts.append(self.auth_counts())
        steps = ("detach", "hold", "list", "stop")
        return {
            "ready_s": ok_at - cli.started,
            "returned_s": returned_s,
            "hold": hold,
            "handshakes": delta(counts[0], counts[-1]),
            "handshake_steps": {s: delta(counts[i], counts[i + 1]) for i, s in enumerate(steps)},
            "commands": {
                "detach": scheduler_counts(parse_commands(cli.stderr)),
                "list": scheduler_counts(commands_in(listed.stderr)),
                "stop": scheduler_counts(commands_in(stopped.stderr)),
            },
        }

    # ------------------------------------------------------------ clean-up
    def clean_up(self) -> None:
        """End what this run started: processes, sessions, jobs, tunnels, the test file.

        Every step runs even if an earlier one fails; failures are reported together.
        """
        problems: list[str] = []

        def step(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except (NodetunnelError, BenchError, OSError, ValueError) as exc:
                problems.append(f"{what}: {exc}")

        for w in self._procs:
            if w.running():  # Ctrl-C first: nodetunnel closes its tunnel and cancels its job
                step(w.label, functools.partial(w.interrupt, timeout_s=30))
                step(w.label, w.kill)
        sessions = sorted(s for s in self._sessions if (self.state_dir / f"{s}.json").exists())
        if sessions:
            self.say(f"clean-up: stopping {', '.join(sessions)}")
            step("nodetunnel stop", functools.partial(self.as_user, self.nt("stop", *sessions)))
        step("leftover tunnels", self._end_leftovers)
        jobs: list[str] = []
        if self._jobs:
            step("squeue", lambda: jobs.extend(sorted(self._jobs & set(self.user_jobs()))))
        if jobs:
            self.say(f"clean-up: cancelling jobs {', '.join(jobs)}")
            step("scancel", functools.partial(self.sb.run_in, "gateway", ["scancel", *jobs]))
            for job in jobs:
                step(f"job {job}", functools.partial(self.wait_job_gone, job))
        # The test file, and the logs of our detached sessions (nodetunnel stop keeps them).
        logs = [self.state_dir / f"{s}.log" for s in sorted(self._sessions)]
        for path in [*self._files, *logs]:
            step(str(path), functools.partial(path.unlink, missing_ok=True))
        if problems:
            raise BenchError("clean-up incomplete: " + "; ".join(problems))

    def _end_leftovers(self) -> None:
        """Tunnels and shared connections of our sessions whose nodetunnel was killed hard."""
        top = Path(f"/tmp/nodetunnel-{pwd.getpwnam(USER).pw_uid}")
        for session_id in sorted(self._sessions):
            local = top / session_id
            pid_file = local / "tunnel.pid"
            if pid_file.exists():
                pid, start = map(int, pid_file.read_text().split())
                ProcessRef(pid, start).stop(timeout_s=3)
            if local.is_dir():
                for sock in local.iterdir():
                    if sock.is_socket():
                        exit_master = ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"]
                        run(as_user_argv(USER, exit_master), timeout_s=10, check=False)


def token_of(info: dict[str, Any]) -> str:
    return str(info["url"]).split("token=", 1)[1]


def hold_result(
    window: list[Command],
    begin: float,
    end: float,
    rpcs_before: int | None,
    rpcs_after: int | None,
) -> dict[str, Any]:
    """The scheduler commands run while a session was kept from ``begin`` to ``end``."""
    counts = scheduler_counts(window)
    rpcs = None if rpcs_before is None or rpcs_after is None else rpcs_after - rpcs_before
    return {
        "duration_s": round(end - begin, 1),
        **counts,
        "per_minute": round(counts["total"] * 60 / (end - begin), 2),
        # seconds into the window (the detached keeper's log is read every 0.2 s)
        "at_s": [round(c.at - begin, 1) for c in window if c.remote in SCHEDULER_COMMANDS],
        "remote_commands": sum(1 for c in window if c.remote is not None),
        "slurmctld_rpcs": rpcs,
    }


# ------------------------------------------------------------------------------ report
def render_table(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        f"nodetunnel benchmarks on the mini-cluster: {m['cpus']} CPUs, {m['openssh']}, "
        f"{m['slurm']}; {s['repetitions']} repetition(s), hold {s['hold_s']:g} s, "
        f"{s['file_mb']} MB file" + (" (--quick)" if s["quick"] else ""),
        "",
        f"{'startup: command -> working URL':44}{'min':>8}{'median':>8}{'max':>8}{'n':>4}",
    ]
    st = r["startup"]
    for key, label in (
        ("jupyter", "nodetunnel jupyter (s)"),
        ("attach", "nodetunnel attach (s)"),
        ("detach", "nodetunnel jupyter --detach (s)"),
        ("ctrl_c_s", "Ctrl-C of jupyter until exit (s)"),
        ("cli_start_s", "nodetunnel --version, for scale (s)"),
    ):
        v = st[key]
        lines.append(
            f"{'  ' + label:44}{v['min']:>8.2f}{v['median']:>8.2f}{v['max']:>8.2f}{v['n']:>4}"
        )
    ph = st["jupyter_phases"]
    lines.append(
        f"  jupyter's time (median): connect {ph['connect_s']['median']:.2f} s, until the job "
        f"runs and the tunnel opens {ph['until_running_s']['median']:.2f} s, JupyterLab start "
        f"{ph['app_start_s']['median']:.2f} s, URL working after it "
        f"{ph['url_after_app_s']['median']:.2f} s (max {ph['url_after_app_s']['max']:.2f}); "
        f"{st['jupyter_squeue_polls']:g} squeue polls"
    )
    hs = r["handshakes"]
    hosts = [h for h in hs["foreground_session"] if h != "total"]
    lines += [
        "",
        f"{'SSH handshakes (sshd Accepted publickey)':44}"
        + "".join(f"{h:>8}" for h in [*hosts, "total"]),
    ]
    for key, label in (
        ("foreground_session", "jupyter: start, use, Ctrl-C"),
        ("attach", "attach (one)"),
        ("detached_list_stop", "jupyter --detach, hold, list, stop"),
        ("plain_ssh_forward", "plain ssh -J ... -L (for comparison)"),
    ):
        v = hs[key]
        lines.append(f"{'  ' + label:44}" + "".join(f"{v[h]:>8}" for h in [*hosts, "total"]))
    for key, label in (("foreground_steps", "jupyter"), ("detached_steps", "detached")):
        steps = ", ".join(f"{k} {v['total']}" for k, v in hs[key].items())
        lines.append(f"  {label} by step (total): {steps}")
    sc = r["scheduler"]
    lines += [
        "",
        f"{'scheduler queries while a session is kept':44}{'window':>8}"
        + "".join(f"{c:>8}" for c in SCHEDULER_COMMANDS)
        + f"{'/min':>8}{'RPCs':>8}",
    ]
    for key, label in (
        ("foreground_hold", "foreground (jupyter)"),
        ("detached_hold", "detached (keeper)"),
    ):
        v = sc[key]
        rpcs = "-" if v["slurmctld_rpcs"] is None else str(v["slurmctld_rpcs"])
        lines.append(
            f"{'  ' + label:44}{v['duration_s']:>7.0f}s"
            + "".join(f"{v[c]:>8}" for c in SCHEDULER_COMMANDS)
            + f"{v['per_minute']:>8.2f}{rpcs:>8}"
        )
    lines.append(
        "  per command: "
        + "; ".join(
            f"{k}: " + " ".join(f"{c} {v[c]}" for c in SCHEDULER_COMMANDS if v[c])
            for k, v in sc["per_command"].items()
        )
    )
    tp = r["throughput"]
    lines += [
        "",
        f"tunnel throughput ({tp['file_mb']} MB from /files/, median of {tp['rounds']})",
        f"  nodetunnel tunnel  {tp['nodetunnel_mb_s']:>8.1f} MB/s",
        f"  plain ssh -L       {tp['plain_ssh_mb_s']:>8.1f} MB/s",
        f"  ratio              {tp['ratio']:>8.2f}",
        *homecache.render(r["shared_home"]),
        "",
        f"total {r['duration_s']:.0f} s",
    ]
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------ the sandbox
@contextlib.contextmanager
def sandbox_lock(timeout_s: float, say: Say) -> Iterator[None]:
    """The integration tests' lock: one user of the machine's sandbox at a time."""
    fd = os.open(SANDBOX_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:

        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise NotReady(f"another run holds {SANDBOX_LOCK}") from None
            return True

        try:
            take()
        except NotReady:
            say(f"waiting up to {timeout_s:g} s for the sandbox ({SANDBOX_LOCK} is held)")
            wait_until(
                take,
                timeout_s=timeout_s,
                what="the sandbox to be free",
                interval_s=1,
                max_interval_s=5,
            )
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def sandbox_for_bench(say: Say) -> Iterator[Sandbox]:
    """The running sandbox, or one brought up now and taken down at the end."""
    status = Sandbox(Paths()).status()
    if status.up:
        say(f"using the running sandbox ({status.node_count} nodes)")
        yield Sandbox(Paths(), node_count=status.node_count)
        return
    sb = Sandbox(Paths(), node_count=2, progress=lambda msg: say(f"sandbox: {msg}"))
    sb.up()
    try:
        yield sb
    finally:
        say("taking the sandbox down (this run brought it up)")
        uids = []
        for user in USERS:
            with contextlib.suppress(KeyError):
                uids.append(pwd.getpwnam(user).pw_uid)
        sb.down()
        for uid in uids:  # the test users' laptop-side runtime directories
            shutil.rmtree(f"/tmp/nodetunnel-{uid}", ignore_errors=True)


@contextlib.contextmanager
def user_copy_of_nodetunnel() -> Iterator[list[str]]:
    """argv that runs this checkout's nodetunnel as the test user (a world-readable copy)."""
    src = Path(nodetunnel.__file__).resolve().parent
    copy = Path(tempfile.mkdtemp(prefix="nodetunnel-bench-", dir="/var/tmp"))
    try:
        shutil.copytree(src, copy / "nodetunnel", ignore=shutil.ignore_patterns("__pycache__"))
        for path in [copy, *copy.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield ["env", f"PYTHONPATH={copy}", str(LAPTOP_VENV / "bin" / "python"), "-m", "nodetunnel"]
    finally:
        shutil.rmtree(copy)


# ------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure nodetunnel on the mini-cluster (as root): startup time, SSH "
        "handshakes, scheduler queries, tunnel throughput. Prints a table and writes JSON.",
    )
    d = Settings()
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"one repetition, {QUICK.hold_s:g} s holds, a {QUICK.file_mb} MB file, one round "
        "(options given explicitly still apply)",
    )
    p.add_argument("-n", "--repetitions", type=int, help=f"timed starts [{d.repetitions}]")
    p.add_argument(
        "--hold",
        type=float,
        metavar="SECONDS",
        help=f"how long a healthy session is kept while its scheduler queries are "
        f"counted, foreground and detached [{d.hold_s:g}]",
    )
    p.add_argument("--file-mb", type=int, help=f"size of the downloaded file in MB [{d.file_mb}]")
    p.add_argument("--rounds", type=int, help=f"downloads per tunnel [{d.rounds}]")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the JSON [artifacts/bench.json]",
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="how long to wait for the sandbox if another run holds it [3600]",
    )
    args = p.parse_args(argv)
    for name in ("repetitions", "file_mb", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.hold is not None and args.hold <= 0:
        p.error("--hold must be positive")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    given = {
        "repetitions": args.repetitions,
        "hold_s": args.hold,
        "file_mb": args.file_mb,
        "rounds": args.rounds,
    }
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def main(argv: Sequence[str] | None = None, *, lock_held: bool = False) -> int:
    """Run the benchmarks; 0 on success. ``lock_held``: the caller holds the sandbox lock
    (the integration tests' fixture does), so it is not taken again."""
    args = parse_args(argv)
    settings = settings_of(args)
    begin = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - begin:6.1f} s] {msg}", file=sys.stderr, flush=True)

    try:
        check_prerequisites()
        missing = [str(p) for p in (CLUSTER_VENV, LAPTOP_VENV) if not (p / "bin/python").exists()]
        if missing:
            raise BenchError(f"{', '.join(missing)} missing: run ./scripts/setup")
        lock = contextlib.nullcontext() if lock_held else sandbox_lock(args.lock_timeout, say)
        with lock, sandbox_for_bench(say) as sb, user_copy_of_nodetunnel() as nt:
            results = Bench(sb, nt, settings, say).run()
            write_json(results, args.output)  # kept even if taking the sandbox down fails
    except (BenchError, NodetunnelError) as exc:
        hint = getattr(exc, "hint", None)
        print(f"bench: error: {exc}" + (f"\n  fix: {hint}" if hint else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted (sessions, jobs and tunnels were cleaned up)", file=sys.stderr)
        return 130
    print(render_table(results))
    say(f"wrote {args.output}")
    return 0


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
