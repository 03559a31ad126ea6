"""App recipes: how to start each app privately on a node and how to tell it is ready.

A recipe is one file here plus one line in :data:`APPS`; each becomes a
command (``nodetunnel NAME``) with every resource, environment and session option.
"""

from __future__ import annotations

from .base import NO_AUTH, App, Auth, Param, ShellVar, Slot, Word
from .code_server import CODE_SERVER
from .dash import DASH
from .jupyter import JUPYTER, NOTEBOOK
from .marimo import MARIMO
from .panel import PANEL
from .run import RUN, command_app
from .streamlit import STREAMLIT
from .tensorboard import TENSORBOARD
from .voila import VOILA

#: The recipes that are a command of their own (``nodetunnel NAME [options]``).
RECIPES: dict[str, App] = {
    app.name: app
    for app in (JUPYTER, NOTEBOOK, STREAMLIT, DASH, TENSORBOARD, MARIMO, PANEL, VOILA, CODE_SERVER)
}
#: Every kind of session, by the name its job and record carry (``run``: any command).
APPS: dict[str, App] = {**RECIPES, RUN.name: RUN}

__all__ = [
    "APPS",
    "JUPYTER",
    "NOTEBOOK",
    "NO_AUTH",
    "RECIPES",
    "RUN",
    "App",
    "Auth",
    "Param",
    "ShellVar",
    "Slot",
    "Word",
    "command_app",
]
