"""Data path: the same file and the same small requests through nodetunnel's tunnel and
through a plain ``ssh -N -J login,gateway -L PORT:SOCKET NODE`` to the same socket, alternating.

Throughput: ``/files/NAME`` (incompressible, ``file_mb`` MB) downloaded ``rounds`` times per
tunnel. Latency: ``small_requests`` GETs of ``/api/status`` per tunnel and mode, a new
connection for each ("new") or one kept-alive connection ("kept"), in blocks of
``BLOCK`` alternating between the tunnels; p50 and p99 in milliseconds.
"""

from __future__ import annotations

import http.client
import math
import os
import pwd
import secrets
import statistics
import time
from typing import TYPE_CHECKING, Any

from .common import MB, USER, BenchError, download_mb_s, free_port, token_of, wait_working

if TYPE_CHECKING:
    from .bench import Bench

BLOCK = 50  # requests in a row on one tunnel before switching to the other
TUNNELS = ("nodetunnel", "plain_ssh")
MODES = ("new", "kept")


def measure(bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    """Both figures for the session ``info`` (its tunnel is up), against a plain forward."""
    mb = bench.settings.file_mb
    name, size = make_file(bench, mb)
    token, node, remote = token_of(info), str(info["node"]), str(info["remote"])
    port = free_port()
    bench.say(
        f"  data path: {mb} MB from /files/ and {bench.settings.small_requests} small "
        "requests per mode, through nodetunnel's tunnel and plain ssh -L"
    )
    before = bench.auth_counts()
    forward = bench.start(
        ["ssh", "-F", str(bench.sb.paths.ssh_config), "-N", "-o", "BatchMode=yes",
         "-o", "ExitOnForwardFailure=yes", "-J", "login,gateway",
         "-L", f"127.0.0.1:{port}:{remote}", node],
        "plain ssh -L",
    )  # fmt: skip
    try:
        wait_working(port, token, timeout_s=30)
        ports = {"nodetunnel": int(info["local_port"]), "plain_ssh": port}
        throughput = _throughput(bench, ports, name, token, size)
        latency = _latency(ports, token, bench.settings.small_requests)
    finally:
        if forward.running():
            forward.popen.terminate()  # by PID: the ssh we started (setpriv execs it)
        forward.wait_exit(10)
    return {
        "throughput": {"file_mb": mb, "rounds": bench.settings.rounds, **throughput},
        "latency": latency,
        "plain_forward_logins": _delta(before, bench.auth_counts()),
    }


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    d = {h: after[h] - before[h] for h in before}
    d["total"] = sum(d.values())
    return d


def _throughput(
    bench: Bench, ports: dict[str, int], name: str, token: str, size: int
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {k: [] for k in TUNNELS}
    limit_s = max(60.0, size / MB)  # at least 1 MB/s
    for r in range(bench.settings.rounds):
        for label in TUNNELS if r % 2 == 0 else TUNNELS[::-1]:
            samples[label].append(download_mb_s(ports[label], name, token, size, limit_s))
    ours = statistics.median(samples["nodetunnel"])
    theirs = statistics.median(samples["plain_ssh"])
    return {
        "nodetunnel_mb_s": round(ours, 1),
        "plain_ssh_mb_s": round(theirs, 1),
        "ratio": round(ours / theirs, 3),
        "samples_mb_s": {k: [round(v, 1) for v in vs] for k, vs in samples.items()},
    }


def _latency(ports: dict[str, int], token: str, count: int) -> dict[str, Any]:
    headers = {"Authorization": f"token {token}"}
    seconds: dict[str, dict[str, list[float]]] = {m: {t: [] for t in TUNNELS} for m in MODES}
    for mode in MODES:
        kept = {t: http.client.HTTPConnection("127.0.0.1", ports[t], timeout=10) for t in TUNNELS}
        try:
            done, block = 0, 0
            while done < count:
                n = min(BLOCK, count - done)
                for tunnel in TUNNELS if block % 2 == 0 else TUNNELS[::-1]:
                    for _ in range(n):
                        conn = kept[tunnel] if mode == "kept" else None
                        seconds[mode][tunnel].append(_get(ports[tunnel], headers, conn))
                done, block = done + n, block + 1
        finally:
            for conn in kept.values():
                conn.close()
    result: dict[str, Any] = {"requests": count, "path": "/api/status"}
    for mode in MODES:
        row: dict[str, Any] = {}
        for tunnel in TUNNELS:
            row[tunnel] = {"p50_ms": percentile_ms(seconds[mode][tunnel], 50),
                           "p99_ms": percentile_ms(seconds[mode][tunnel], 99)}  # fmt: skip
        for p in ("p50_ms", "p99_ms"):
            row[f"ratio_{p[:3]}"] = round(row["nodetunnel"][p] / row["plain_ssh"][p], 3)
        result[mode] = row
    return result


def _get(port: int, headers: dict[str, str], conn: http.client.HTTPConnection | None) -> float:
    """Seconds for one GET of /api/status (a new connection unless ``conn`` is given)."""
    started = time.perf_counter()
    own = conn is None
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10) if conn is None else conn
    try:
        c.request("GET", "/api/status", headers=headers)
        response = c.getresponse()
        response.read()
    finally:
        if own:
            c.close()
    if response.status != 200:
        raise BenchError(f"GET /api/status on port {port}: HTTP {response.status}")
    return time.perf_counter() - started


def percentile_ms(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``samples`` seconds, in milliseconds."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return round(ordered[rank - 1] * 1000, 2)


def make_file(bench: Bench, mb: int) -> tuple[str, int]:
    """``mb`` MB of random bytes in the user's home (JupyterLab's root), owned by the user."""
    name = f"nt-bench-{secrets.token_hex(4)}.bin"
    path = bench.home / name
    bench.track_file(path)
    pw = pwd.getpwnam(USER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(MB))  # incompressible
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return name, mb * MB
