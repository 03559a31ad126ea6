"""The dashboard's HTTP side: a Starlette app, private to whoever holds the token.

* Every request needs the token: once in the URL nodetunnel opens
  (``/?key=TOKEN``), which sets an HttpOnly, SameSite=Strict cookie and
  redirects to a URL without it; after that the cookie. Anything else is 403.
  The Host header must be 127.0.0.1:PORT or localhost:PORT (no DNS rebinding).
* A POST also needs its Origin (or Sec-Fetch-Site) to be this page and the
  page's CSRF value in ``X-CSRF-Token``.
* ``/events`` streams the cards (server-sent events); while at least one is
  open, the board is refreshed when due (≤ 1 query per cluster per interval).
* Pages, CSS and JS are served from this package (no CDN); a strict
  Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..apps.base import LoginForm, opening_page
from ..errors import NodetunnelError
from ..notify import Notifier, make_notifier
from ..session import LaunchRequest
from ..state import SessionStore
from . import actions, forms
from .board import Board

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
KEEPALIVE_S = 15.0  # an SSE comment this often, so a dead page is noticed
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")  # fmt: skip
FORBIDDEN = ("forbidden: this page needs the dashboard's key — open the URL that "
             "'nodetunnel dashboard' printed or opened\n")  # fmt: skip


class Auth:
    """The token check, the cookie and the CSRF value of one dashboard on one port."""

    def __init__(self, token: str, port: int) -> None:
        self.token = token
        self.port = port
        self.cookie = f"nodetunnel_dashboard_{port}"
        self.csrf = hmac.new(token.encode(), b"csrf", hashlib.sha256).hexdigest()
        self.origins = {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}

    def _same(self, given: str | None, wanted: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), wanted.encode())

    def check(self, request: Request) -> Response | None:
        """None if the request may go on, else the response that refuses (or logs it in)."""
        if request.headers.get("host", "") not in self.hosts:
            return PlainTextResponse("forbidden: wrong Host\n", status_code=403)
        key = request.query_params.get("key")
        if key is not None:
            if not self._same(key, self.token) or request.method != "GET":
                return PlainTextResponse(FORBIDDEN, status_code=403)
            rest = {k: v for k, v in request.query_params.multi_items() if k != "key"}
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict",
                                path="/")  # fmt: skip
            _secure_headers(response)
            return response
        if not self._same(request.cookies.get(self.cookie), self.token):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            site = request.headers.get("sec-fetch-site")
            if origin is not None and origin not in self.origins:
                return PlainTextResponse("forbidden: cross-origin request\n", status_code=403)
            if origin is None and site != "same-origin":
                return PlainTextResponse("forbidden: no Origin\n", status_code=403)
            if not self._same(request.headers.get("x-csrf-token"), self.csrf):
                return PlainTextResponse("forbidden: missing CSRF token\n", status_code=403)
        return None


class Guard:
    """ASGI wrapper: every HTTP request passes :meth:`Auth.check` first."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.auth.check(Request(scope))
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _login_page(title: str, url: str, login: LoginForm) -> Response:
    """For an app that logs in by a form (Panel, code-server): the page that posts it, as
    ``nodetunnel open`` opens it; its one script and the post allowed by its own policy."""
    nonce = secrets.token_urlsafe(16)
    parts = urlsplit(login[0])
    response = _secure_headers(HTMLResponse(opening_page(url, title, login, nonce=nonce)))
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; "
        f"form-action {parts.scheme}://{parts.netloc}; base-uri 'none'; frame-ancestors 'none'")  # fmt: skip
    return response


