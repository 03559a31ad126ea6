"""What this machine must have to run the sandbox, and the cgroup hierarchies it uses.

:func:`check_prerequisites` says what is missing and how to fix it, before
anything is built or removed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ..errors import PrerequisiteError
from .topology import CGROUP_NAME

CGROUP_MOUNTS = {
    "systemd": Path("/sys/fs/cgroup/systemd"),
    "freezer": Path("/sys/fs/cgroup/freezer"),
}

# Debian packages and the programs by which we detect them.
REQUIRED_PROGRAMS = {
    "/usr/sbin/sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
    "/usr/sbin/slurmctld": "slurmctld",
    "/usr/sbin/slurmd": "slurmd",
    "sbatch": "slurm-client",
    "sinfo": "slurm-client",
    "/usr/sbin/munged": "munge",
    "munge": "munge",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "useradd": "passwd",
}
PAM_ADOPT_PATHS = [
    Path(p) / "pam_slurm_adopt.so"
    for p in (
        "/lib/security",
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/aarch64-linux-gnu/security",
        "/usr/lib/aarch64-linux-gnu/security",
        "/usr/lib/security",
    )
]
SETUP_HINT = "run ./scripts/setup (it apt-get installs them), then try again"


def cgroup_dir(hier: str, *parts: str) -> Path:
    """The sandbox's cgroup (or a child of it: a host, ``munge``) in hierarchy ``hier``."""
    return CGROUP_MOUNTS[hier].joinpath(CGROUP_NAME, *parts)


def check_prerequisites(*, need_root: bool = True) -> None:
    """Raise :class:`PrerequisiteError` with the fix if this machine cannot run the sandbox."""
    if not sys.platform.startswith("linux") or not Path("/proc/self/ns/net").exists():
        raise PrerequisiteError(
            "the sandbox needs Linux network namespaces, which this system does not have",
            hint="run it on a Linux machine (Debian or Ubuntu)",
        )
    if need_root and getattr(os, "geteuid", lambda: -1)() != 0:
        raise PrerequisiteError(
            "the sandbox must run as root (it creates network namespaces, users and daemons)",
            hint="run it with sudo, e.g. sudo nodetunnel sandbox up",
        )
    missing: dict[str, None] = {}
    for prog, pkg in REQUIRED_PROGRAMS.items():
        if not (Path(prog).exists() if prog.startswith("/") else shutil.which(prog)):
            missing[pkg] = None
    if not any(p.exists() for p in PAM_ADOPT_PATHS):
        missing["libpam-slurm-adopt"] = None
    if not Path("/etc/slurm").is_dir() and "slurm-client" not in missing:
        missing["slurm-client"] = None
    if missing:
        pkgs = " ".join(missing)
        raise PrerequisiteError(
            f"the sandbox needs Debian packages that are not installed: {pkgs}",
            hint=f"apt-get install -y {pkgs} (or {SETUP_HINT})",
        )
    mounts = Path("/proc/self/mounts").read_text()
    for hier, path in CGROUP_MOUNTS.items():
        if f" {path} cgroup " not in mounts:
            raise PrerequisiteError(
                f"the sandbox needs the cgroup v1 '{hier}' hierarchy mounted at {path}",
                hint="use a machine or VM with cgroup v1 (or hybrid) hierarchies, as Debian 12 VMs "
                "without systemd have",
            )
