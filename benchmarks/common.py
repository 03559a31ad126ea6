"""What every part of the bench uses: settings, errors, watched processes, HTTP probes, numbers."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from nodetunnel.events import parse_json_output
from nodetunnel.proc import NotReady, wait_until
from nodetunnel.sandbox.cluster import as_user_argv
from nodetunnel.sandbox.topology import USERS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "artifacts" / "bench.json"
SANDBOX_LOCK = Path("/run/lock/nodetunnel-sandbox-tests.lock")  # shared with the tests
CLUSTER_VENV = Path("/opt/nodetunnel-cluster-venv")  # JupyterLab for the nodes (scripts/setup)
LAPTOP_VENV = Path("/opt/nodetunnel-laptop-venv")  # nodetunnel's dependencies, for the test user
BENCH_VENV = Path("/opt/nodetunnel-bench-venv")  # jupyter-forward, for comparison (scripts/setup)
USER, OTHER_USER = USERS  # ntalice runs the tools; ntbob fills the partition
SCHEDULER_COMMANDS = ("sbatch", "squeue", "scancel")
MB = 1_000_000
RESULT_VERSION = 2
START_TIMEOUT_S = 180.0  # one session's start, generous for a loaded 2-core machine

Say = Callable[[str], None]


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Settings:
    repetitions: int = 5  # timed starts of each tool (interleaved) and of attach
    # How long a healthy session is kept while its queries are counted: a little over a
    # minute, so that a once-a-minute check falls inside the window (the detached keeper's
    # RSS and CPU seconds are read over the same window).
    hold_s: float = 65.0
    # How long a pending session is kept: past its first minute and a minute after that.
    pending_s: float = 130.0
    file_mb: int = 200  # the file downloaded through both tunnels (MB = 10^6 bytes)
    rounds: int = 5  # downloads per tunnel, alternating
    small_requests: int = 1000  # GETs of /api/status per tunnel and connection mode
    outage_s: float = 20.0  # how long a link is cut in the recovery part
    sessions: int = 10  # detached sessions started at once for their total RSS
    quick: bool = False


QUICK = Settings(
    repetitions=1,
    hold_s=5.0,
    pending_s=5.0,
    file_mb=20,
    rounds=1,
    small_requests=50,
    outage_s=3.0,
    sessions=2,
    quick=True,
)


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


def token_of(info: dict[str, Any]) -> str:
    """The token in the URL nodetunnel printed."""
    return str(info["url"]).split("token=", 1)[1]
