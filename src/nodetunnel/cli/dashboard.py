"""``nodetunnel dashboard``: the session cards in the browser (the optional web extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import cli
from .output import print_json, progress, use_timestamps


@cli.group("dashboard", invoke_without_command=True)
@click.option("--port", type=click.IntRange(1, 65535),
              help="Port on 127.0.0.1 (default: a free one).")  # fmt: skip
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the URL.")
@click.option("--detach", is_flag=True,
              help="Run in the background ('nodetunnel dashboard stop' ends it).")  # fmt: skip
@click.option("--cluster", "clusters", multiple=True, metavar="NAME",
              help="Also show sessions started elsewhere on this cluster (repeatable; default: "
              "your default cluster).")  # fmt: skip
@click.option("--all-clusters", is_flag=True,
              help="Also show sessions started elsewhere on every cluster in your config file.")  # fmt: skip
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file to read instead of the default one.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (url, port, pid) once the page is served.")  # fmt: skip
@click.option("--refresh-s", type=click.FloatRange(0.5), default=15.0, hidden=True,
              help="Seconds between scheduler queries while a page is open (tests).")  # fmt: skip
@click.option("--serve-detached", is_flag=True, hidden=True,
              help="Internal: the background process of --detach.")  # fmt: skip
@click.pass_context
def dashboard(ctx: click.Context, /, **opts: Any) -> None:
    """Your sessions on every cluster as cards in the browser, with Start, Open, Logs and Stop.

    A page on 127.0.0.1 only, protected by a key made here: the URL opened
    (or printed, with --no-browser) carries it once, then a cookie does.
    Each card shows the app, cluster, job, node and state (a pending job
    with SLURM's reason and start estimate), the time left, the tunnel and
    the URL; the page updates itself, asking SLURM at most once per cluster
    every 15 s and only while it is open. 'New session' starts one like
    'nodetunnel jupyter --detach', with the profile's values and a
    --dry-run preview. Ctrl-C ends the dashboard (sessions keep running).

    Needs the web extra: pipx install 'nodetunnel[dashboard]'.

    \b
    Examples:
      nodetunnel dashboard
      nodetunnel dashboard --detach --cluster swc
      nodetunnel dashboard stop
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..dashboard import require

    require()
    from ..dashboard import server
    from ..state import SessionStore
    from .sessions import _cluster_refs

    store = SessionStore()
    other = server.running(store)
    if other is not None and opts["port"] is None and not opts["serve_detached"]:
        _announce(store, other, opts, again=True)
        return
    refs: list[Any] = []
    for name in opts["clusters"] or ([None] if not opts["all_clusters"] else []):
        refs += _cluster_refs(name, opts["config_file"], every=False)
    if opts["all_clusters"]:
        refs += _cluster_refs(None, opts["config_file"], every=True)
    config_file = str(opts["config_file"]) if opts["config_file"] else None
    if opts["detach"] and not opts["serve_detached"]:
        from ..session.fleet import keeper_command

        _, env = keeper_command()  # the same nodetunnel, wherever it is installed
        args = ["dashboard", "--no-browser", "--serve-detached",
                "--refresh-s", str(opts["refresh_s"])]  # fmt: skip
        args += [w for name in opts["clusters"] for w in ("--cluster", name)]
        args += ["--all-clusters"] if opts["all_clusters"] else []
        args += ["--config", config_file] if config_file else []
        args += ["--port", str(opts["port"])] if opts["port"] else []
        found = server.detach(server.self_argv(args), env, store)
        _announce(store, found, opts, detached=True)
        return
    if opts["serve_detached"]:
        use_timestamps()

    def ready(me: Any) -> None:
        if opts["serve_detached"]:
            progress(f"dashboard at {me.address} (process {me.pid})")
        else:
            _announce(store, me, opts)
            progress("Ctrl-C ends the dashboard; your sessions keep running")

    server.serve(refs, port=opts["port"], config_file=config_file, interval_s=opts["refresh_s"],
                 store=store, ready=ready)  # fmt: skip


def _announce(
    store: Any, found: Any, opts: dict[str, Any], *, again: bool = False, detached: bool = False
) -> None:
    from ..dashboard import server

    if opts["as_json"]:
        print_json({"url": found.url, "address": found.address, "port": found.port,
                    "pid": found.pid, "already_running": again})  # fmt: skip
    else:
        if again:
            progress(f"a dashboard already runs at {found.address} (process {found.pid})")
        elif detached:
            progress(f"the dashboard runs in process {found.pid} ('nodetunnel dashboard stop' "
                     "ends it)")  # fmt: skip
        if opts["no_browser"]:
            click.echo(f"\n  dashboard: {found.url}\n")
        else:
            click.echo(f"\n  dashboard: {found.address}\n")
    if not opts["no_browser"]:
        server.open_browser(store, found)


@dashboard.command("stop")
def dashboard_stop() -> None:
    """End the dashboard that runs in the background (sessions keep running).

    \b
    Example:
      nodetunnel dashboard stop
    """
    from ..dashboard import server

    found = server.stop()
    if found is None:
        click.echo("no dashboard runs")
    else:
        progress(f"stopped the dashboard (process {found.pid})")
