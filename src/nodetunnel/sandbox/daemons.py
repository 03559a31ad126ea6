"""The command lines of the sandbox's hosts and daemons (pure), started by :mod:`.cluster`."""

from __future__ import annotations

from .prereqs import cgroup_dir
from .topology import Host, Paths

SLURMCTLD_ARGV = ["/usr/sbin/slurmctld", "-D"]
SLURMD_ARGV = ["/usr/sbin/slurmd", "-D"]

# Sets up one host inside its fresh namespaces, then idles; argv: NAME HOSTDIR ETC_SLURM.
HOLDER_SCRIPT = r"""set -eu
hostname "$1"
mount -t tmpfs -o mode=0755 nodetunnel-cgroup /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/freezer
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer
mount --bind "$2/tmp" /tmp
mount --bind "$2/etc/hosts" /etc/hosts
mount --bind "$2/etc/pam.d" /etc/pam.d
mount --bind "$3" /etc/slurm
: > "$2/holder.ready"
exec sleep infinity
"""

# Moves itself into the given cgroup.procs files, then execs the rest of argv.
JOIN_CGROUPS = r"""p1=$1; p2=$2; shift 2
echo $$ > "$p1"
echo $$ > "$p2"
exec "$@"
"""


def in_cgroups_argv(host: str, argv: list[str]) -> list[str]:
    """``argv`` run in ``host``'s cgroups (of both hierarchies)."""
    return [
        "/bin/sh",
        "-c",
        JOIN_CGROUPS,
        "nt-join",
        str(cgroup_dir("systemd", host, "cgroup.procs")),
        str(cgroup_dir("freezer", host, "cgroup.procs")),
        *argv,
    ]


def holder_argv(h: Host, paths: Paths) -> list[str]:
    """The holder of host ``h``: its namespaces, set up by :data:`HOLDER_SCRIPT`."""
    return [
        "nsenter",
        f"--net=/run/netns/{h.netns}",
        "--",
        "unshare",
        "--uts",
        "--mount",
        "--cgroup",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        HOLDER_SCRIPT,
        "nt-holder",
        h.name,
        str(paths.host_dir(h.name)),
        str(paths.etc_slurm),
    ]


def munged_argv(paths: Paths) -> list[str]:
    """munged in the foreground, with its key, socket and files under ``paths``."""
    return [
        "/usr/sbin/munged",
        "-F",
        f"--key-file={paths.munge_dir / 'munge.key'}",
        f"--socket={paths.munge_socket}",
        f"--pid-file={paths.munge_dir / 'munged.pid'}",
        f"--log-file={paths.log_dir / 'munged.log'}",
        f"--seed-file={paths.munge_dir / 'munged.seed'}",
    ]


def sshd_argv(h: Host, paths: Paths) -> list[str]:
    """sshd in the foreground with host ``h``'s config."""
    return ["/usr/sbin/sshd", "-D", "-e", "-f", str(paths.host_dir(h.name) / "sshd_config")]
