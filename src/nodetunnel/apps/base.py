"""What an app recipe is: how to start one kind of web app privately, reach it and tell it is ready.

A recipe is data plus a few hooks; the session core knows nothing else about
apps. ``launch`` is the app's argv on a Unix socket; :class:`ShellVar` words
are filled in by the job script at run time: ``NT_SOCK`` (the socket path, in
a fresh 0700 directory), ``NT_PORT`` (a free loopback port, for ``launch_tcp``)
and ``NT_TOKEN_FILE`` (a 0600 file holding the secret made on the laptop).
"""

from __future__ import annotations

import dataclasses
import html
import urllib.parse


@dataclasses.dataclass(frozen=True)
class ShellVar:
    """A word of a launch command that the job script fills in at run time (``"$NAME"``)."""

    name: str
    prefix: str = ""  # literal text before the variable, e.g. "--sock="
    suffix: str = ""  # literal text after it


@dataclasses.dataclass(frozen=True)
class Slot:
    """A word of a launch command filled from the command line (:class:`Param` ``name``).

    A param with several values fills several words; one not given fills none.
    """

    name: str


Word = str | ShellVar
Template = Word | Slot
#: Where a browser posts which fields to log in to an app (see :meth:`App.login_form`).
LoginForm = tuple[str, tuple[tuple[str, str], ...]]


@dataclasses.dataclass(frozen=True)
class Param:
    """A command-line parameter of one app's command (``nodetunnel dash APP.py --var NAME``).

    ``decls`` are click's: ``("APP",)`` is an argument (its metavar), ``("--var",)`` an
    option. ``many`` takes every remaining word (after ``--``).
    """

    name: str
    decls: tuple[str, ...]
    help: str = ""
    default: str | None = None
    required: bool = False
    many: bool = False
    choices: tuple[str, ...] = ()  # the only values it takes, if it is so limited

    @property
    def is_option(self) -> bool:
        return self.decls[0].startswith("-")


@dataclasses.dataclass(frozen=True)
class Auth:
    """How an app checks the secret made on the laptop, if it has one.

    ``header``/``header_value`` is what a program sends (``{token}`` is
    replaced); ``query`` is the URL parameter that logs a browser in. An app
    that logs in through a form instead (code-server's password, Panel's basic
    auth) has ``form``, the path the browser posts ``form_fields`` to (``{token}``
    replaced): the page nodetunnel opens on the laptop (0600) posts them.
    """

    header: str | None = None
    header_value: str = "{token}"
    query: str | None = None
    form: str | None = None
    form_fields: tuple[tuple[str, str], ...] = ()

    @property
    def uses_secret(self) -> bool:
        return self.header is not None or self.query is not None or self.form is not None


NO_AUTH = Auth()


