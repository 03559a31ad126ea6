"""The ``nodetunnel`` command: a thin click layer over the library.

This is the only module that prints or exits. Library errors arrive as
:class:`nodetunnel.errors.NodetunnelError` and leave as one clear message and
an :class:`~nodetunnel.errors.ExitCode`; a traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .errors import ExitCode, NodetunnelError

_debug = False
_timestamps = False  # in the background, where the output goes to a log file


def _progress(msg: str) -> None:
    if _timestamps:
        import time

        click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}", err=True)
    else:
        click.echo(f"· {msg}", err=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))
    sys.stdout.flush()  # a script may read it while the command keeps running


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name="nodetunnel")
@click.option(
    "--debug", is_flag=True, help="Show full tracebacks and the commands run, for bug reports."
)
def cli(debug: bool) -> None:
    """Open web apps running on SLURM compute nodes in your laptop's browser.

    nodetunnel submits a batch job that starts the app (JupyterLab, Streamlit,
    Dash, TensorBoard, ...) on a compute node, listening privately, then
    forwards it to 127.0.0.1 on your laptop through your own OpenSSH setup
    (~/.ssh/config, agent, ProxyJump, MFA) and keeps the tunnel healthy.

    \b
    Try it without a cluster (Linux, as root):
      nodetunnel sandbox up        build a mini-cluster on this machine
      nodetunnel sandbox status    see what is running
      nodetunnel sandbox down      remove it again
    """
    global _debug
    _debug = debug
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="debug: %(message)s", stream=sys.stderr)


# --------------------------------------------------------------------- sandbox
_dir_option = click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="NODETUNNEL_SANDBOX_DIR",
    show_envvar=True,
    help="Where the sandbox keeps its files.  [default: /var/lib/nodetunnel-sandbox]",
)


def _sandbox(root: Path | None, node_count: int = 2, quiet: bool = False) -> Any:
    from .sandbox.cluster import Sandbox
    from .sandbox.topology import Paths

    paths = Paths(root.resolve()) if root else Paths()
    return Sandbox(paths, node_count=node_count, progress=None if quiet else _progress)


@cli.group()
def sandbox() -> None:
    """A throwaway mini-cluster on this machine, for trying nodetunnel and for its tests.

    Real OpenSSH, SLURM and PAM in Linux network namespaces: your machine plays
    the laptop; 'login' is reachable from it; 'gateway' (slurmctld) only from
    login; compute nodes 'node1', 'node2', ... (slurmd, a fake GPU) only from
    the gateway. Nodes refuse SSH from users with no job there
    (pam_slurm_adopt), like many real sites. Test users 'ntalice' and 'ntbob'
    have keys and an ~/.ssh/config for it.

    Needs root and the Debian/Ubuntu packages openssh-server, slurmctld,
    slurmd, slurm-client, munge, libpam-slurm-adopt (./scripts/setup installs
    them).

    \b
    Example, as root:
      nodetunnel sandbox up
      su - ntalice -c 'ssh -J login,gateway node1 hostname'   # refused: no job
      su - ntalice -c 'ssh -J login gateway sbatch -w node1 -D /tmp --wrap "sleep 60"'
      su - ntalice -c 'ssh -J login,gateway node1 hostname'   # accepted
      nodetunnel sandbox down
    """


@sandbox.command("up")
@click.option(
    "--nodes",
    "node_count",
    type=click.IntRange(1, 50),
    default=2,
    show_default=True,
    help="Number of compute nodes.",
)
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sandbox_up(node_count: int, root: Path | None, as_json: bool) -> None:
    """Build the mini-cluster and wait until it is ready (idempotent).

    Ready means: every sshd answers with its host key, slurmctld answers,
    all nodes are idle and the scheduler has made its first pass.
    """
    status = _sandbox(root, node_count, quiet=as_json).up()
    _show_status(status, as_json)


@sandbox.command("down")
@_dir_option
def sandbox_down(root: Path | None) -> None:
    """Remove the mini-cluster: processes, namespaces, route, test users, files.

    Works after a failed or interrupted 'up' too. Only processes the sandbox
    started (those in its own cgroup) are ended, by PID.
    """
    removed = _sandbox(root).down()
    if removed:
        click.echo("removed: " + ", ".join(removed))
    else:
        click.echo("nothing to remove: no sandbox on this machine")


@sandbox.command("status")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def sandbox_status(root: Path | None, as_json: bool) -> None:
    """Show hosts, daemons and node states. Exit code 0 only if the sandbox is up and healthy."""
    status = _sandbox(root, quiet=True).status()
    _show_status(status, as_json)
    if not status.up:
        raise SystemExit(ExitCode.SANDBOX if status.daemons else ExitCode.FAILURE)


@sandbox.command("ssh-config")
@_dir_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the config to this file instead of printing it.",
)
def sandbox_ssh_config(root: Path | None, output: Path | None) -> None:
    """Print the laptop-side ssh config for the sandbox (use it with ssh -F).

    Host-key checking stays on: the config points at a known_hosts file with
    every host's key. The test users already have it as ~/.ssh/config.
    """
    sb = _sandbox(root, quiet=True)
    path = sb.paths.ssh_config
    if not path.exists():
        from .errors import SandboxError

        raise SandboxError(
            f"no sandbox ssh config at {path}", hint="run 'nodetunnel sandbox up' first"
        )
    text = path.read_text()
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            output.write_text(text)
        except OSError as exc:
            from .errors import UsageError

            raise UsageError(
                f"cannot write the ssh config to {output}: {exc.strerror}",
                hint="choose a file in an existing directory you can write to",
            ) from exc
        click.echo(f"wrote {output}", err=True)


def _show_status(status: Any, as_json: bool) -> None:
    if as_json:
        _print_json(status.to_json())
        return
    if not status.daemons:
        click.echo(f"no sandbox at {status.root}  (start one with: nodetunnel sandbox up)")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"nodetunnel sandbox at {status.root}", title_justify="left")
    for col in ("host", "addresses", "daemons", "slurm"):
        table.add_column(col)
    for host, addrs in status.hosts.items():
        daemons = ", ".join(
            f"{d.name} {d.pid}" + ("" if d.alive else " (dead)")
            for d in status.daemons
            if d.host == host and d.name != "holder"
        )
        table.add_row(host, " ".join(addrs), daemons, status.nodes.get(host, ""))
    console.print(table)
    console.print(f"users: {', '.join(status.users)}   ssh config: {status.ssh_config}")
    for problem in status.problems:
        console.print(f"[red]problem:[/red] {problem}")
    console.print("[green]up[/green]" if status.up else "[red]not healthy[/red]")


# --------------------------------------------------------------------- jupyter
def _resource_options(f: Any) -> Any:
    opts = [
        click.option(
            "--cluster", metavar="NAME", help="Cluster profile to use (see: nodetunnel config)."
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Config file to read instead of the default one.",
        ),
        click.option("-p", "--partition", help="SLURM partition, e.g. gpu."),
        click.option("--gres", help="Generic resources, e.g. gpu:1."),
        click.option("--gpus", help="GPUs for the job (sbatch --gpus)."),
        click.option("--mem", help="Memory per node, e.g. 16G."),
        click.option("-t", "--time", help="Time limit, e.g. 4:00:00."),
        click.option("-c", "--cpus-per-task", type=click.IntRange(1), help="CPUs for the app."),
        click.option("-A", "--account", help="SLURM account to charge."),
        click.option("-q", "--qos", help="Quality of service."),
        click.option("-C", "--constraint", help="Node features, e.g. a100."),
        click.option("--reservation", help="Reservation name."),
        click.option(
            "--sbatch-arg",
            "sbatch_args",
            multiple=True,
            metavar="ARG",
            help="Any other sbatch option, e.g. --sbatch-arg=--exclusive (repeatable).",
        ),
        click.option("--conda-env", help="Conda environment to activate on the node."),
        click.option(
            "--module",
            "modules",
            multiple=True,
            metavar="NAME",
            help="Environment module to load first (repeatable).",
        ),
        click.option("--venv", help="Python virtualenv (directory on the cluster) to activate."),
        click.option("--setup", metavar="CMD", help="Shell command to run before the app, as-is."),
        click.option("--workdir", help="Directory on the cluster to start the app in."),
        click.option(
            "--port",
            type=click.IntRange(1, 65535),
            help="Local port on 127.0.0.1 (default: 8888 if free, else any free port).",
        ),
        click.option(
            "--timeout",
            "timeout_s",
            type=click.FloatRange(1),
            default=600.0,
            show_default=True,
            help="Seconds to wait for the job to start the app.",
        ),
        click.option("--no-browser", is_flag=True, help="Do not open a browser."),
        click.option(
            "--tcp",
            is_flag=True,
            help="Listen on 127.0.0.1:PORT on the node instead of a private Unix socket (for "
            "sites whose sshd forbids socket forwarding; other users on the node could reach "
            "the port, so the token is all that protects it).",
        ),
        click.option(
            "--warn-before",
            metavar="DURATION",
            help="Warn this long before the job's time limit, e.g. 15m (0: never).  [default: 10m]",
        ),
        click.option(
            "--lease",
            metavar="DURATION",
            help="Cancel the job when no nodetunnel has kept the session for this long (e.g. "
            "30m), so a lost laptop does not leave it running; the tunnel keeper checks in.",
        ),
        click.option(
            "--keep",
            is_flag=True,
            help="Leave the job running when nodetunnel exits (default: cancel it).",
        ),
        click.option(
            "--detach",
            is_flag=True,
            help="Return once the URL works; a background process keeps the tunnel up until the "
            "job ends (see 'nodetunnel list', end it with 'nodetunnel stop').",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            help="Print the batch script and the ssh commands; run nothing.",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="Print one JSON object once the app is reachable.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@cli.command()
@_resource_options
def jupyter(**opts: Any) -> None:
    """Start JupyterLab in a SLURM job and open it in your browser.

    The job is submitted with sbatch (it survives your laptop), JupyterLab
    listens on a private Unix socket on the node, and an SSH tunnel through
    your jump hosts forwards it to 127.0.0.1. The token is made here and never
    appears on a command line. Ctrl-C closes the tunnel and cancels the job
    (unless --keep).

    \b
    Examples:
      nodetunnel jupyter --cluster swc -p gpu --gres gpu:1 --mem 16G --time 4:00:00
      nodetunnel jupyter --cluster swc --conda-env my_env --workdir ~/project
      nodetunnel jupyter --cluster sandbox --no-browser      # the mini-cluster
      nodetunnel jupyter --cluster swc --dry-run             # show, do not run
    """
    _run_app("jupyter", opts)


def _run_app(app_name: str, opts: dict[str, Any]) -> None:
    from . import config
    from .apps import APPS
    from .errors import UsageError
    from .payload import Environment
    from .session import LaunchRequest, Session, plan

    overrides = {k: opts[k] for k in config.APP_KEYS}
    settings = config.resolve(opts["cluster"], overrides, opts["config_file"], app=app_name)
    if not settings.jump:
        raise UsageError(
            "no cluster to connect to: no --cluster given and no default_cluster in the config",
            hint="pass --cluster NAME (e.g. --cluster swc), or run 'nodetunnel config init'",
        )
    env = Environment(
        modules=tuple(settings.modules), conda_env=settings.conda_env, venv=settings.venv,
        setup=settings.setup, workdir=settings.workdir,
    )  # fmt: skip
    req = LaunchRequest(
        app=APPS[app_name], jump=tuple(settings.jump), job=settings.job_request("nodetunnel"),
        env=env, user=settings.user,
        ssh_includes=(str(settings.ssh_config),) if settings.ssh_config else (),
        local_port=opts["port"], start_timeout_s=opts["timeout_s"], keep=opts["keep"],
        tcp=opts["tcp"], warn_before_s=settings.warn_before_s, lease_s=settings.lease_s,
        job_check_interval_s=settings.job_check_interval_s,
    )  # fmt: skip
    if opts["dry_run"]:
        click.echo(plan(req), nl=False)
        return
    from .state import SessionStore

    session = Session(req, progress=None if opts["as_json"] else _progress, notice=_progress,
                      store=SessionStore(), cluster=settings.cluster)  # fmt: skip
    with session:
        _serve(session, session.start(), as_json=opts["as_json"], browser=not opts["no_browser"],
               detach=opts["detach"])  # fmt: skip


def _supervisor_command() -> tuple[list[str], dict[str, str]]:
    """This program, re-executed to keep a session in the background (see Session.detach)."""
    import os
    import site

    from . import __file__ as package_init

    env = dict(os.environ)
    root = str(Path(package_init).resolve().parent.parent)  # the same nodetunnel, wherever it is
    usual = {*site.getsitepackages(), site.getusersitepackages(),
             *env.get("PYTHONPATH", "").split(os.pathsep)}  # fmt: skip
    if root not in usual:  # e.g. run from a source tree: the ssh it starts keep their path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "nodetunnel", *(["--debug"] if _debug else []),
            "attach", "--no-browser", "--take-over", str(os.getpid())]  # fmt: skip
    return argv, env


def _serve(session: Any, info: Any, *, as_json: bool, browser: bool, detach: bool = False) -> None:
    """Announce a reachable session, open the browser, keep the tunnel up until the job ends.

    With ``detach`` the background process takes the session over first, so
    that what is announced is what runs.
    """
    keeper = None
    if detach:
        command, env = _supervisor_command()
        keeper = session.detach(command, env=env)
    if as_json:
        _print_json(info.to_json())
    else:
        left = f", {info.time_left_s // 60} min left" if info.time_left_s else ""
        lease = session.req.lease_s
        until = f" until the job ends or nothing keeps it for {lease / 60:g} min" if lease else ""
        click.echo(f"\n  {session.req.app.name} is ready: {info.url}\n")
        if keeper is not None:
            click.echo(f"  job {info.job_id} on {info.node}{left}. Runs in the background{until}: "
                       f"nodetunnel list; nodetunnel stop {info.session_id}")  # fmt: skip
        else:
            if session.req.keep:
                stop = f"the job keeps running{until} (nodetunnel attach {info.session_id})"
            else:
                stop = "the job is cancelled"
            click.echo(f"  job {info.job_id} on {info.node}{left}. Ctrl-C to stop; {stop}.")
        sys.stdout.flush()
    if browser and not as_json:
        import webbrowser

        webbrowser.open(session.browser_file().as_uri())
    if keeper is not None:
        if not as_json:
            _progress(f"session {info.session_id} continues in process {keeper.pid} "
                      f"(log: {session.log_path()})")  # fmt: skip
        return
    _progress(session.watch())


# -------------------------------------------------------------------- sessions
_config_file_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file to read instead of the default one.",
)


def _cluster_refs(cluster: str | None, config_file: Path | None, every: bool) -> list[Any]:
    """The clusters to ask: --cluster, else the default cluster; all configured with ``every``."""
    from . import config
    from .session import ClusterRef

    names: list[str | None] = (
        [*sorted(config.load_config(config_file).clusters)] if every else [cluster]
    )
    refs = []
    for name in names:
        s = config.resolve(name, {}, config_file)
        if s.jump:
            includes = (str(s.ssh_config),) if s.ssh_config else ()
            refs.append(ClusterRef(s.cluster, tuple(s.jump), s.user, includes))
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
    from .session import reconcile
    from .state import SessionStore

    rows = reconcile(SessionStore(), _cluster_refs(cluster, config_file, all_clusters))
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no sessions  (start one with: nodetunnel jupyter --cluster NAME)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="nodetunnel sessions", title_justify="left")
    for col in ("id", "app", "cluster", "job", "state", "node", "time left", "tunnel", "url"):
        table.add_column(col)
    for r in rows:
        left = r["time_left_s"]
        tunnel = r["tunnel"] if r["here"] else "elsewhere"
        if r.get("reconnects"):
            tunnel += f" ({r['reconnects']} reconnects)"
        table.add_row(
            r["session_id"], r["app"], r["cluster"] or "", r["job_id"], r["state"], r["node"],
            "" if left is None else f"{left // 60} min", tunnel,
            r["url"] if r["tunnel"] == "up" else "",
        )  # fmt: skip
    Console().print(table)
    problems = sorted({r["problem"] for r in rows if r["problem"]})
    for problem in problems:
        _progress(f"could not ask SLURM: {problem}")


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
@_config_file_option
def attach(
    session_id: str,
    no_browser: bool,
    as_json: bool,
    detach: bool,
    take_over: int | None,
    cluster: str | None,
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
    from .errors import UsageError
    from .proc import ProcessRef
    from .session import Session, claim, end_orphan_tunnel
    from .state import SessionStore

    store = SessionStore()
    refs = [] if take_over or store.matching(session_id) else _cluster_refs(
        cluster, config_file, every=False)  # fmt: skip
    if refs:  # not known here: a session started on another machine?
        record = claim(store, refs[0], session_id)
        _progress(f"found session {record.session_id} (job {record.job_id}) on {record.cluster}")
    else:
        record = store.find(session_id)
    if take_over is not None:  # this is the background process of a detached session
        global _timestamps
        _timestamps = True
        session = Session.resume(record, progress=_progress, store=store)
        session.adopt(take_over)  # a failure here touches nothing of the session
        with session:
            _progress(session.watch())
        return
    if record.pid and record.pid_start and ProcessRef(record.pid, record.pid_start).alive():
        raise UsageError(
            f"session {record.session_id} is attached already (by process {record.pid})",
            hint=f"its URL is in 'nodetunnel list'; 'nodetunnel stop {record.session_id}' ends it",
        )
    if end_orphan_tunnel(record):  # its keeper was killed: the port is needed again
        _progress(f"ended the tunnel left by a stopped nodetunnel (PID {record.tunnel_pid})")
    session = Session.resume(record, progress=None if as_json else _progress, notice=_progress,
                             store=store)  # fmt: skip
    with session:
        _serve(session, session.reattach(), as_json=as_json, browser=not no_browser,
               detach=detach)  # fmt: skip


@cli.command("open")
@click.argument("session_id")
def open_session(session_id: str) -> None:
    """Open a session's URL (with its token) in the browser.

    The tunnel must be up (see 'nodetunnel list'); 'nodetunnel attach' brings it back.
    """
    import webbrowser

    from .errors import UsageError
    from .session import process_alive, redirect_page
    from .state import SessionStore

    store = SessionStore()
    record = store.find(session_id)
    if not process_alive(record.tunnel_pid, record.tunnel_start):
        raise UsageError(
            f"session {record.session_id} has no tunnel on this machine now",
            hint=f"run 'nodetunnel attach {record.session_id}' to bring it back",
        )
    page = redirect_page(store.root / f"{record.session_id}.open.html", record.url, record.app)
    webbrowser.open(page.as_uri())
    click.echo(record.url.split("?", 1)[0])


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
    from .proc import run_attached
    from .session import cluster_link, job_log_argv
    from .state import SessionStore

    record = SessionStore().find(session_id)
    with cluster_link(record.jump, record.user, record.ssh_includes) as ssh:
        argv = ssh.command_argv(ssh.submit_host, ssh.jump[:-1],
                                job_log_argv(record, follow=follow, lines=lines))  # fmt: skip
        code = run_attached(argv)
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
    from .errors import UsageError
    from .session import stop_sessions
    from .state import SessionStore

    store = SessionStore()
    if stop_all == bool(session_ids):
        raise UsageError(
            "give session ids or --all (not both, not neither)",
            hint="see 'nodetunnel list' for the ids",
        )
    records = store.all() if stop_all else [store.find(key) for key in session_ids]
    stopped, problems = stop_sessions(store, records)
    for line in stopped:
        _progress(line)
    if problems:
        raise NodetunnelError(
            "could not cancel " + "; ".join(problems),
            hint="their tunnels are closed; run the same 'nodetunnel stop' again once the "
            "cluster can be reached",
        )
    if not records:
        click.echo("no sessions to stop")


# ---------------------------------------------------------------------- config
_CONFIG_APPS = ("jupyter",)  # nodetunnel.config.APPS, spelled out to keep imports lazy


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
    from .config import known_clusters, resolve

    settings = resolve(cluster, {}, config_file, app=app)
    if as_json:
        _print_json(settings.to_json())
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
    from .config import write_starter_config

    parent = ctx.parent.params.get("config_file") if ctx.parent else None
    written = write_starter_config(path if path is not None else parent, force=force)
    click.echo(str(written))
    _progress("edit it, then check the result with: nodetunnel config")


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
    from .config import config_path

    parent = ctx.parent.params.get("config_file") if ctx.parent else None
    click.echo(str(config_path(parent)))


# ------------------------------------------------------------------------ main
def _fail(code: int, message: str, hint: str | None = None) -> NoReturn:
    click.echo(f"nodetunnel: error: {message}", err=True)
    if hint:
        click.echo(f"  fix: {hint}", err=True)
    sys.exit(int(code))


def _terminate(signum: int, _frame: Any) -> None:
    # SIGTERM (e.g. from 'nodetunnel stop') cleans up like Ctrl-C does.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``nodetunnel`` command."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="nodetunnel",
            standalone_mode=False,
        )
    except NodetunnelError as exc:
        if _debug:
            traceback.print_exc()
        _fail(exc.exit_code, exc.message, exc.hint)
    except click.exceptions.Abort:  # click has already ended the ^C line
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    # In non-standalone mode click returns the code of ctx.exit(N) instead of raising.
    sys.exit(rv if isinstance(rv, int) else ExitCode.OK)
