"""Per-cluster profiles: the config file, built-in presets, and where every value came from.

A profile says how to reach a cluster (``jump`` hosts, ``user``, an extra
``ssh_config``), which resources to ask SLURM for (``partition``, ``gres``,
``time``, ...) and how to prepare the app's environment (``conda_env``,
``modules``, ``venv``, ``setup``, ``workdir``). Profiles live in a TOML file::

    default_cluster = "mylab"

    [clusters.mylab]
    jump = ["ssh.example.ac.uk", "hpc-gw1"]   # or: login = "...", gateway = "..."
    partition = "gpu"
    gres = "gpu:1"

    [clusters.mylab.jupyter]                  # only for 'nodetunnel jupyter'
    time = "8:00:00"

The file is ``$NODETUNNEL_CONFIG`` if set, else ``config.toml`` in the
platform's user config directory (``~/.config/nodetunnel`` on Linux), unless a
path is passed explicitly.

:func:`resolve` layers, lowest first: built-in defaults (nothing set), a
built-in preset (``swc``; ``sandbox`` once ``nodetunnel sandbox up`` has
written its ``profile.toml``), the config file's ``[clusters.NAME]`` table,
its ``[clusters.NAME.APP]`` table, and the command line. Each layer overrides
the ones below key by key, and the resulting :class:`Settings` records the
source of every field: ``"default"``, ``"preset swc"``, ``"config file PATH"``,
``"config file PATH (jupyter section)"`` or ``"command line"``.

Everything here is pure or reads files only; errors are
:class:`~nodetunnel.errors.UsageError` naming the file, line, key and value.

The package: :mod:`.fields` (the field table), :mod:`.validate` (checking
values, with file and line), :mod:`.files` (the file and the presets),
:mod:`.settings` (:func:`resolve`, :class:`Settings`), :mod:`.starter`.
"""

from __future__ import annotations

from ..fields import Field
from .fields import (
    APP_KEYS,
    APPS,
    CONFIG_ENV,
    DEFAULT_WARN_BEFORE_S,
    FIELD_NAMES,
    FIELDS,
    MIN_LEASE_S,
    PRESETS,
    SANDBOX_DIR_ENV,
    SOURCE_CLI,
    SOURCE_DEFAULT,
    duration_s,
)
from .files import (
    DEFAULT_SANDBOX_DIR,
    ClusterEntry,
    Config,
    config_path,
    default_config_path,
    known_clusters,
    load_config,
    sandbox_profile_path,
    sandbox_profile_toml,
)
from .settings import Settings, resolve
from .starter import starter_config, write_starter_config

__all__ = [
    "APPS",
    "APP_KEYS",
    "CONFIG_ENV",
    "DEFAULT_SANDBOX_DIR",
    "DEFAULT_WARN_BEFORE_S",
    "FIELDS",
    "FIELD_NAMES",
    "MIN_LEASE_S",
    "PRESETS",
    "SANDBOX_DIR_ENV",
    "SOURCE_CLI",
    "SOURCE_DEFAULT",
    "ClusterEntry",
    "Config",
    "Field",
    "Settings",
    "config_path",
    "default_config_path",
    "duration_s",
    "known_clusters",
    "load_config",
    "resolve",
    "sandbox_profile_path",
    "sandbox_profile_toml",
    "starter_config",
    "write_starter_config",
]