@dataclasses.dataclass(frozen=True)
class App:
    """How to run one kind of web app on a node, listening privately (see the module doc).

    ``launch_tcp`` is the fallback on ``127.0.0.1:NT_PORT``, used with ``--tcp``
    or where ``socket_check`` (a shell condition) says the installed app cannot
    listen on a socket. ``ready_path`` is probed through the tunnel before the
    URL is announced; ``url_path`` is what the browser opens. ``preferred_port``
    is the laptop port tried first (then any free one).
    """

    name: str
    title: str  # for people: "JupyterLab"
    program: str  # must be on PATH after environment activation
    launch: tuple[Template, ...]
    launch_tcp: tuple[Template, ...]
    listen: str = "either"  # "socket", "tcp" or "either" (socket; a port with --tcp or for
    # an old version, see socket_check)
    exports_endpoint: bool = False  # NT_SOCKET / NT_PORT in the app's environment
    socket_check: str = "false"  # true: the version can listen on a socket (no fallback)
    env: tuple[tuple[str, ShellVar], ...] = ()  # exported before launch
    auth: Auth = NO_AUTH
    ready_path: str = "/"
    ready_statuses: frozenset[int] = frozenset({200})
    url_path: str = "/"
    preferred_port: int | None = None
    install_hint: str = ""
    summary: str = ""  # one line for --help
    examples: tuple[str, ...] = ()  # command lines for --help, without "nodetunnel NAME"
    params: tuple[Param, ...] = ()  # the command's own parameters, filling the Slots
    launcher: str | None = None  # a file of nodetunnel.apps.launchers, sent with the job
    details: str = ""  # a paragraph for --help: how this app is made private

    def bind(self, values: dict[str, object]) -> App:
        """This recipe with its :class:`Slot` words filled from the command line's values.

        A required parameter without a value is a :class:`ValueError` (the CLI asks for it).
        """
        missing = [p.name for p in self.params if p.required and values.get(p.name) in (None, ())]
        if missing:
            raise ValueError(f"{self.name}: no value for {', '.join(missing)}")

        def fill(words: tuple[Template, ...]) -> tuple[Word, ...]:
            out: list[Word] = []
            for w in words:
                if not isinstance(w, Slot):
                    out.append(w)
                    continue
                value = values.get(w.name)
                if isinstance(value, tuple | list):
                    out.extend(str(v) for v in value)
                elif value is not None:
                    out.append(str(value))
            return tuple(out)

        return dataclasses.replace(self, launch=fill(self.launch), launch_tcp=fill(self.launch_tcp))

    # Kept for the names older records and callers use.
    @property
    def status_path(self) -> str:
        return self.ready_path

    @property
    def needs_secret(self) -> bool:
        """Whether sessions of this app make a secret on the laptop and pass it to the app."""
        return self.auth.uses_secret

    def auth_headers(self, token: str) -> dict[str, str]:
        """Headers that authenticate a request of nodetunnel's own (the readiness probe)."""
        if self.auth.header is None or not token:
            return {}
        return {self.auth.header: self.auth.header_value.format(token=token)}

    def url(self, port: int, token: str, path: str | None = None) -> str:
        """The URL the browser opens: it logs in with the secret where the app takes it so."""
        url = f"http://127.0.0.1:{port}{path or self.url_path}"
        if self.auth.query and token:
            url += "?" + urllib.parse.urlencode({self.auth.query: token})
        return url

    def login_form(self, url: str, token: str) -> LoginForm | None:
        """Where the browser posts which fields to log in, for an app with a login form."""
        if self.auth.form is None or not token:
            return None
        parts = urllib.parse.urlsplit(url)
        action = urllib.parse.urlunsplit((parts.scheme, parts.netloc, self.auth.form, "", ""))
        fields = tuple((k, v.format(token=token)) for k, v in self.auth.form_fields)
        return action, fields

    @property
    def takes_tcp(self) -> bool:
        """Whether ``--tcp`` (a loopback port on the node instead of the socket) can be asked
        for: not where the app is served only on a socket (a launcher's recipes)."""
        return self.listen != "socket"

    @property
    def exposed_on_tcp(self) -> bool:
        """On a loopback port without a secret: anyone with a job on the node could reach it."""
        return not self.auth.uses_secret

    def listener_text(self, tcp: bool = False) -> str:
        """How the app listens on its node, for people."""
        if self.listen == "tcp" or tcp:
            return "127.0.0.1:free port"
        return "Unix socket, 0700 dir"

    def protection_text(self, tcp: bool = False) -> str:
        """What keeps other users out, for people."""
        if self.auth.form is not None:
            return "password made here (0600 file)"
        if self.auth.uses_secret:
            return "token made here (0600 file)"
        if self.listen == "tcp" or tcp:
            return "none: node users can reach it"
        return "the private socket"

    def ready(self, status: int) -> bool:
        """Whether an answer with HTTP ``status`` to ``ready_path`` means the app is ready."""
        return status in self.ready_statuses


def launcher_app(launcher: str, *words: Template, **recipe: object) -> App:
    """A recipe whose app is served on the job's private socket by ``launcher``.

    The job runs ``python3 LAUNCHER SOCKET WORDS...`` with the environment's Python
    (``launcher`` is a file of :mod:`nodetunnel.apps.launchers`).
    """
    launch = ("python3", ShellVar("NT_RUN", suffix="/launch.py"), ShellVar("NT_SOCK"), *words)
    title = str(recipe["title"])
    package = str(recipe.pop("package"))
    recipe.setdefault("install_hint", f"Python 3 is needed; install {title} in the environment "
                      f"you activate (pip install {package})")  # fmt: skip
    return App(program="python3", launch=launch, launch_tcp=launch, listen="socket",
               launcher=launcher, **recipe)  # type: ignore[arg-type]  # fmt: skip


def opening_page(url: str, title: str, login: LoginForm | None = None, *,
                 nonce: str | None = None) -> str:  # fmt: skip
    """The page nodetunnel opens in the browser: it goes on to ``url`` (its token in the
    query, if any), or, with ``login``, posts the app's login form, and the app sends the
    browser on (``nonce``: the script's, for a page served under a Content-Security-Policy)."""
    if login is None:
        href = html.escape(url, quote=True)
        return (f'<!DOCTYPE html><meta http-equiv="refresh" content="0; url={href}">'
                f'<a href="{href}">Open {html.escape(title)}</a>\n')  # fmt: skip
    action, fields = login
    script = f'<script nonce="{html.escape(nonce, quote=True)}">' if nonce else "<script>"
    inputs = "".join(f'<input type="hidden" name="{html.escape(k, quote=True)}" '
                     f'value="{html.escape(v, quote=True)}">' for k, v in fields)  # fmt: skip
    return (f'<!DOCTYPE html><form id="login" method="post" '
            f'action="{html.escape(action, quote=True)}">{inputs}'
            f"<button>Open {html.escape(title)}</button></form>"
            f"{script}document.getElementById('login').submit()</script>\n")  # fmt: skip
