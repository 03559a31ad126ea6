"""The field table: every profile key, its kind, group, help and command-line option.

Connection, environment and session fields are listed here; resource fields
come from :class:`~nodetunnel.scheduler.base.JobRequest`, whose fields carry
their :class:`~nodetunnel.fields.Field` (a new resource is one line there: it
becomes a profile key, a command-line option of every app command, a job
request field and, for SLURM, an ``#SBATCH`` line).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..apps import APPS as _APP_RECIPES
from ..fields import Field, resource_fields
from ..scheduler.base import JobRequest

CONFIG_ENV = "NODETUNNEL_CONFIG"
SANDBOX_DIR_ENV = "NODETUNNEL_SANDBOX_DIR"
CONFIG_FILENAME = "config.toml"
SANDBOX_PROFILE_FILENAME = "profile.toml"

SOURCE_DEFAULT = "default"
SOURCE_CLI = "command line"


APPS: tuple[str, ...] = tuple(_APP_RECIPES)  # the app commands
"""Apps that may have their own ``[clusters.NAME.APP]`` table of defaults."""

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


#: JobRequest attribute of each resource key (``sbatch_args`` is ``extra_args``).
RESOURCE_ATTRS: dict[str, str] = {f.name: attr for attr, f in resource_fields(JobRequest)}

# fmt: off
FIELDS: tuple[Field, ...] = (
    Field("jump", "hosts", "connection",
          "hosts to jump through, in order, to reach the compute nodes (like ssh -J)",
          '["ssh.example.ac.uk", "hpc-gw1"]'),
    Field("user", "user", "connection",
          "user name on the cluster (unset: your ~/.ssh/config or local user name decides)",
          '"jdoe"'),
    Field("ssh_config", "path", "connection",
          "extra ssh config file to Include after ~/.ssh/config (relative: to this file)",
          '"~/.ssh/config.d/mylab"'),
    Field("connect_timeout_s", "pos_int", "connection",
          "seconds ssh may take to connect to a host (unset: your ssh config decides; at an "
          "MFA bastion it also covers typing the code)", "60"),
    Field("multiplex", "bool", "connection",
          "share one connection per hop between nodetunnel's commands (false: every step logs "
          "in on its own, as on Windows, which a site with MFA does not allow; unset: true "
          "except on Windows)", "false"),
    Field("scheduler", "str", "connection",
          'the batch scheduler on the cluster (only "slurm" today)', '"slurm"'),
    Field("job_check_interval_s", "pos_int", "connection",
          "seconds between questions to SLURM about the job while the tunnel is up (default 60)",
          "60"),
    *(f for _, f in resource_fields(JobRequest)),
    Field("conda_env", "str", "environment", "conda environment to activate (name or path)",
          '"lab-env"', ("--conda-env",), "Conda environment to activate on the node."),
    Field("modules", "str_list", "environment", "environment modules to load, in order",
          '["miniconda"]', ("--module",), "Environment module to load first (repeatable).",
          "NAME"),
    Field("venv", "str", "environment", "Python virtualenv to activate (directory on the cluster)",
          '"~/venvs/lab"', ("--venv",),
          "Python virtualenv (directory on the cluster) to activate."),
    Field("setup", "shell", "environment", "shell commands run before the app starts",
          '"export HF_HOME=/ceph/scratch/$USER/hf"', ("--setup",),
          "Shell command to run before the app, as-is.", "CMD"),
    Field("workdir", "str", "environment", "directory on the cluster the app starts in",
          '"/ceph/scratch/jdoe"', ("--workdir",), "Directory on the cluster to start the app in."),
    Field("warn_before", "duration", "session",
          "warn this long before the job's time limit (\"0\" turns it off; unset: 10 minutes)",
          '"15m"', ("--warn-before",),
          "Warn this long before the job's time limit, e.g. 15m (0: never).  [default: 10m]",
          "DURATION"),
    Field("lease", "duration", "session",
          "cancel the job when no nodetunnel has kept the session for this long, e.g. after "
          "a lost laptop (unset: no lease)", '"30m"', ("--lease",),
          "Cancel the job when no nodetunnel has kept the session for this long (e.g. "
          "30m), so a lost laptop does not leave it running; the tunnel keeper checks in.",
          "DURATION"),
    Field("notify", "bool", "session",
          "desktop notifications: a job that waited in the queue has started and its app is "
          "ready, the time-limit warning, a session that ended unexpectedly (unset: true)",
          "false", ("--notify/--no-notify",),
          "Desktop notifications (and a terminal bell) when a job that waited in the queue "
          "starts and its app is ready, before the time limit, and when the session ends "
          "unexpectedly; where there is no notification service, nothing.  [default: notify]"),
)
# fmt: on
#: The value of a field that is not set anywhere.
DEFAULTS: dict[str, Any] = {
    "jump": (),
    "modules": (),
    "sbatch_args": (),
    "scheduler": "slurm",
    "job_check_interval_s": 60,
    "notify": True,
    "multiplex": os.name != "nt",  # Windows' OpenSSH has no connection sharing
}  # fmt: skip
_FIELDS_BY_NAME = {f.name: f for f in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
_SUGAR = ("login", "gateway")  # become ``jump = [login, gateway]``
_CLUSTER_KEYS = frozenset(FIELD_NAMES) | frozenset(_SUGAR)
#: The settings an app run takes (each is also a command-line option of the app commands).
APP_KEYS = frozenset(f.name for f in FIELDS if f.group != "connection")
_APP_KEYS_SORTED = sorted(APP_KEYS)
_TOP_KEYS = frozenset({"default_cluster", "clusters"})

_KIND_TEXT = {
    "hosts": "a list of host names",
    "user": "a user name (string)",
    "path": "a file path (string)",
    "str": "a string",
    "str_or_int": "a string or an integer",
    "pos_int": "a positive integer",
    "str_list": "a list of strings",
    "shell": "a string of shell commands",
    "duration": 'a duration like "30m", "90s" or "1h30m" (a bare number means minutes)',
    "bool": "true or false",
}

DEFAULT_WARN_BEFORE_S = 600.0
MIN_LEASE_S = 10.0
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def duration_s(text: str) -> float:
    """Seconds in ``"1h30m"``, ``"90s"``, ``"2d"``, ``"45"`` (a bare number: minutes)."""
    t = text.strip().lower()
    if t.isdigit():
        return float(int(t) * 60)
    m = _DURATION.fullmatch(t)
    if not t or m is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 90s or 1h30m")
    d, h, mins, sec = (int(g) if g else 0 for g in m.groups())
    return float(((d * 24 + h) * 60 + mins) * 60 + sec)


PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "swc": MappingProxyType({"jump": ("ssh.swc.ucl.ac.uk", "hpc-gw2"), "partition": "gpu"}),
    }
)
"""Built-in presets, always available. ``sandbox`` joins them when its profile file exists."""

_SANDBOX_PRESET: Mapping[str, Any] = MappingProxyType(
    {"jump": ("login", "gateway"), "partition": "cpu"}
)
