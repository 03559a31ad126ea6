"""The files and users ``sandbox up`` makes before it starts any daemon.

Test users with their keys and ``~/.ssh``, each host's files (host key,
sshd config, ``/etc/hosts``, ``/etc/pam.d``), the cluster's files (SLURM
configs, known hosts, the laptop's SSH config, the sandbox profile) and the
munge key. Everything here is safe to run again on a half-built sandbox.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Callable
from pathlib import Path

from ..config import sandbox_profile_toml
from ..errors import SandboxError
from ..proc import run
from . import render
from .topology import USER_MARKER, USERS, Paths, Topology

RUN_SSHD = Path("/run/sshd")  # sshd's privilege separation directory


def make_users(paths: Paths, topo: Topology, say: Callable[[str], None]) -> list[str]:
    """Create the test users (unless they exist from an earlier ``up``) with keys and SSH config."""
    made = []
    for user in USERS:
        home = paths.user_home(user)
        try:
            existing = pwd.getpwnam(user)
        except KeyError:
            existing = None
        if existing is not None and existing.pw_gecos != USER_MARKER:
            raise SandboxError(
                f"user {user!r} already exists on this machine and is not a sandbox user",
                hint=f"remove or rename the user {user!r}, then try again",
            )
        if existing is None:
            say(f"creating test user {user}")
            run(
                [
                    "useradd",
                    "--no-create-home",
                    "--home-dir",
                    str(home),
                    "--shell",
                    "/bin/bash",
                    "--comment",
                    USER_MARKER,
                    "--user-group",
                    user,
                ],
                timeout_s=20,
            )
        pw = pwd.getpwnam(user)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        key = ssh_dir / "id_ed25519"
        if not key.exists():
            keygen(key, f"{user}@nodetunnel-sandbox")
        (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        (ssh_dir / "config").write_text(render.client_ssh_config(topo, paths))
        for path in [home, *home.rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        os.chmod(home, 0o700)
        os.chmod(ssh_dir, 0o700)
        for f in ssh_dir.iterdir():
            os.chmod(f, 0o644 if f.suffix == ".pub" else 0o600)
        made.append(user)
    return made


def write_host_files(paths: Paths, topo: Topology) -> dict[str, str]:
    """Write every host's own files; return each host's public host key."""
    keys = {}
    for h in topo.hosts:
        hd = paths.host_dir(h.name)
        for sub in ("etc", "spool"):
            (hd / sub).mkdir(parents=True, exist_ok=True)
        (hd / "tmp").mkdir(exist_ok=True)
        os.chmod(hd / "tmp", 0o1777)  # noqa: S103 - the host's /tmp
        key = hd / "ssh_host_ed25519_key"
        if not key.exists():
            keygen(key, f"{h.name}-host-key")
        keys[h.name] = key.with_suffix(".pub").read_text().strip()
        (hd / "sshd_config").write_text(render.sshd_config(h, paths))
        (hd / "etc" / "hosts").write_text(render.hosts_file(topo, h))
        pam = hd / "etc" / "pam.d"
        if pam.exists():
            shutil.rmtree(pam)
        shutil.copytree("/etc/pam.d", pam, symlinks=True)
        session = pam / "common-session"
        if session.exists():
            session.write_text(render.pam_common_session(session.read_text()))
        sshd = pam / "sshd"
        sshd.write_text(render.pam_sshd(sshd.read_text(), adopt=h.role == "node"))
    return keys


def write_cluster_files(paths: Paths, topo: Topology, host_keys: dict[str, str]) -> None:
    """The files all hosts share (SLURM's configs) and the laptop's (SSH config, profile)."""
    p = paths
    (p.etc_slurm / "slurm.conf").write_text(render.slurm_conf(topo, p))
    (p.etc_slurm / "gres.conf").write_text(render.gres_conf(topo))
    (p.etc_slurm / "cgroup.conf").write_text(render.cgroup_conf())
    p.known_hosts.write_text(render.known_hosts(topo, host_keys))
    p.ssh_config.write_text(render.client_ssh_config(topo, p))
    # Registers the 'sandbox' cluster profile (nodetunnel ... --cluster sandbox).
    (p.root / "profile.toml").write_text(sandbox_profile_toml(p))


def make_munge_key(paths: Paths) -> None:
    """A new munge key, readable by the munge user only."""
    d = paths.munge_dir
    d.mkdir(mode=0o755, exist_ok=True)
    munge = pwd.getpwnam("munge")
    key = d / "munge.key"
    key.unlink(missing_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)  # never readable by others
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(1024))
    for path in (d, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)


def keygen(key: Path, comment: str) -> None:
    """A new ed25519 key pair without passphrase at ``key`` / ``key.pub``."""
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], timeout_s=20
    )
