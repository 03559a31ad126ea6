"""``nodetunnel dashboard``: the sessions of every cluster as cards on a private local page.

The web stack, chosen deliberately:

* **Starlette** (ASGI toolkit) — small, well kept, typed, with exactly what
  this page needs: routing, cookies, streaming responses for server-sent
  events, static files, and a TestClient for unit tests. A full framework
  (Django, FastAPI's validation layer) would add weight without use; aiohttp
  would do too, but brings its own HTTP client stack and test tooling.
* **uvicorn** — the reference ASGI server; it binds nothing itself (the
  socket on 127.0.0.1 is made here), and stops on Ctrl-C.
* **Jinja2** — autoescaping templates for the three pages.
* **Server-sent events** rather than websockets: updates flow one way, SSE is
  plain HTTP (same cookie, same origin check) and the browser reconnects by
  itself. Buttons are ordinary POSTs.
* **No front-end build step**: one CSS file (dark and light through
  ``prefers-color-scheme``) and one small vanilla-JS file, served from this
  package; nothing is fetched from elsewhere.

These are an optional extra (``pipx install 'nodetunnel[dashboard]'``), imported
only by this command, so ``nodetunnel --help`` and the other commands start as fast
as before. Modules: :mod:`.board` (cards, refresh rate), :mod:`.forms` (the New
session form), :mod:`.actions` (the buttons: the CLI's library calls),
:mod:`.web` (the Starlette app: token, cookie, CSRF, SSE), :mod:`.server`
(uvicorn, detach, stop).
"""

from __future__ import annotations

import importlib.util

from ..errors import PrerequisiteError

EXTRA = "pipx install 'nodetunnel[dashboard]'"
PACKAGES = ("starlette", "uvicorn", "jinja2")


def require() -> None:
    """Raise PrerequisiteError naming the install command if the extra is missing."""
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise PrerequisiteError(
            f"the dashboard needs {', '.join(missing)}, which is not installed",
            hint=f"{EXTRA} (or: pip install 'nodetunnel[dashboard]')",
        )


__all__ = ["EXTRA", "PACKAGES", "require"]
