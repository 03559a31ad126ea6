"""The page a browser opens: a 0600 file that redirects to the URL, so the token stays out of argv."""

from __future__ import annotations

import os
from pathlib import Path

from ..apps.base import LoginForm, opening_page


def redirect_page(path: Path, url: str, title: str, login: LoginForm | None = None) -> Path:
    """Write a 0600 page at ``path`` that opens ``url`` (the token stays out of argv); with
    ``login`` (:meth:`~nodetunnel.apps.base.App.login_form`) it posts the app's login form."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(opening_page(url, title, login))
    return path
