"""The New session form: fields prefilled from the profile (with where each value came from),
parsed into the same :class:`~nodetunnel.session.LaunchRequest` an app command builds.

Errors are the CLI's own one-line messages (:class:`~nodetunnel.errors.UsageError`),
attached to the field that caused them when that can be told, else to the form.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Mapping
from typing import Any

from ..apps import RECIPES
from ..apps.base import App
from ..config import FIELDS, known_clusters, resolve
from ..config.settings import Settings
from ..errors import NodetunnelError, UsageError
from ..session import LaunchRequest, plan
from ..session.request import launch_request, settings_for

#: The profile fields the form offers: those an app command takes as options.
FORM_FIELDS = tuple(f for f in FIELDS if f.flags and f.group != "connection")
#: Form-level problems (not one field's) are reported under this key.
GENERAL = "_form"


class FormErrors(Exception):
    """Bad input: ``{field name or GENERAL: one-line message}``."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _message(exc: NodetunnelError) -> str:
    return exc.message + (f" ({exc.hint})" if exc.hint else "")


#: How the form's text fields may say yes and no (``--notify``: "false", "no", "off").
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False}  # fmt: skip


def value_text(value: Any) -> str:
    """A setting as the form shows it: lists as shell words, booleans as in TOML, unset as
    empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return shlex.join(str(v) for v in value)
    return str(value)


def form_spec(
    cluster: str | None, app_name: str, config_file: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """What the form shows for ``cluster`` and ``app_name``: choices, fields, values, sources.

    A bad config file or unknown cluster gives the form with that error instead of values.
    """
    app = RECIPES.get(app_name) or next(iter(RECIPES.values()))
    clusters = list(known_clusters(config_file))
    spec: dict[str, Any] = {
        "clusters": clusters, "apps": [{"name": a.name, "title": a.title} for a in
                                       RECIPES.values()],
        "app": app.name, "cluster": cluster or "", "errors": {},
        "params": [{"name": p.name, "label": p.decls[0], "help": p.help,
                    "value": p.default or "", "required": p.required} for p in app.params],
    }  # fmt: skip
    settings: Settings | None = None
    try:
        settings = resolve(cluster or None, {}, config_file, app=app.name)
    except UsageError as exc:
        spec["errors"] = {"cluster": _message(exc)}
    if settings is not None and not spec["cluster"]:
        spec["cluster"] = settings.cluster or ""
    spec["fields"] = [
        {"name": f.name, "kind": f.kind, "help": f.option_help, "flag": f.flags[-1],
         "value": value_text(getattr(settings, f.name)) if settings else "",
         "source": settings.source(f.name) if settings else "default"}
        for f in FORM_FIELDS
    ]  # fmt: skip
    return spec


def _parse(kind: str, text: str) -> Any:
    if kind == "str_list":
        return tuple(shlex.split(text))
    if kind == "pos_int":
        return int(text) if text.isdigit() else text
    if kind == "bool":
        if text.lower() not in BOOL_WORDS:
            raise ValueError("expected true or false")
        return BOOL_WORDS[text.lower()]
    return text


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A valid form: the request to start, and its settings (for the provenance)."""

    request: LaunchRequest
    settings: Settings


def parse_form(
    form: Mapping[str, str], config_file: str | os.PathLike[str] | None = None
) -> Parsed:
    """The form's values as a :class:`LaunchRequest`; raises :class:`FormErrors`.

    A field whose text is what the profile gives is not an override, so the
    provenance stays the profile's; anything else is taken as from the command line.
    """
    errors: dict[str, str] = {}
    app = RECIPES.get(form.get("app", ""))
    if app is None:
        raise FormErrors({"app": f"unknown app {form.get('app', '')!r}; known: "
                                 f"{', '.join(RECIPES)}"})  # fmt: skip
    cluster = form.get("cluster", "").strip() or None
    try:
        base = resolve(cluster, {}, config_file, app=app.name)
    except UsageError as exc:
        raise FormErrors({"cluster": _message(exc)}) from None
    overrides: dict[str, Any] = {}
    for field in FORM_FIELDS:
        text = form.get(field.name, "").strip()
        if not text or text == value_text(getattr(base, field.name)):
            continue
        try:
            overrides[field.name] = _parse(field.kind, text)
        except ValueError as exc:
            errors[field.name] = f"{field.flags[-1]}: {exc} in {text!r}"
    for name, raw in overrides.items():  # each value checked alone, to name its field
        try:
            resolve(cluster, {name: raw}, config_file, app=app.name)
        except UsageError as exc:
            errors[name] = _message(exc)
    bound = _bind(app, form, errors)
    if errors:
        raise FormErrors(errors)
    try:
        settings = settings_for(bound, cluster, overrides, config_file)
        req = launch_request(bound, settings)
        plan(req)  # what cannot go into the job script fails here, as before a real start
    except UsageError as exc:
        raise FormErrors({_field_named(exc.message): _message(exc)}) from None
    return Parsed(req, settings)


def _bind(app: App, form: Mapping[str, str], errors: dict[str, str]) -> App:
    if not app.params:
        return app
    values: dict[str, object] = {}
    for p in app.params:
        text = form.get(f"param_{p.name}", "").strip()
        values[p.name] = text or p.default
        if p.required and not text:
            errors[f"param_{p.name}"] = f"{app.title} needs {p.decls[0]}: {p.help}"
    if any(k.startswith("param_") for k in errors):
        return app
    return app.bind(values)


def _field_named(message: str) -> str:
    """The form field an error message is about (it names the key or option), or GENERAL."""
    for f in FORM_FIELDS:
        if f.name in message or any(flag in message for flag in f.flags if flag.startswith("--")):
            return f.name
    return "cluster" if "cluster" in message else GENERAL


def preview(form: Mapping[str, str], config_file: str | os.PathLike[str] | None = None) -> str:
    """The ``--dry-run`` text for the form: the batch script and the commands."""
    return plan(parse_form(form, config_file).request)


__all__ = ["FORM_FIELDS", "GENERAL", "FormErrors", "Parsed", "form_spec", "parse_form", "preview"]
