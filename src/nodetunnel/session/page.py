"""The page a browser opens: a 0600 file that redirects to the URL, so the token stays out of argv."""

from __future__ import annotations

import html
import os
from pathlib import Path


def redirect_page(path: Path, url: str, title: str) -> Path:
    """Write a 0600 page at ``path`` that sends the browser to ``url`` (token stays out of argv)."""
    href = html.escape(url, quote=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            f'<!DOCTYPE html><meta http-equiv="refresh" content="0; url={href}">'
            f'<a href="{href}">Open {html.escape(title)}</a>\n'
        )
    return path
