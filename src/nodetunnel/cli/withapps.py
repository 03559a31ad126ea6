"""``--with NAME[:ARGS]``: further apps in the same job, parsed as their own commands parse them.

``NAME`` is a recipe (``nodetunnel apps``) or ``run``; ``ARGS`` are that
command's own arguments, split as a shell splits them, e.g.
``--with tensorboard:'--logdir runs'`` or
``--with 'run:--ready /status python -m http.server --bind 127.0.0.1 {port}'``.
Only the app's own parameters are taken: resources, environment and session
options are the session's.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import click

from ..apps import RECIPES, RUN, command_app
from ..apps.base import App
from ..errors import UsageError


def _run_parser() -> click.Command:
    return click.Command(
        "run",
        params=[
            click.Option(["--ready"], default="/"),
            click.Option(["--url"], default="/"),
            click.Argument(["command"], nargs=-1, required=True, type=click.UNPROCESSED),
        ],
        context_settings={"allow_interspersed_args": False},
    )


def _recipe_parser(app: App) -> click.Command:
    params: list[click.Parameter] = []
    for p in app.params:
        if p.is_option:
            default: dict[str, Any] = {} if p.default is None else {"default": p.default}
            params.append(click.Option([*p.decls, p.name], required=p.required, **default))
        else:
            params.append(click.Argument([p.name], nargs=-1 if p.many else 1,
                                         required=p.required,
                                         type=click.UNPROCESSED if p.many else None))  # fmt: skip
    return click.Command(app.name, params=params)


def _values(parser: click.Command, words: list[str], spec: str) -> dict[str, Any]:
    try:
        ctx = parser.make_context(parser.name, words, resilient_parsing=False)
    except click.NoSuchOption as exc:
        if exc.option_name != "--tcp":
            raise UsageError(f"--with {spec!r}: {exc.format_message()}",
                             hint=f"see 'nodetunnel {parser.name} --help' for its arguments",
                             ) from None  # fmt: skip
        raise UsageError(
            f"--with {spec!r}: --tcp is not an app's own argument: a further app listens on "
            "its own socket in the job's private directory (run's command on {port} on a port)",
            hint="leave --tcp out of --with (for 'run', put {port} in its command)",
        ) from None
    except click.UsageError as exc:
        raise UsageError(
            f"--with {spec!r}: {exc.format_message()}",
            hint=f"see 'nodetunnel {parser.name} --help' for its arguments",
        ) from None
    return dict(ctx.params)


def parse_one(spec: str) -> App:
    """The bound recipe for one ``--with`` value."""
    name, _, args = spec.partition(":")
    name = name.strip()
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise UsageError(f"--with {spec!r}: {exc}", hint="check the quotes in ARGS") from None
    if name == RUN.name:
        values = _values(_run_parser(), words, spec)
        from ..apps.run import CommandError

        try:
            return command_app(values["command"], ready_path=values["ready"],
                               url_path=values["url"])  # fmt: skip
        except CommandError as exc:
            raise UsageError(f"--with {spec!r}: {exc}",
                             hint="see 'nodetunnel run --help' for examples") from None  # fmt: skip
    app = RECIPES.get(name)
    if app is None:
        known = ", ".join([*RECIPES, RUN.name])
        raise UsageError(f"--with {spec!r}: there is no app {name!r}", hint=f"use one of: {known}")
    if not app.params:
        if words:
            raise UsageError(f"--with {spec!r}: {name} takes no arguments here",
                             hint=f"use --with {name}")  # fmt: skip
        return app
    return app.bind(_values(_recipe_parser(app), words, spec))


def parse(specs: Sequence[str]) -> tuple[App, ...]:
    return tuple(parse_one(spec) for spec in specs)
