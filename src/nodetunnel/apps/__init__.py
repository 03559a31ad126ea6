"""App recipes: how to start each app privately on a node and how to tell it is ready."""

from __future__ import annotations

from .base import App, ShellVar
from .jupyter import JUPYTER

APPS: dict[str, App] = {JUPYTER.name: JUPYTER}

__all__ = ["APPS", "App", "ShellVar"]