class Changes:
    """Wakes the event streams when the board changes (from any thread)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def fire(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def make_app(
    board: Board,
    store: SessionStore,
    auth: Auth,
    *,
    config_file: str | None = None,
    start: Callable[..., str] | None = None,
    connect: Any = None,
) -> ASGIApp:
    """The dashboard as an ASGI app (``start``: how to start a session, called with the
    request and ``notify=``; default: detached)."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined,
    )  # fmt: skip
    changes = Changes()
    board.on_change = changes.fire
    subscribers = [0]
    extra = {"connect": connect} if connect is not None else {}
    notifiers: list[Notifier] = []  # one backend for every start from this dashboard

    def start_detached(req: LaunchRequest, *, notify: bool) -> str:
        if notify and not notifiers:
            notifiers.append(make_notifier())
        return actions.start_detached(board, store, req, notify=notify,
                                      notifier=notifiers[0] if notifiers else None)  # fmt: skip

    start_session = start or start_detached

    def page(name: str, **ctx: Any) -> Response:
        html = templates.get_template(name).render(csrf=auth.csrf, **ctx)
        return _secure_headers(HTMLResponse(html))

    def failed(exc: NodetunnelError, status: int = 400) -> Response:
        return _secure_headers(JSONResponse({"error": actions.one_line(exc)}, status_code=status))

    async def index(request: Request) -> Response:
        return page("index.html", interval_s=board.interval_s)

    async def new(request: Request) -> Response:
        spec = await run_in_threadpool(forms.form_spec, request.query_params.get("cluster"),
                                       request.query_params.get("app", ""), config_file)  # fmt: skip
        return page("new.html", spec=spec)

    async def form_data(request: Request) -> dict[str, str]:
        """The form's fields, sent by the page as one JSON object of strings."""
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, str)}

    async def preview(request: Request) -> Response:
        data = await form_data(request)
        try:
            script = await run_in_threadpool(forms.preview, data, config_file)
        except forms.FormErrors as exc:
            return _secure_headers(JSONResponse({"errors": exc.errors}, status_code=400))
        return _secure_headers(JSONResponse({"script": script}))

    async def start_view(request: Request) -> Response:
        data = await form_data(request)
        try:
            parsed = await run_in_threadpool(forms.parse_form, data, config_file)
        except forms.FormErrors as exc:
            return _secure_headers(JSONResponse({"errors": exc.errors}, status_code=400))
        sid = start_session(parsed.request, notify=bool(parsed.settings.notify))
        return _secure_headers(JSONResponse({"session_id": sid}))

    async def cards(request: Request) -> Response:
        data = await run_in_threadpool(board.cards)
        return _secure_headers(JSONResponse({"cards": data, "problems": board.problems,
                                             "events": board.events()}))  # fmt: skip

    async def events(request: Request) -> Response:
        changes.loop = asyncio.get_running_loop()

        async def stream() -> AsyncIterator[str]:
            subscribers[0] += 1
            try:
                sent = -1
                while True:
                    if board.seconds_until_due() <= 0:
                        try:
                            await run_in_threadpool(board.refresh_if_due)
                        except Exception:  # one failed refresh must not end the page's stream
                            log.exception("refresh failed")
                    if board.version != sent:
                        sent = board.version
                        data = await run_in_threadpool(board.cards)
                        yield _sse("cards", {"cards": data, "problems": board.problems,
                                             "events": board.events(),
                                             "refreshed_at": board.refreshed_at})  # fmt: skip
                    else:
                        yield ": keepalive\n\n"
                    wait_s = min(KEEPALIVE_S, max(0.05, board.seconds_until_due()))
                    await changes.wait(wait_s)
            finally:
                subscribers[0] -= 1

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def open_view(request: Request) -> Response:
        try:
            name, url, login = await run_in_threadpool(
                actions.open_target, store, request.path_params["sid"],
                request.path_params.get("app"))  # fmt: skip
        except NodetunnelError as exc:
            return _secure_headers(PlainTextResponse(actions.one_line(exc) + "\n",
                                                     status_code=409))  # fmt: skip
        if login is None:
            return _secure_headers(RedirectResponse(url, status_code=303))
        return _login_page(name, url, login)

    async def stop_view(request: Request) -> Response:
        try:
            message = await run_in_threadpool(actions.stop, board, store,
                                              request.path_params["sid"], **extra)  # fmt: skip
        except NodetunnelError as exc:
            return failed(exc)
        return _secure_headers(JSONResponse({"message": message}))

    async def attach_view(request: Request) -> Response:
        try:
            sid = await run_in_threadpool(lambda: actions.attach_detached(
                board, store, request.path_params["sid"], config_file=config_file, **extra))  # fmt: skip
        except NodetunnelError as exc:
            return failed(exc)
        return _secure_headers(JSONResponse({"session_id": sid}))

    async def ssh_view(request: Request) -> Response:
        try:
            entry = await run_in_threadpool(actions.ssh_entry, store, request.path_params["sid"])
        except NodetunnelError as exc:
            return failed(exc)
        return _secure_headers(JSONResponse(entry))

    async def dismiss_view(request: Request) -> Response:
        board.dismiss(request.path_params["sid"])
        return _secure_headers(JSONResponse({"ok": True}))

    async def logs_page(request: Request) -> Response:
        return page("logs.html", sid=request.path_params["sid"])

    async def logs_events(request: Request) -> Response:
        try:
            record = store.find(request.path_params["sid"])
        except NodetunnelError as exc:
            return failed(exc, 404)
        return StreamingResponse(_follow(record, extra), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})  # fmt: skip

    routes = [
        Route("/", index),
        Route("/new", new),
        Route("/api/preview", preview, methods=["POST"]),
        Route("/api/start", start_view, methods=["POST"]),
        Route("/api/cards", cards),
        Route("/events", events),
        Route("/open/{sid}", open_view),
        Route("/open/{sid}/{app}", open_view),
        Route("/api/sessions/{sid}/stop", stop_view, methods=["POST"]),
        Route("/api/sessions/{sid}/ssh-config", ssh_view, methods=["POST"]),
        Route("/api/sessions/{sid}/attach", attach_view, methods=["POST"]),
        Route("/api/sessions/{sid}/dismiss", dismiss_view, methods=["POST"]),
        Route("/logs/{sid}", logs_page),
        Route("/logs/{sid}/events", logs_events),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.subscribers = subscribers
    app.state.changes = changes
    return Guard(app, auth)


async def _follow(record: Any, extra: dict[str, Any]) -> AsyncIterator[str]:
    """The job log's lines as server-sent events, until the page goes (then the tail ends)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    holder: list[Any] = []

    def put(kind: str, text: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, text))

    def worker() -> None:
        try:
            with actions.follow_log(record, **extra) as proc:
                holder.append(proc)
                for raw in iter(proc.stdout.readline if proc.stdout else bytes, b""):
                    put("line", raw.decode(errors="replace").rstrip("\n"))
        except NodetunnelError as exc:
            put("problem", actions.one_line(exc))
        except Exception as exc:  # the page must hear of it
            put("problem", repr(exc))
        put("end", "")

    thread = threading.Thread(target=worker, name="logs", daemon=True)
    thread.start()
    try:
        while True:
            kind, text = await queue.get()
            yield _sse(kind, text)
            if kind == "end":
                return
    finally:
        for proc in holder:  # the page went away: end the tail, the worker then leaves
            if proc.poll() is None:
                proc.terminate()


__all__ = ["Auth", "Guard", "make_app"]
