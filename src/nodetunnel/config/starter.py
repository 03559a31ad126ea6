"""The commented starter config file (``nodetunnel config init``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from .fields import APPS, CONFIG_FILENAME, FIELDS
from .files import config_path


def starter_config() -> str:
    """A commented starter config: an SWC-like example cluster and every key explained."""
    groups = {
        "connection": "how to reach the cluster, through your own OpenSSH setup",
        "resources": "what to ask SLURM for; unset keys: the cluster's own defaults apply",
        "environment": "how to prepare the app's environment on the compute node",
        "session": "how nodetunnel looks after a running session",
    }
    active = {
        "jump": '["ssh.swc.ucl.ac.uk", "hpc-gw2"]',
        "partition": '"gpu"',
        "gres": '"gpu:1"',
        "mem": '"16G"',
        "time": '"8:00:00"',
        "cpus_per_task": "4",
    }
    lines = [
        "# nodetunnel configuration: per-cluster profiles.",
        "# Written by 'nodetunnel config init'; check the result with 'nodetunnel config'.",
        "#",
        "# A command uses the cluster given with --cluster NAME, else default_cluster.",
        "# A [clusters.NAME] table with the name of a built-in preset ('swc'; 'sandbox'",
        "# after 'nodetunnel sandbox up') overrides that preset key by key, and",
        "# command-line options override everything. Lines starting with '#' are",
        "# comments: remove the '#' to use a key.",
        "",
        "# The cluster to use when no --cluster is given.",
        'default_cluster = "mylab"',
        "",
        "# An SWC-like example: rename it and change the hosts and resources to your site's.",
        "[clusters.mylab]",
    ]
    for group, title in groups.items():
        lines += ["", f"# --- {group}: {title}"]
        for field in FIELDS:
            if field.group != group:
                continue
            lines += ["", f"# {field.name}: {field.help}."]
            if field.name == "jump":
                lines += [
                    '# Instead of jump you may write  login = "..."  and/or  gateway = "..."',
                    "# (login first). Unset: ssh connects to the nodes directly.",
                ]
            value = active.get(field.name)
            lines.append(
                f"{field.name} = {value}" if value else f"# {field.name} = {field.example}"
            )
    lines += [
        "",
        f"# Defaults for one app only, here 'nodetunnel {APPS[0]}': resource and environment",
        "# keys, which override the cluster's keys above for that app.",
        f"# [clusters.mylab.{APPS[0]}]",
        '# time = "4:00:00"',
        '# conda_env = "lab-env"',
        "",
        "# A second cluster, reached through one login host (set up in ~/.ssh/config):",
        "# [clusters.other]",
        '# login = "login.other.example.org"',
        '# user = "jdoe"',
        '# partition = "cpu"',
        "",
    ]
    return "\n".join(lines)


def write_starter_config(
    path: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Write :func:`starter_config` to ``path`` (default: :func:`config_path`) with mode 0600.

    A directory that has to be created gets mode 0700. An existing file is
    only replaced with ``force``. Returns the path written.
    """
    file = config_path(path)
    if file.is_dir():
        raise UsageError(
            f"cannot write the config to {file}: it is a directory",
            hint="give a file path, e.g. --path " + str(file / CONFIG_FILENAME),
        )
    if (file.exists() or file.is_symlink()) and not force:
        raise UsageError(
            f"config file {file} already exists; not overwriting it",
            hint="edit it, or add --force to replace it with a fresh starter file",
        )
    directory = file.parent
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
            directory.chmod(0o700)  # mkdir's mode is reduced by the umask
        data = starter_config().encode()
        if force:
            tmp = directory / f".{file.name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.chmod(tmp, 0o600)
                os.replace(tmp, file)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        else:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(file, 0o600)
    except FileExistsError as exc:
        raise UsageError(
            f"config file {file} already exists; not overwriting it",
            hint="edit it, or add --force to replace it with a fresh starter file",
        ) from exc
    except OSError as exc:
        raise UsageError(
            f"cannot write the config file {file}: {exc.strerror}",
            hint="choose a path in a directory you can write to, e.g. --path ~/nodetunnel.toml",
        ) from exc
    return file
