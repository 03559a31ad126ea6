"""The session commands: list, attach, open, logs, stop — each a few lines over the fleet API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import ExitCode, NodetunnelError
from . import cli
from .output import print_json, progress, session_table, use_timestamps

_config_file_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file to read instead of the default one.",
)


def _cluster_refs(cluster: str | None, config_file: Path | None, every: bool) -> list[Any]:
    """The clusters to ask: --cluster, else the default cluster; all configured with ``every``."""
    from .. import config

    names: list[str | None] = (
        [*sorted(config.load_config(config_file).clusters)] if every else [cluster]
    )
    refs = []
    for name in names:
        s = config.resolve(name, {}, config_file)
        if s.jump:
            refs.append(s.cluster_ref)
    return refs


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the sessions as JSON (no tokens).")
@click.option(
    "--cluster",
    metavar="NAME",
    help="Also list sessions started elsewhere (another laptop) on this cluster.",
)
@click.option(
    "--all-clusters",
    is_flag=True,
    help="Also list sessions started elsewhere on every cluster in your config file.",
)
@_config_file_option
def list_sessions(
    as_json: bool, cluster: str | None, all_clusters: bool, config_file: Path | None
) -> None:
    """List your sessions, with their job state, node, time left and URL.

    Asks SLURM once per cluster: the clusters of this machine's sessions,
    plus --cluster (default: your default cluster) or --all-clusters.
    Sessions whose job has ended are shown as ENDED and forgotten (their
    leftovers here and on the cluster are removed). Running sessions started
    on another machine are listed too ("elsewhere"); 'attach' takes them over.

    \b
    Examples:
      nodetunnel jupyter --cluster swc --detach   # runs on in the background
      nodetunnel list
      nodetunnel list --cluster swc --json        # e.g. from your other laptop
      nodetunnel attach nt-1a2b3c4d
    """
    from ..session.fleet import reconcile
    from ..state import SessionStore

    listing = reconcile(SessionStore(), _cluster_refs(cluster, config_file, all_clusters))
    if as_json:
        print_json([r.to_json() for r in listing.rows])
    elif listing.rows:
        session_table(listing.rows)
    elif not listing.unreachable and not listing.unreadable:
        click.echo("no sessions  (start one with: nodetunnel jupyter --cluster NAME)")
    for problem in listing.unreadable:
        progress(f"warning: {problem}")
    for ref, problem in listing.unreachable:
        progress(f"could not ask SLURM on {ref.where}: {problem}")
    if listing.unreachable:  # what is shown may be out of date: scripts must know
        raise SystemExit(ExitCode.CONNECTION)


@cli.command()
@click.argument("session_id")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object once reachable.")
@click.option(
    "--detach",
    is_flag=True,
    help="Return once the URL works; a background process keeps the tunnel up until the job ends.",
)
@click.option(
    "--take-over",
    "take_over",
    type=int,
    metavar="PID",
    hidden=True,
    help="Internal: continue in the background the session process PID hands over (--detach).",
)
@click.option(
    "--cluster",
    metavar="NAME",
    help="Where to look for a session started on another machine (default: your default cluster).",
)
@click.option(
    "--notify/--no-notify",
    default=None,
    help="Desktop notifications before the time limit and when the session ends unexpectedly "
    "(default: the profile's notify key, else on).",
)
@_config_file_option
def attach(
    session_id: str,
    no_browser: bool,
    as_json: bool,
    detach: bool,
    take_over: int | None,
    cluster: str | None,
    notify: bool | None,
    config_file: Path | None,
) -> None:
    """Re-open the tunnel of a running session and open it in the browser.

    SESSION_ID is the id from 'nodetunnel list' (a unique prefix, or the job
    id, will do). The same local port is used if it is free, so an open
    browser tab works again. Ctrl-C closes the tunnel; the job keeps running
    ('nodetunnel stop' ends it). With --detach a background process keeps
    the tunnel up instead, as 'nodetunnel jupyter --detach' does.

    \b
    Examples:
      nodetunnel attach nt-1a2b3c4d
      nodetunnel attach 12345 --detach --no-browser
    """
    from ..notify import notify_setting
    from ..session import Session
    from ..session.fleet import prepare_attach
    from ..state import SessionStore
    from .apps import serve
    from .live import follow_events

    store = SessionStore()
    if take_over is not None:  # this is the background process of a detached session
        use_timestamps()
        record = store.find(session_id)
        session = Session.resume(record, progress=progress, store=store)
        follow_events(session, as_json=False, foreground=False,
                      notify=notify_setting(notify, record.cluster, config_file))  # fmt: skip
        session.adopt(take_over)  # a failure here touches nothing of the session
        with session:
            progress(session.watch())
        return
    refs = [] if store.matching(session_id) else _cluster_refs(cluster, config_file, every=False)
    found = prepare_attach(store, session_id, refs)
    record = found.record
    if found.claimed:
        progress(f"found session {record.session_id} (job {record.job_id}) on {record.cluster}")
    if found.ended_orphan:
        progress(f"ended the tunnel left by a stopped nodetunnel (PID {found.ended_orphan})")
    session = Session.resume(record, progress=None if as_json else progress, notice=progress,
                             store=store)  # fmt: skip
    notify = notify_setting(notify, record.cluster, config_file)
    follow_events(session, as_json=as_json, notify=notify, foreground=True)
    # Its keeper stopped for a login it could not answer: after this one, a keeper again.
    detach = detach or record.needs == "attach"
    with session:
        serve(session, session.reattach(), as_json=as_json, browser=not no_browser,
              detach=detach, notify=notify)  # fmt: skip


@cli.command("open")
@click.argument("session_id")
@click.argument("app", required=False)
def open_session(session_id: str, app: str | None) -> None:
    """Open a session's URL (with its token) in the browser.

    APP picks one of the session's apps when it runs several (--with): its
    name (e.g. tensorboard) or its number (1 is the main app, 2 the first
    --with, as 'nodetunnel list' shows them). The tunnel must be up (see
    'nodetunnel list'); 'nodetunnel attach' brings it back.

    \b
    Examples:
      nodetunnel open nt-1a2b3c4d
      nodetunnel open nt-1a2b3c4d tensorboard
    """
    import webbrowser

    from ..session.fleet import app_url, open_page
    from ..state import SessionStore

    store = SessionStore()
    record = store.find(session_id)
    webbrowser.open(open_page(store, record, app).as_uri())
    click.echo(app_url(record, app)[1].split("?", 1)[0])


@cli.command()
@click.argument("session_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option("-n", "--lines", type=click.IntRange(1), default=100, show_default=True,
              help="How many lines from the end to show.")  # fmt: skip
def logs(session_id: str, follow: bool, lines: int) -> None:
    """Show the job log of a session (read from the cluster).

    \b
    Example:
      nodetunnel logs nt-1a2b3c4d -f
    """
    from ..session.fleet import cluster_link
    from ..session.remote import job_log_argv
    from ..state import SessionStore
    from ..transport.base import ClusterRef

    record = SessionStore().find(session_id)
    with cluster_link(ClusterRef.of(record)) as link:  # ssh's failure: an SshError (exit 8)
        argv = job_log_argv(record.session_dir, follow=follow, lines=lines)
        code = link.transport.run_attached(argv)
    if code != 0:
        raise SystemExit(code)


@cli.command()
@click.argument("session_ids", nargs=-1)
@click.option("--all", "stop_all", is_flag=True, help="Stop every session on this machine.")
def stop(session_ids: tuple[str, ...], stop_all: bool) -> None:
    """Stop sessions: cancel the job, close the tunnel, forget the session.

    \b
    Examples:
      nodetunnel stop nt-1a2b3c4d
      nodetunnel stop --all
    """
    from ..errors import UsageError
    from ..session.fleet import stop_sessions
    from ..state import SessionStore

    store = SessionStore()
    if stop_all == bool(session_ids):
        raise UsageError(
            "give session ids or --all (not both, not neither)",
            hint="see 'nodetunnel list' for the ids",
        )
    records = store.all() if stop_all else [store.find(key) for key in session_ids]
    report = stop_sessions(store, records)
    for record in report.stopped:
        progress(f"stopped {record.session_id} (job {record.job_id} cancelled)")
    if report.failed:
        problems = [
            ", ".join(f"{r.session_id} (job {r.job_id})" for r in group) + f" on {ref.where}: {why}"
            for ref, group, why in report.failed
        ]
        raise NodetunnelError(
            "could not cancel " + "; ".join(problems),
            hint="their tunnels are closed; run the same 'nodetunnel stop' again once the "
            "cluster can be reached",
        )
    if not records:
        click.echo("no sessions to stop")


__all__ = ["ExitCode"]


@cli.command("ssh-config")
@click.argument("session_id")
def ssh_config_command(session_id: str) -> None:
    """Add a Host entry for a session's node, for VS Code Remote-SSH or plain ssh.

    The entry, named nodetunnel-ID, goes to a file nodetunnel manages (it is
    removed when the session ends); include that file once from your
    ~/.ssh/config with the line this prints (nodetunnel never edits your
    ~/.ssh/config). The entry names only the node SLURM allocated to the
    session's job, reached through the session's jump hosts.

    \b
    Example:
      nodetunnel ssh-config nt-1a2b3c4d
      ssh nodetunnel-nt-1a2b3c4d nvidia-smi
    """
    from ..session import sshhosts
    from ..state import SessionStore

    store = SessionStore()
    path, name = sshhosts.add(store, store.find(session_id))
    click.echo(name)
    progress(f"wrote the entry {name} to {path}")
    progress(f"once, at the top of ~/.ssh/config: {sshhosts.include_line(path)}")


@cli.command("vscode")
@click.argument("session_id")
@click.option("--dir", "folder", metavar="DIR",
              help="The folder on the node to open: absolute, or '~/PATH' for one in your "
              "cluster home (default: your cluster home).")  # fmt: skip
def vscode_command(session_id: str, folder: str | None) -> None:
    """Open VS Code (Remote-SSH) on a session's node: 'code --remote ssh-remote+HOST DIR'.

    Adds the session's Host entry first (see 'nodetunnel ssh-config'). Needs
    VS Code's 'code' command on this machine and the Include line in your
    ~/.ssh/config. A --dir in your home here (as an unquoted ~/project
    becomes in your shell) is taken to mean the same place in your cluster home.

    \b
    Example:
      nodetunnel vscode nt-1a2b3c4d --dir '~/project'
    """
    import shutil

    from ..errors import PrerequisiteError
    from ..proc import run
    from ..session import sshhosts
    from ..state import SessionStore

    store = SessionStore()
    record = store.find(session_id)
    where = sshhosts.remote_folder(record, folder, laptop_home=str(Path.home()))
    path, name = sshhosts.add(store, record)
    code = shutil.which("code")
    if code is None:
        raise PrerequisiteError(
            "VS Code's 'code' command is not on PATH on this machine",
            hint=f"install VS Code with its shell command, or connect to the host {name} from "
            f"VS Code's Remote-SSH ({sshhosts.include_line(path)} in ~/.ssh/config)",
        )
    run([code, "--remote", f"ssh-remote+{name}", where], timeout_s=60)
    progress(f"VS Code opens {where} on {name}")
