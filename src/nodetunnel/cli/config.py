"""``nodetunnel config``: cluster profiles and where each value comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..apps import APPS
from . import cli
from .output import print_json, progress

_CONFIG_APPS = tuple(APPS)


@cli.group("config", invoke_without_command=True)
@click.option(
    "-c",
    "--cluster",
    metavar="NAME",
    default=None,
    help="The cluster to show.  [default: default_cluster from the config file]",
)
@click.option(
    "--app",
    type=click.Choice(_CONFIG_APPS),
    default=None,
    help="Also apply the app's own section, [clusters.NAME.APP].",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file to use instead of $NODETUNNEL_CONFIG or the default location.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
@click.pass_context
def config_group(
    ctx: click.Context,
    cluster: str | None,
    app: str | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Show a cluster profile's effective settings and where each value comes from.

    Profiles live in a TOML file (see 'nodetunnel config path'): under
    [clusters.NAME], how to reach the cluster (jump hosts, user), what to ask
    SLURM for (partition, gres, mem, time, ...) and how to set up the app's
    environment (conda_env, modules, venv, setup, workdir). Built-in presets:
    'swc', and 'sandbox' once 'nodetunnel sandbox up' has run. Later sources
    override earlier ones, key by key: default, preset, config file, command
    line.

    \b
    Example:
      nodetunnel config init             # write a commented starter file
      nodetunnel config                  # the default cluster's settings
      nodetunnel config --cluster swc    # another cluster
      nodetunnel config --json           # {"partition": {"value": ..., "source": ...}, ...}
    """
    if ctx.invoked_subcommand is not None:
        options = (("--cluster", cluster), ("--app", app), ("--json", as_json))
        given = [opt for opt, value in options if value]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to "
                f"'nodetunnel config' itself, not to 'config {ctx.invoked_subcommand}'"
            )
        return
    from ..config import known_clusters, resolve

    settings = resolve(cluster, {}, config_file, app=app)
    if as_json:
        print_json(settings.to_json())
        return
    _show_settings(settings, known_clusters(config_file))


def _show_settings(settings: Any, known: dict[str, str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    found = "" if settings.config_exists else "  (not found; 'nodetunnel config init' writes one)"
    console.print(f"config file: {escape(str(settings.config_path))}{found}", soft_wrap=True)
    clusters = ", ".join(f"{name} ({where})" for name, where in known.items()) or "none"
    console.print(f"clusters: {escape(clusters)}", soft_wrap=True)
    title = f"settings for cluster {settings.cluster}" if settings.cluster else "settings"
    if settings.app:
        title += f", app {settings.app}"
    table = Table(title=escape(title), title_justify="left")
    for col in ("field", "value", "source"):
        table.add_column(col, overflow="fold", no_wrap=col == "source")
    file_source = f"config file {settings.config_path}"
    for name, value, source in settings.items():
        if source.startswith(file_source):  # the path is printed above the table
            source = "config file" + source[len(file_source) :]
        if value is None or value == ():
            shown = "[dim](not set)[/dim]"
        elif isinstance(value, tuple):
            shown = escape(", ".join(value))
        else:
            shown = escape(str(value))
        table.add_row(name, shown, escape(source))
    console.print(table)


@config_group.command("init")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option(
    "--path",
    "path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write it.  [default: the path 'nodetunnel config path' prints]",
)
@click.pass_context
def config_init(ctx: click.Context, force: bool, path: Path | None) -> None:
    """Write a commented starter config file, then print its path.

    The file explains every key and has an SWC-like example cluster to
    rename and edit. It is written with mode 0600 (a new directory gets
    0700). An existing file is kept unless you add --force.

    \b
    Example:
      nodetunnel config init
      $EDITOR "$(nodetunnel config path)"
      nodetunnel config
    """
    from ..config import write_starter_config

    parent = ctx.parent.params.get("config_file") if ctx.parent else None
    written = write_starter_config(path if path is not None else parent, force=force)
    click.echo(str(written))
    progress("edit it, then check the result with: nodetunnel config")


@config_group.command("path")
@click.pass_context
def config_path_command(ctx: click.Context) -> None:
    """Print the path of the config file nodetunnel reads.

    That is $NODETUNNEL_CONFIG if set, else config.toml in your user config
    directory (~/.config/nodetunnel on Linux, honouring $XDG_CONFIG_HOME).
    The file may not exist yet: 'nodetunnel config init' writes it.

    \b
    Example:
      nodetunnel config path
      NODETUNNEL_CONFIG=~/work.toml nodetunnel config path
    """
    from ..config import config_path

    parent = ctx.parent.params.get("config_file") if ctx.parent else None
    click.echo(str(config_path(parent)))
