"""The effective settings of one cluster, each with where it came from."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import UsageError
from ..scheduler.base import JobRequest
from ..transport.base import ClusterRef
from .fields import (
    _FIELDS_BY_NAME,
    APPS,
    DEFAULT_WARN_BEFORE_S,
    DEFAULTS,
    FIELD_NAMES,
    RESOURCE_ATTRS,
    SOURCE_CLI,
    SOURCE_DEFAULT,
    duration_s,
)
from .files import (
    Config,
    _known,
    _preset_names,
    _preset_values,
    load_config,
    sandbox_profile_path,
)
from .validate import _coerce, _Origin, _short_repr


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings for one cluster, with the source of every field.

    Every field of :data:`FIELDS` is an attribute (``settings.partition``);
    ``values`` holds those that were set. ``sources[field]`` is ``"default"``,
    ``"preset NAME"``, ``"config file PATH"``, ``"config file PATH (APP
    section)"`` or ``"command line"``. Unset values are ``None`` (or ``()`` for
    lists): the scheduler's, ssh's or the cluster's own default applies.
    """

    cluster: str | None = None
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)
    config_path: Path | None = dataclasses.field(default=None, compare=False)
    config_exists: bool = dataclasses.field(default=False, compare=False)
    app: str | None = dataclasses.field(default=None, compare=False)

    def __getattr__(self, name: str) -> Any:
        if name in _FIELDS_BY_NAME:
            values = object.__getattribute__(self, "values")
            return values[name] if name in values else DEFAULTS.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @staticmethod
    def field_names() -> tuple[str, ...]:
        """Fields with a value and a source, in display order: ``cluster`` then the profile."""
        return ("cluster", *FIELD_NAMES)

    def source(self, name: str) -> str:
        """Where the value of field ``name`` came from."""
        if name not in self.field_names():
            raise KeyError(name)
        return self.sources.get(name, SOURCE_DEFAULT)

    def items(self) -> Iterator[tuple[str, Any, str]]:
        """``(field, value, source)`` for every field, in display order."""
        for name in self.field_names():
            yield name, getattr(self, name), self.source(name)

    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{"field": {"value": ..., "source": ...}}``; lists as lists, paths as strings."""
        return {
            name: {"value": _jsonable(value), "source": source}
            for name, value, source in self.items()
        }

    @property
    def jump_spec(self) -> str | None:
        """The jump hosts as one ``ssh -J`` argument (``"login,gateway"``), or None."""
        return ",".join(self.jump) if self.jump else None

    @property
    def warn_before_s(self) -> float | None:
        """Seconds before the time limit to warn at; None: no warning."""
        seconds = duration_s(self.warn_before) if self.warn_before else DEFAULT_WARN_BEFORE_S
        return seconds or None

    @property
    def lease_s(self) -> float | None:
        return duration_s(self.lease) if self.lease else None

    def job_request(self, job_name: str = "nodetunnel") -> JobRequest:
        """The resource fields as the scheduler's :class:`JobRequest` (the one submit path)."""
        given = {RESOURCE_ATTRS[k]: v for k, v in self.values.items() if k in RESOURCE_ATTRS}
        return JobRequest(job_name=job_name, **given)

    @property
    def job(self) -> JobRequest:
        """The job these settings ask for."""
        return self.job_request()

    @property
    def cluster_ref(self) -> ClusterRef:
        """How to reach this cluster (``jump`` must be set)."""
        includes = (str(self.ssh_config),) if self.ssh_config else ()
        return ClusterRef(self.cluster, tuple(self.jump), self.user, includes, self.scheduler,
                          connect_timeout_s=self.connect_timeout_s,
                          multiplex=bool(self.multiplex))  # fmt: skip


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def resolve(
    cluster: str | None,
    cli_overrides: Mapping[str, Any] = _EMPTY,
    config_path: str | os.PathLike[str] | None = None,
    *,
    app: str | None = None,
    sandbox_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """The effective settings for ``cluster``, each field with its source.

    ``cluster`` None means the config file's ``default_cluster``, if any, else
    no cluster (only defaults and command-line values). ``cli_overrides`` maps
    field names to command-line values; ``None`` (and an empty list for list
    fields) means "not given", as click reports an option that was not used.
    ``app`` (one of :data:`APPS`) also applies ``[clusters.NAME.APP]``.
    ``sandbox_dir`` is where to look for the sandbox's ``profile.toml``
    (default: ``$NODETUNNEL_SANDBOX_DIR`` or /var/lib/nodetunnel-sandbox).

    Raises UsageError for a bad config file, an unknown cluster or a bad value.
    Raises ValueError for an unknown ``app`` or override key (a programming error).
    """
    if app is not None and app not in APPS:
        raise ValueError(f"unknown app {app!r}; known: {', '.join(APPS)}")
    unknown = sorted(set(cli_overrides) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {', '.join(FIELD_NAMES)}")
    config = load_config(config_path)
    presets = _preset_names(sandbox_dir)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    name: str | None
    if cluster is not None:
        name = cluster
        sources["cluster"] = SOURCE_CLI
    else:
        name = config.default_cluster
        if name is not None:
            sources["cluster"] = config.source

    if name is not None:
        if name not in presets and name not in config.clusters:
            raise _unknown_cluster(name, config, presets, sandbox_dir, via_default=cluster is None)
        if name in presets:
            for key, value in _preset_values(name, sandbox_dir).items():
                values[key] = value
                sources[key] = f"preset {name}"
        entry = config.clusters.get(name)
        if entry is not None:
            for key, value in entry.values.items():
                values[key] = value
                sources[key] = config.source
            if app is not None and app in entry.apps:
                for key, value in entry.apps[app].items():
                    values[key] = value
                    sources[key] = f"{config.source} ({app} section)"

    cli = _Origin(SOURCE_CLI, base_dir=Path.cwd())
    for key, raw in cli_overrides.items():
        if raw is None or (isinstance(raw, (list, tuple)) and not raw):
            continue  # not given
        values[key] = _coerce(cli, key, raw)
        sources[key] = SOURCE_CLI

    return Settings(
        cluster=name,
        values=MappingProxyType(values),
        sources=MappingProxyType(sources),
        config_path=config.path,
        config_exists=config.exists,
        app=app,
    )


def _unknown_cluster(
    name: str,
    config: Config,
    presets: Sequence[str],
    sandbox_dir: str | os.PathLike[str] | None,
    *,
    via_default: bool,
) -> UsageError:
    if name == "sandbox":
        return UsageError(
            f"the 'sandbox' cluster is not available: no sandbox profile at "
            f"{sandbox_profile_path(sandbox_dir)}",
            hint="start the mini-cluster with 'nodetunnel sandbox up' (as root), then try again",
        )
    known = ", ".join(_known(config, presets)) or "none"
    close = difflib.get_close_matches(name, list(_known(config, presets)), n=1)
    guess = f" (did you mean '{close[0]}'?)" if close else ""
    where = f" (default_cluster in {config.path})" if via_default else ""
    return UsageError(
        f"unknown cluster {_short_repr(name)}{where}{guess}; known clusters: {known}",
        hint=f"pick a known cluster, or define [clusters.{name}] in {config.path} "
        "('nodetunnel config init' writes a commented starter file)",
    )
