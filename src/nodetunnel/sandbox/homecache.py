"""An NFS-like cached view of the shared home on some hosts of the mini-cluster.

On a real cluster the home is NFS (or GPFS, Lustre) and every client caches
lookups and attributes: a name looked up before it exists is remembered as
missing, and a file's size and times are remembered, for up to ``acdirmin``
(30 s by default). The sandbox's hosts all see one local directory, so none of
that happens unless asked for.

:func:`cache_home` mounts ``bindfs`` over the home, from inside the chosen
hosts' mount namespaces (each host's holder keeps a private one), with kernel
entry, negative-entry and attribute timeouts of ``cache_s`` and ``direct_io``
(content is read fresh on every open, as NFS's close-to-open gives). The other
hosts, and the laptop, keep the direct view. Processes started before the
mount keep the direct view only through handles (a cwd) they already held;
new SSH sessions see the cache.

A self-check right after mounting looks up a missing name through the cache,
creates it through the direct view and expects the cache still not to see it;
a bindfs that ignores the timeouts (upstream >= 1.15 built on libfuse 3 forces
them to 0) fails here, loudly, rather than testing nothing.

Each bindfs daemon runs in its host's cgroup and is recorded in the state
file (``HOST/homecache``), so ``sandbox down`` ends it like every other
daemon; :func:`uncache_home` unmounts and ends them by PID.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NodetunnelError, PrerequisiteError, SandboxError
from ..proc import ProcessRef, run, wait_until

if TYPE_CHECKING:
    from .cluster import Sandbox

DAEMON = "homecache"
DEFAULT_CACHE_S = 30.0
DEFAULT_HOSTS = ("login", "gateway")  # where the laptop's commands read what nodes write
_PROBE_PREFIX = ".nodetunnel-cache-probe-"


def bindfs_argv(home: Path, cache_s: float) -> list[str]:
    """bindfs in the foreground (its PID is the daemon's), mounted over ``home`` itself."""
    t = f"{cache_s:g}"
    opts = f"entry_timeout={t},negative_timeout={t},attr_timeout={t},direct_io"
    return ["bindfs", "-f", "-o", opts, str(home), str(home)]


def mounted(sb: Sandbox, host: str, state: dict[str, Any]) -> bool:
    """True if the FUSE mount is over the home in ``host``'s mount namespace."""
    text = sb.run_in(host, ["cat", "/proc/self/mountinfo"], state=state, timeout_s=10)
    home = str(sb.paths.home)
    return any(
        line.split()[4] == home and " - fuse" in line for line in text.splitlines() if line.strip()
    )


def cache_home(sb: Sandbox, state: dict[str, Any], cache_s: float, hosts: tuple[str, ...]) -> None:
    """Mount the cached view on ``hosts`` (``state`` is the sandbox's, kept up to date)."""
    for prog, pkg in (("bindfs", "bindfs"), ("fusermount", "fuse3")):
        if shutil.which(prog) is None:
            raise PrerequisiteError(f"{prog} is not installed: the cached home needs it",
                                    hint=f"apt-get install {pkg} (./scripts/setup does)")  # fmt: skip
    if not Path("/dev/fuse").exists():
        raise PrerequisiteError("/dev/fuse does not exist: this kernel has no FUSE",
                                hint="the cached home needs FUSE; run without it")  # fmt: skip
    if cache_s <= 0:
        raise SandboxError(f"a home cache of {cache_s:g} s caches nothing",
                           hint="give a positive number of seconds, e.g. 30")  # fmt: skip
    known = {h.name for h in sb.topo.hosts}
    unknown = [h for h in hosts if h not in known]
    if unknown:
        raise SandboxError(f"no host {unknown[0]!r} in this sandbox",
                           hint="choose among " + ", ".join(sorted(known)))  # fmt: skip
    if state.get("home_cache"):
        uncache_home(sb, state)
    state["home_cache"] = {"cache_s": cache_s, "hosts": list(hosts)}
    try:
        for host in hosts:
            sb.start_daemon(state, host, DAEMON, bindfs_argv(sb.paths.home, cache_s))

            def up(host: str = host) -> bool:
                sb.check_alive(state, f"{host}/{DAEMON}")
                return mounted(sb, host, state)

            wait_until(up, timeout_s=10, what=f"the cached home on {host}",
                       hint=f"see {sb.paths.log_dir}/{DAEMON}-{host}.log")  # fmt: skip
            self_check(sb, host, state)
    except BaseException:
        with contextlib.suppress(NodetunnelError):
            uncache_home(sb, state)
        raise


def self_check(sb: Sandbox, host: str, state: dict[str, Any]) -> None:
    """A name looked up while missing stays missing on ``host`` after it is created."""
    name = _PROBE_PREFIX + secrets.token_hex(6)
    cached = str(sb.paths.home / name)
    direct = sb.paths.home / name  # this process's view: the directory itself
    first = run(sb.host_argv(host, ["stat", cached], state), timeout_s=10, check=False)
    try:
        direct.write_text("probe\n")
        again = run(sb.host_argv(host, ["stat", cached], state), timeout_s=10, check=False)
    finally:
        direct.unlink(missing_ok=True)
    if first.returncode == 0 or again.returncode == 0:
        raise SandboxError(
            f"the home on {host} is not cached: a new file was seen at once through bindfs",
            hint="this bindfs ignores its cache timeouts (bindfs >= 1.15 on libfuse 3 does); "
            "install Debian 12's bindfs 1.14 (libfuse 2)",
        )


def uncache_home(sb: Sandbox, state: dict[str, Any]) -> list[str]:
    """Unmount the cached view everywhere and end its daemons; return the hosts."""
    hosts: list[str] = []
    procs = state.get("processes", {})
    for key in [k for k in procs if k.endswith("/" + DAEMON)]:
        host = key.split("/", 1)[0]
        ref = ProcessRef(int(procs[key]["pid"]), int(procs[key]["start"]))
        if ref.alive():
            home = str(sb.paths.home)
            done = run(sb.host_argv(host, ["fusermount", "-u", home], state),
                       timeout_s=10, check=False)  # fmt: skip
            if done.returncode != 0:
                run(sb.host_argv(host, ["umount", "-l", home], state), timeout_s=10, check=False)
            ref.stop(timeout_s=5)  # bindfs unmounts and exits on SIGTERM if still there
        del procs[key]
        hosts.append(host)
    state.pop("home_cache", None)
    return hosts


def describe(state: dict[str, Any] | None) -> str:
    """One line for ``sandbox status``: how the hosts see the home."""
    cache = (state or {}).get("home_cache")
    if not cache:
        return "direct on every host"
    return f"cached {cache['cache_s']:g} s on {', '.join(cache['hosts'])} (bindfs)"


__all__ = [
    "DAEMON",
    "DEFAULT_CACHE_S",
    "DEFAULT_HOSTS",
    "bindfs_argv",
    "cache_home",
    "describe",
    "mounted",
    "self_check",
    "uncache_home",
]
