"""The job script that runs on the compute node: plain POSIX sh, rendered by a pure function.

What it does, in order: activate the environment (modules, conda, venv, setup
command), enter the work directory, check the app is installed, start the app
on a Unix socket in a fresh 0700 directory under the node's /tmp, wait until
the socket exists, then write ``endpoint`` atomically into the session
directory (on the shared home) so the laptop knows where to connect. A failure
at any step writes ``error`` there and ends the job at once, so the laptop
reports it instead of waiting.

The script is assembled here from what each part owns: the app recipe its
launch words (:class:`~nodetunnel.apps.base.App`), the scheduler backend its
shell (the node's name, cancelling itself), and :mod:`.remote` the session
directory's files. Every user value is ``shlex.quote``d; only ``--setup`` is
shell code, on purpose.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence

from ..apps.base import App, ShellVar, Slot, Template, Word
from ..errors import UsageError
from ..quoting import control_char
from ..scheduler.base import Scheduler
from . import remote
from .model import Environment

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS
SOCKET_DIR_TEMPLATE = "/tmp/nt.XXXXXX"  # mktemp: 14 chars + "/s"
APP_START_TIMEOUT_S = 300


def _q(value: str, option: str, *, allow: str = "") -> str:
    """``value`` quoted for the job script, refused if it holds a control character."""
    ch = control_char(value, allow=allow)
    if ch is not None:
        raise UsageError(
            f"{option} value {value!r} contains the control character {ch!r}",
            hint=f"give {option} a single-line value",
        )
    return shlex.quote(value)


def _q_path(value: str, option: str) -> str:
    """A cluster path, quoted; a leading ``~/`` means the home directory there, as in a shell."""
    if value == "~" or value.startswith("~/"):
        rest = value[2:]
        return '"$HOME"' + ("/" + _q(rest, option) if rest else "")
    if value.startswith("-"):
        value = "./" + value  # a relative path, never an option of cd or .
    return _q(value, option)


def _word(w: Template) -> str:
    if isinstance(w, Slot):
        raise ValueError(f"launch word {w.name!r} is not filled in (App.bind)")
    if isinstance(w, ShellVar):
        before = shlex.quote(w.prefix) if w.prefix else ""
        after = shlex.quote(w.suffix) if w.suffix else ""
        return f'{before}"${w.name}"{after}'
    return shlex.quote(w)


_FREE_PORT_PY = (
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
)
_LISTENS_PY = (
    'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2).close()'
)


def render_body(
    app: App,
    env: Environment,
    session_dir: str,
    *,
    scheduler: type[Scheduler],
    tcp: bool = False,
    lease_s: float | None = None,
    socket_dir: str | None = None,
    extras: Sequence[App] = (),
) -> str:
    """The part of the job script after the #SBATCH header.

    ``extras`` are further apps started by the same job, each on its own socket
    (``s1``, ``s2`` ... in the same private directory) or loopback port; their
    endpoints are appended to the ``endpoint`` file (see :mod:`.extras`).

    With ``lease_s``, a watcher ends the job (it cancels itself) when the ``heartbeat``
    file in the session directory, which the laptop's nodetunnel rewrites with
    the time while it keeps the session, is older than that.
    """
    if tcp and app.listen == "socket":
        raise UsageError(
            f"{app.title} listens only on a Unix socket here, so --tcp cannot be used",
            hint="leave --tcp out",
        )
    lines = remote.job_prelude(_q(session_dir, "session directory"))
    for module in env.modules:
        m = _q(module, "--module")
        lines.append(
            f"module load {m} || nt_fail {shlex.quote(f'module {module} could not be loaded')}"
        )
    if env.conda_env:
        c = _q(env.conda_env, "--conda-env")
        lines += [
            "command -v conda >/dev/null 2>&1 || nt_fail 'conda is not on PATH (try --module to load it)'",
            "eval \"$(conda shell.posix hook)\" || nt_fail 'conda shell hook failed'",
            f"conda activate {c} || nt_fail {shlex.quote(f'conda environment {env.conda_env} not found')}",
        ]
    if env.venv:
        v = _q_path(env.venv, "--venv")
        lines += [
            f"[ -f {v}/bin/activate ] || nt_fail {shlex.quote(f'no virtualenv at {env.venv}')}",
            f". {v}/bin/activate",
        ]
    if env.setup:
        _q(env.setup, "--setup", allow="\n\t")  # shell code: several lines are fine
        lines += [
            "# --setup, as given:",
            "{",
            env.setup,
            "} || nt_fail 'the --setup command failed'",
        ]
    if env.workdir:
        w = _q_path(env.workdir, "--workdir")
        lines.append(
            f"cd {w} || nt_fail {shlex.quote(f'cannot enter work directory {env.workdir}')}"
        )
    # Only now: activation scripts (conda, venv, modules, --setup) often read unset variables.
    lines.append("set -u")
    lines += [
        _program_check(app),
        *_private_dir(socket_dir),
        'NT_SOCK="$NT_RUN/s"',
        'NT_PID=""',
        'trap \'[ -n "$NT_PID" ] && kill "$NT_PID" 2>/dev/null; rm -rf "$NT_RUN"\' EXIT',
        "trap 'exit 143' TERM",
        "trap 'exit 130' INT",
    ]
    for name, var in app.env:
        lines.append(f"export {name}={_word(var)}")
    if app.launcher:
        lines += _launcher_lines(app.launcher)
    main_on_port = tcp or app.listen == "tcp"
    pick_port = _pick_port("NT_PORT")
    port_first = main_on_port and bool(extras)  # the further apps are told where it is
    if port_first:
        lines.append(pick_port)
    lines += _extras_start(app, main_on_port, extras)
    lines += [
        f"NT_DEADLINE=$(( $(date +%s) + {APP_START_TIMEOUT_S} ))",
        "nt_wait() {  # until the command $1 succeeds, while the app lives, until the deadline",
        '    while ! "$1"; do',
        '        if ! kill -0 "$NT_PID" 2>/dev/null; then',
        '            [ "${2:-}" = or-return ] && return 1',
        '            nt_fail "the app exited before listening; see the job log"',
        "        fi",
        '        [ "$(date +%s)" -lt "$NT_DEADLINE" ] || '
        f"nt_fail 'the app did not listen within {APP_START_TIMEOUT_S} s'",
        "        sleep 0.1",
        "    done",
        "}",
        # The scheduler's name for the node (the laptop checks it against the job's node list).
        f"NT_NODE={scheduler.NODE_NAME_SHELL}",
        f"NT_USE_SOCKET={0 if tcp or app.listen == 'tcp' else 1}",
        'if [ "$NT_USE_SOCKET" = 1 ]; then',
        f'    [ "${{#NT_SOCK}}" -le {MAX_SOCKET_PATH} ] || '
        'nt_fail "socket path $NT_SOCK is too long for a Unix socket"',
        *(['    export NT_SOCKET="$NT_SOCK"'] if app.exports_endpoint else []),
        "    " + " ".join(_word(w) for w in app.launch) + " &",
        "    NT_PID=$!",
        '    nt_socket_ready() { [ -S "$NT_SOCK" ]; }',
        *_socket_wait(app),
        "fi",
        'if [ "$NT_USE_SOCKET" = 0 ]; then',
        "    # Only here is the cluster's python3 needed: to find a free port, then to see it listen.",
        *([] if port_first else ["    " + pick_port]),
        *(["    export NT_PORT"] if app.exports_endpoint else []),
        "    " + " ".join(_word(w) for w in app.launch_tcp) + " &",
        "    NT_PID=$!",
        f'    nt_port_ready() {{ python3 -c {shlex.quote(_LISTENS_PY)} "$NT_PORT" 2>/dev/null; }}',
        "    nt_wait nt_port_ready",
        "    " + remote.job_write_endpoint("port", "NT_PORT", "NT_NODE"),
        "fi",
        *_extras_wait(extras),
        *(remote.job_lease_start(lease_s) if lease_s else []),
        remote.job_publish(),
        *(remote.job_lease_watcher(lease_s, scheduler.CANCEL_SELF_SHELL) if lease_s else []),
        'wait "$NT_PID"',
        "NT_RC=$?",
        'NT_PID=""',
        'exit "$NT_RC"',
    ]
    return "\n".join(lines) + "\n"


def extra_on_port(app: App) -> bool:
    """Whether a further app of the job listens on a loopback port (else on its own socket)."""
    return app.listen == "tcp"


def _extra_words(app: App, n: int) -> tuple[Word, ...]:
    """The launch words of further app ``n``: its own socket, port and launcher file."""
    names = {"NT_SOCK": f"NT_SOCK{n}", "NT_PORT": f"NT_PORT{n}"}
    out: list[Word] = []
    for w in app.launch_tcp if extra_on_port(app) else app.launch:
        if isinstance(w, ShellVar) and w.name in names:
            w = dataclasses.replace(w, name=names[w.name])
        elif isinstance(w, ShellVar) and w.name == "NT_RUN" and w.suffix == "/launch.py":
            w = dataclasses.replace(w, suffix=f"/launch{n}.py")
        elif isinstance(w, Slot):
            raise ValueError(f"launch word {w.name!r} is not filled in (App.bind)")
        out.append(w)
    return tuple(out)


def _pick_port(var: str) -> str:
    """The line that sets ``var`` to a free port of the node's 127.0.0.1 (the cluster's
    python3 finds it), or ends the job saying python3 is needed."""
    return (f"{var}=$(python3 -c {shlex.quote(_FREE_PORT_PY)}) || "
            "nt_fail 'python3 is needed to find a free port'")  # fmt: skip


def endpoint_names(apps: Sequence[App]) -> list[str]:
    """The name part of each app's endpoint variable, for the apps of one job in order (the
    main app first): its name upper-cased (``run`` -> ``RUN``); an app whose name an earlier
    app of the job has already taken adds its number as 'nodetunnel list' shows it
    (``RUN_3``: the job's third app)."""
    names: list[str] = []
    for number, app in enumerate(apps, 1):
        name = "".join(c if c.isalnum() else "_" for c in app.name.upper())
        names.append(f"{name}_{number}" if name in names else name)
    return names


def _endpoint_exports(main: App, main_on_port: bool, extras: Sequence[App]) -> str:
    """Every app's endpoint, exported to all of them (``NT_SOCKET_NAME``/``NT_PORT_NAME``).

    The main app's is where it is started first (a version that cannot listen on a
    socket and falls back to a port is not followed).
    """
    where = [("NT_PORT", "NT_PORT") if main_on_port else ("NT_SOCKET", "NT_SOCK")]
    where += [("NT_PORT", f"NT_PORT{n}") if extra_on_port(app) else ("NT_SOCKET", f"NT_SOCK{n}")
              for n, app in enumerate(extras, 1)]  # fmt: skip
    pairs = [f'{kind}_{name}="${var}"'
             for (kind, var), name in zip(where, endpoint_names([main, *extras]), strict=True)]  # fmt: skip
    return "export " + " ".join(pairs)


def _extras_start(main: App, main_on_port: bool, extras: Sequence[App]) -> list[str]:
    """Start the further apps in the background, before the main one (they start together).

    Every endpoint is chosen first, so that each app is told where every other one is.
    """
    if not extras:
        return []
    lines = [
        "# Further apps of this job, each on its own socket (or port), ended with the job.",
        'NT_XPIDS=""',
        'trap \'kill $NT_XPIDS 2>/dev/null; [ -n "$NT_PID" ] && kill "$NT_PID" 2>/dev/null; '
        'rm -rf "$NT_RUN"\' EXIT',
    ]
    for n, app in enumerate(extras, 1):
        if extra_on_port(app):
            lines.append(_pick_port(f"NT_PORT{n}"))
        else:
            lines.append(f'NT_SOCK{n}="$NT_RUN/s{n}"')
    lines += ["# Where each app of the job listens, for all of them (see 'nodetunnel run --help').",
              _endpoint_exports(main, main_on_port, extras)]  # fmt: skip
    for n, app in enumerate(extras, 1):
        lines += [f"# app {n}: {app.name}", _program_check(app)]
        if app.launcher:
            lines += _launcher_lines(app.launcher, f"launch{n}.py")
        exports = [f"export {name}={_word(var)}" for name, var in app.env]
        if app.exports_endpoint:
            exports.append(f'export NT_PORT="$NT_PORT{n}"' if extra_on_port(app) else
                           f'export NT_SOCKET="$NT_SOCK{n}"')  # fmt: skip
        command = " ".join(_word(w) for w in _extra_words(app, n))
        lines += [f"( {'; '.join([*exports, f'exec {command}'])} ) &",
                  f"NT_PID{n}=$!", f'NT_XPIDS="$NT_XPIDS $NT_PID{n}"']  # fmt: skip
    return lines


def _extras_wait(extras: Sequence[App]) -> list[str]:
    """Once the main app listens: wait for each further one, add its endpoint to the file."""
    if not extras:
        return []
    lines = [
        "nt_wait_extra() {  # until $2 succeeds, while process $1 lives, until the deadline",
        '    while ! "$2"; do',
        '        kill -0 "$1" 2>/dev/null || nt_fail "app $3 exited before listening; see the job log"',
        '        [ "$(date +%s)" -lt "$NT_DEADLINE" ] || '
        f'nt_fail "app $3 did not listen within {APP_START_TIMEOUT_S} s"',
        "        sleep 0.1",
        "    done",
        "}",
    ]
    endpoint = remote.in_dir(remote.ENDPOINT + ".tmp")
    for n, app in enumerate(extras, 1):
        # What another laptop needs to attach to it too (see fleet.claim).
        about = [_q(v, f"--with {app.name}") for v in (app.name, app.ready_path, app.url_path)]
        lines.append(f"printf 'app{n}=%s\\nready{n}=%s\\nurl{n}=%s\\n' {' '.join(about)} "
                     f">> {endpoint}")  # fmt: skip
        if extra_on_port(app):
            lines += [f'nt_ready{n}() {{ python3 -c {shlex.quote(_LISTENS_PY)} "$NT_PORT{n}" '
                      "2>/dev/null; }",
                      f"nt_wait_extra \"$NT_PID{n}\" nt_ready{n} {shlex.quote(app.name)}",
                      f"printf 'port{n}=%s\\n' \"$NT_PORT{n}\" >> {endpoint}"]  # fmt: skip
        else:
            lines += [f'nt_ready{n}() {{ [ -S "$NT_SOCK{n}" ]; }}',
                      f"nt_wait_extra \"$NT_PID{n}\" nt_ready{n} {shlex.quote(app.name)}",
                      f"printf 'socket{n}=%s\\n' \"$NT_SOCK{n}\" >> {endpoint}"]  # fmt: skip
    return lines


def _program_check(app: App) -> str:
    """Fail at once, naming the fix, when the app's program is not on PATH."""
    prog = shlex.quote(app.program)
    not_found = (_dq(f"{app.program} not found on PATH on ") + "$(hostname)"
                 + _dq(f": {app.install_hint}"))  # fmt: skip
    return f'command -v {prog} >/dev/null 2>&1 || nt_fail "{not_found}"'


def _private_dir(socket_dir: str | None) -> list[str]:
    """The app's private directory on the node: made on the laptop (unguessable to other
    users, so nobody can take its place), else by mktemp."""
    if socket_dir is None:
        return [f"NT_RUN=$(mktemp -d {SOCKET_DIR_TEMPLATE}) || "
                "nt_fail 'cannot create a private directory in /tmp'"]  # fmt: skip
    d = _q(socket_dir, "socket directory")
    return [f"NT_RUN={d}",
            'mkdir -m 700 "$NT_RUN" || nt_fail "cannot create the private directory $NT_RUN"']  # fmt: skip


def _socket_wait(app: App) -> list[str]:
    """Wait for the socket. An app that can also listen on a port gets a second start there
    only if it exits first *and* its version cannot listen on a socket (asked only then: no
    version probe on the way to a working app); any other failure is reported as it is."""
    if app.listen != "either":
        return ["    nt_wait nt_socket_ready",
                "    " + remote.job_write_endpoint("socket", "NT_SOCK", "NT_NODE")]  # fmt: skip
    return [
        "    if nt_wait nt_socket_ready or-return; then",
        "        " + remote.job_write_endpoint("socket", "NT_SOCK", "NT_NODE"),
        f"    elif {{ {app.socket_check}; }}; then",
        '        nt_fail "the app exited before listening; see the job log"',
        "    else",
        "        echo 'nodetunnel: this version cannot listen on a Unix socket; "
        "using 127.0.0.1' >&2",
        "        NT_USE_SOCKET=0",
        "    fi",
    ]


LAUNCHER_END = "NODETUNNEL_LAUNCHER_END"


def _launcher_lines(name: str, target: str = "launch.py") -> list[str]:
    """Write the launcher ``name`` (nodetunnel.apps.launchers) into the job's private dir."""
    from importlib import resources

    source = resources.files("nodetunnel.apps.launchers").joinpath(name).read_text()
    if LAUNCHER_END in source:
        raise ValueError(f"launcher {name} contains the end marker {LAUNCHER_END}")
    return [
        f"cat > \"$NT_RUN/{target}\" <<'{LAUNCHER_END}' || nt_fail 'cannot write the launcher'",
        *source.rstrip("\n").splitlines(),
        LAUNCHER_END,
    ]


def _dq(text: str) -> str:
    """Escape for inside double quotes: no expansion of anything in ``text``."""
    for ch in ("\\", '"', "`", "$"):
        text = text.replace(ch, "\\" + ch)
    return text


lease_check_interval_s = remote.lease_check_interval_s
