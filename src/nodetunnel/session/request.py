"""From a profile and options to a :class:`~.model.LaunchRequest`: the one path every starter
takes (the app commands, the dashboard's form)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..apps.base import App
from ..config import resolve
from ..config.settings import Settings
from ..errors import UsageError
from .model import Environment, LaunchRequest

NO_CLUSTER = UsageError(
    "no cluster to connect to: no --cluster given and no default_cluster in the config",
    hint="pass --cluster NAME (e.g. --cluster swc), or run 'nodetunnel config init'",
)


def settings_for(
    app: App,
    cluster: str | None,
    overrides: Mapping[str, Any],
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """The effective settings for a new session of ``app`` (UsageError: no cluster, bad value)."""
    settings = resolve(cluster, overrides, config_file, app=app.name)
    if not settings.jump:
        raise NO_CLUSTER
    return settings


def launch_request(
    app: App,
    settings: Settings,
    *,
    local_port: int | None = None,
    start_timeout_s: float = 600.0,
    keep: bool = False,
    tcp: bool = False,
    extras: tuple[App, ...] = (),
) -> LaunchRequest:
    """What to start: the app (and ``extras``, further apps in the same job), the profile's
    cluster, job and environment, and the options."""
    env = Environment(
        modules=tuple(settings.modules), conda_env=settings.conda_env, venv=settings.venv,
        setup=settings.setup, workdir=settings.workdir,
    )  # fmt: skip
    return LaunchRequest(
        app=app, cluster=settings.cluster_ref, job=settings.job_request("nodetunnel"), env=env,
        local_port=local_port, start_timeout_s=start_timeout_s, keep=keep, tcp=tcp,
        warn_before_s=settings.warn_before_s, lease_s=settings.lease_s,
        job_check_interval_s=settings.job_check_interval_s, extras=extras,
    )  # fmt: skip
