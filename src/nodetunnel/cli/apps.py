"""The app commands (``nodetunnel jupyter`` ...), one per recipe, options from the field table."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..apps import APPS, RECIPES, RUN, command_app
from ..apps.base import App, Param
from ..config.fields import FIELDS, duration_s
from ..fields import Field
from . import cli
from .live import follow_events
from .output import announce, print_json, progress


class Seconds(click.ParamType):  # type: ignore[type-arg]
    """A finite number of seconds, or a duration like ``10m``, ``90s``, ``1h30m``."""

    name = "seconds"

    def __init__(self, minimum: float = 1.0) -> None:
        self.minimum = minimum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            text = str(value).strip()
            try:
                seconds = float(text)
            except ValueError:
                try:
                    seconds = duration_s(text)
                except ValueError:
                    self.fail(f"{value!r} is not a number of seconds or a duration like 10m, "
                              "90s or 1h30m", param, ctx)  # fmt: skip
        if not math.isfinite(seconds) or seconds < self.minimum:
            self.fail(f"{value!r} must be a finite time of at least {self.minimum:g} s",
                      param, ctx)  # fmt: skip
        return seconds


def _field_option(field: Field) -> Callable[[Any], Any]:
    kw: dict[str, Any] = {"help": field.option_help}
    if field.metavar:
        kw["metavar"] = field.metavar
    if field.kind == "pos_int":
        kw["type"] = click.IntRange(1)
    if field.kind == "str_list":
        kw["multiple"] = True
    if field.kind == "bool":
        kw["default"] = None  # not given: the profile decides
    return click.option(*field.flags, field.name, **kw)


def _tcp_help(app: App) -> str:
    """What --tcp does for ``app``, and what then protects it (only true words)."""
    if app.auth.uses_secret:
        secret = "password" if app.auth.form is not None else "token"
        exposure = f"so its {secret} is all that protects it"
    else:
        exposure = ("so an app without a login of its own is open to them (nodetunnel warns "
                    "when it starts one)")  # fmt: skip
    gets = " (the command gets $NT_PORT)" if app.exports_endpoint else ""
    return (f"Listen on a free port of the node's 127.0.0.1 instead of a private Unix "
            f"socket{gets}, for sites whose sshd forbids socket forwarding; other users with "
            f"a job on the node could reach the port, {exposure}.")  # fmt: skip


def _tcp_refused(app: App) -> Callable[[click.Context, click.Parameter, bool], None]:
    """--tcp given to an app that is served only on its private socket: say so, not 'no such
    option' (the option is hidden from its --help)."""

    def refuse(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            takes = ", ".join(n for n, a in APPS.items() if a.takes_tcp)
            raise click.UsageError(
                f"--tcp: {app.title} is served only on a private Unix socket on the node, never "
                f"on a port; --tcp is for {takes}", ctx)  # fmt: skip

    return refuse


def _session_options(f: Any, app: App) -> Any:
    """Every option of an app command: the profile fields that have a flag, then the session's.

    ``--tcp`` only where the recipe can listen on a port (``App.takes_tcp``).
    """
    tcp = [click.option("--tcp", is_flag=True, help=_tcp_help(app)) if app.takes_tcp else
           click.option("--tcp", is_flag=True, hidden=True, expose_value=False,
                        callback=_tcp_refused(app),
                        help="Refused: the app is served only on its private socket.")]  # fmt: skip
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
        *(_field_option(field) for field in FIELDS if field.flags),
        click.option(
            "--port",
            type=click.IntRange(1, 65535),
            help="Local port on 127.0.0.1 (default: the app's usual port if free, else any "
            "free port).",
        ),
        click.option(
            "--timeout",
            "timeout_s",
            type=Seconds(),
            default=600.0,
            show_default=True,
            help="How long to wait for the job to start the app: seconds, or e.g. 10m.",
        ),
        click.option("--no-browser", is_flag=True, help="Do not open a browser."),
        *tcp,
        click.option(
            "--with",
            "with_apps",
            multiple=True,
            metavar="NAME[:ARGS]",
            help="Also start the app NAME in the same job, on its own private socket (or "
            "port) and its own local port; ARGS are its own arguments, as after 'nodetunnel "
            "NAME'. Repeatable; examples above.",
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


def _help(app: App) -> str:
    examples = "\n".join(f"  nodetunnel {app.name} {line}" for line in app.examples)
    return (
        f"{app.summary}\n\n"
        "The job is submitted with sbatch (it survives your laptop), the app listens on a "
        "private Unix socket on the node, and an SSH tunnel through your jump hosts forwards "
        "it to 127.0.0.1. Any secret is made here and never appears on a command line. "
        "Ctrl-C closes the tunnel and cancels the job (unless --keep)."
        + (f"\n\n{app.details}" if app.details else "")
        + (f"\n\n\b\nExamples:\n{examples}" if examples else "")
        + _WITH_EXAMPLES
    )


_WITH_EXAMPLES = (
    "\n\n\b\nSeveral apps in one job (--with NAME[:ARGS], one local port each):\n"
    "  nodetunnel jupyter --cluster swc --with tensorboard:'--logdir ~/runs'\n"
    "  nodetunnel jupyter --cluster swc --with 'run:python -m http.server --bind 127.0.0.1 "
    "{port}'"
)


def _param(param: Param) -> Callable[[Any], Any]:
    if param.is_option:
        extra: dict[str, Any] = {} if param.default is None else {"default": param.default,
                                                                  "show_default": True}  # fmt: skip
        return click.option(*param.decls, param.name, help=param.help, required=param.required,
                            **extra)  # fmt: skip
    kind: Any = click.Choice(param.choices) if param.choices else None
    name = param.decls[0]  # the usage line shows what may be left out: [DIR], [-- ARGS...]
    metavar = f"[-- {name}...]" if param.many else name if param.required else f"[{name}]"
    return click.argument(param.name, metavar=metavar, nargs=-1 if param.many else 1,
                          required=param.required, type=click.UNPROCESSED if param.many else kind)  # fmt: skip


def _app_command(app: App) -> None:
    def command(**opts: Any) -> None:
        values = {p.name: opts.pop(p.name) for p in app.params}
        run_app(app.bind(values) if app.params else app, opts)

    command.__name__ = f"{app.name}_command"
    decorated = _session_options(command, app)
    for param in reversed(app.params):
        decorated = _param(param)(decorated)
    cli.command(app.name, help=_help(app), short_help=app.summary)(decorated)


def run_app(app: App, opts: dict[str, Any]) -> None:
    from .. import config
    from ..session import Session, plan
    from ..session.request import launch_request, settings_for
    from ..state import SessionStore
    from .withapps import parse as parse_with

    extras = parse_with(opts.pop("with_apps", ()))
    overrides = {k: opts[k] for k in config.APP_KEYS}
    settings = settings_for(app, opts["cluster"], overrides, opts["config_file"])
    req = launch_request(app, settings, local_port=opts["port"], start_timeout_s=opts["timeout_s"],
                         keep=opts["keep"], tcp=opts.get("tcp", False), extras=extras)  # fmt: skip
    if opts["dry_run"]:
        click.echo(plan(req), nl=False)
        return
    session = Session(req, progress=None if opts["as_json"] else progress, notice=progress,
                      store=SessionStore())  # fmt: skip
    notify = bool(settings.notify)
    follow_events(session, as_json=opts["as_json"], notify=notify, foreground=True)
    with session:
        serve(session, session.start(), as_json=opts["as_json"], browser=not opts["no_browser"],
              detach=opts["detach"], notify=notify)  # fmt: skip


def serve(session: Any, info: Any, *, as_json: bool, browser: bool, detach: bool = False,
          notify: bool = True) -> None:  # fmt: skip
    """Announce a reachable session, open the browser, keep the tunnel up until the job ends.

    With ``detach`` the background process takes the session over first, so
    that what is announced is what runs (and notifies, if ``notify``).
    """
    from .. import cli as root
    from ..session.fleet import keeper_command

    keeper = None
    if detach:
        command, env = keeper_command(debug=root._debug, notify=notify)
        keeper = session.detach(command, env=env)
    if as_json:
        print_json(info.to_json())
    else:
        announce(session, info, detached_pid=keeper.pid if keeper else None)
    if browser and not as_json:
        import webbrowser

        webbrowser.open(session.browser_file().as_uri())
    if keeper is not None:
        if not as_json:
            progress(f"session {info.session_id} continues in process {keeper.pid} "
                     f"(log: {session.log_path()})")  # fmt: skip
        return
    progress(session.watch())


for _app in RECIPES.values():
    _app_command(_app)


def _run_command(**opts: Any) -> None:
    from ..apps.run import CommandError
    from ..errors import UsageError

    try:
        app = command_app(opts.pop("command"), ready_path=opts.pop("ready"),
                          url_path=opts.pop("url"), tcp=opts["tcp"])  # fmt: skip
    except CommandError as exc:
        raise UsageError(str(exc), hint="see 'nodetunnel run --help' for examples") from None
    run_app(app, opts)


_run_help = (
    f"{RUN.summary}\n\n"
    "COMMAND is your app's command line, after --. Where it should listen is given to it as "
    "{socket} (a Unix socket in the job's private directory) or {port} (a free port on the "
    "node's 127.0.0.1) in its words, and as $NT_SOCKET or $NT_PORT in its environment; "
    "without a placeholder it gets $NT_SOCKET (with --tcp: $NT_PORT). --ready is the page "
    "nodetunnel waits for (any 2xx or 3xx answer; the app's own health page is best), "
    "--url the page the browser opens. An app on a port without a password can be reached "
    "by other users with a job on the same node: nodetunnel says so when it starts one. "
    "With --with, every app of the job finds where each listens as $NT_SOCKET_NAME or "
    "$NT_PORT_NAME (NAME the app's name upper-cased: RUN, STREAMLIT ...; a second app of the "
    "same name adds its number, as 'nodetunnel list' shows it: RUN_3)."
    "\n\n\b\nExamples:\n"
    + "\n".join(f"  nodetunnel run {line}" for line in RUN.examples)
    + _WITH_EXAMPLES
)
cli.command("run", help=_run_help, short_help=RUN.summary)(
    click.option("--ready", default="/", show_default=True, metavar="PATH",
                 help="The HTTP path that must answer before the URL is announced.")(
        click.option("--url", default="/", show_default=True, metavar="PATH",
                     help="The page the browser opens.")(
            click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)(
                _session_options(_run_command, RUN)
            )
        )
    )
)  # fmt: skip


@cli.command("apps")
@click.option("--json", "as_json", is_flag=True, help="Print the recipes as JSON.")
def apps_command(as_json: bool) -> None:
    """List the app recipes: how each listens on the node, what protects it, its ready probe.

    \b
    Examples:
      nodetunnel apps
      nodetunnel apps --json
    """
    from ..apps import APPS

    rows = [
        {"name": app.name, "app": app.title if app.program else "any command",
         "listens_on": app.listener_text() if app.program else "{socket} or {port}",
         "protected_by": app.protection_text() if app.program else
         "the socket; none on a port (warned)",
         "ready_probe": f"GET {app.ready_path}" + (" (--ready)" if not app.program else
                        "" if app.ready_statuses == {200} else
                        " -> " + "/".join(map(str, sorted(app.ready_statuses)))),
         "opens": app.url_path + ("" if app.program else " (--url)")}
        for app in APPS.values()
    ]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="nodetunnel app recipes", title_justify="left")
    for col in ("name", "app", "listens on", "protected by", "ready probe", "opens"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)
