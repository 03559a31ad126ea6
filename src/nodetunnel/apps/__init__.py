"""App recipes: how to start each app privately on a node and how to tell it is ready.

A recipe is one file here plus one line in :data:`APPS`; each becomes a
command (``nodetunnel NAME``) with every resource, environment and session option.
"""

from __future__ import annotations

from .base import NO_AUTH, App, Auth, ShellVar, Word
from .jupyter import JUPYTER, NOTEBOOK

#: Every recipe, by command name.
APPS: dict[str, App] = {app.name: app for app in (JUPYTER, NOTEBOOK)}

__all__ = ["APPS", "JUPYTER", "NOTEBOOK", "NO_AUTH", "App", "Auth", "ShellVar", "Word"]
