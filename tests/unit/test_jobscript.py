"""The job body (nodetunnel.session.jobscript): golden files, quoting, and real runs with /bin/sh.

The real runs execute the rendered body in tmp_path with HOME=tmp_path and a
fake ``jupyter`` first on PATH: given ``--sock=PATH`` it listens on a Unix
socket there and sleeps until killed (or exits at once, for the failure case).
Fake ``module`` and ``conda`` programs record the arguments they receive, so
hostile values can be checked to arrive as one literal word each. Every script
runs in its own process group, which the ``runner`` fixture kills by ID at the
end of each test, whatever happened.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodetunnel.apps import APPS, JUPYTER
from nodetunnel.errors import UsageError
from nodetunnel.scheduler import Slurm
from nodetunnel.session import jobscript as payload
from nodetunnel.session.jobscript import MAX_SOCKET_PATH, Environment
from nodetunnel.session.model import parse_key_values as parse_endpoint

from .conftest import Golden

render_body = functools.partial(payload.render_body, scheduler=Slurm)

SESSION_DIR = "/home/alice/.nodetunnel/sessions/nt-0123abcd"
FULL_ENV = Environment(
    modules=("gcc/12.2.0", "cuda/12.1"),
    conda_env="ml-2024",
    venv="~/venvs/lab",
    setup='export OMP_NUM_THREADS=4\nif [ -f ~/.cluster_rc ]; then . ~/.cluster_rc; fi\necho "setup done"',
    workdir="~/project",
)
TOKEN = "s3cr3t-T0KEN-value_abcdefghijklmnopqrstuvwxyz"
CANARY = "CANARY"  # a relative path: checked for anywhere under tmp_path
SOCKET_RE = re.compile(r"^/tmp/nt\.[A-Za-z0-9]{6}/s$")

# Values for one path component / one word: every one must arrive literally.
HOSTILE = [
    "a'; touch CANARY; echo '",
    '"; touch CANARY; "',
    "$(touch CANARY)",
    "`touch CANARY`",
    "with  two spaces",
    "ünï cødé ☃ 日本",
    "$HOME",
]
# The same, plus values that cannot be file names but must still be quoted.
HOSTILE_WORDS = [*HOSTILE, "x; touch CANARY", "x && touch CANARY", "x | touch CANARY", "*", ""]
CONTROL_CHARS = ["\n", "\r", "\x00", "\x1b", "\x7f", "\u2028", "\u200b"]


def sh_n(script: str) -> None:
    """``sh -n``: the script parses."""
    done = subprocess.run(
        ["/bin/sh", "-n"], input=script, capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------ golden
def test_render_body_minimal_golden(golden: Golden) -> None:
    body = render_body(JUPYTER, Environment(), SESSION_DIR)
    golden("payload-jupyter-minimal.sh", body)
    sh_n(body)


def test_render_body_lease_golden(golden: Golden) -> None:
    body = render_body(JUPYTER, Environment(), SESSION_DIR, lease_s=1800)
    golden("payload-jupyter-lease.sh", body)
    sh_n(body)
    assert "heartbeat" not in render_body(JUPYTER, Environment(), SESSION_DIR)


@pytest.mark.parametrize(("lease_s", "every_s"), [(2, 1), (60, 15), (1800, 30), (86400, 30)])
def test_lease_check_interval(lease_s: float, every_s: int) -> None:
    assert payload.lease_check_interval_s(lease_s) == every_s


def test_render_body_full_environment_golden(golden: Golden) -> None:
    body = render_body(JUPYTER, FULL_ENV, SESSION_DIR)
    golden("payload-jupyter-full.sh", body)
    sh_n(body)


def test_apps_registry_has_jupyter() -> None:
    assert APPS["jupyter"] is JUPYTER


# ------------------------------------------------------------------ what it says
def test_full_body_steps_are_in_order() -> None:
    body = render_body(JUPYTER, FULL_ENV, SESSION_DIR)
    order = [
        "module load gcc/12.2.0 ",
        "module load cuda/12.1 ",
        "conda activate ml-2024 ",
        '[ -f "$HOME"/venvs/lab/bin/activate ]',
        '. "$HOME"/venvs/lab/bin/activate',
        "export OMP_NUM_THREADS=4",
        'cd "$HOME"/project ',
        "command -v jupyter ",
        "mktemp -d /tmp/nt.XXXXXX",
        "jupyter lab --no-browser",
        "endpoint.tmp",
    ]
    positions = [body.index(s) for s in order]
    assert positions == sorted(positions)


def test_setup_is_kept_verbatim_over_several_lines() -> None:
    assert FULL_ENV.setup is not None
    body = render_body(JUPYTER, FULL_ENV, SESSION_DIR)
    assert "\n{\n" + FULL_ENV.setup + "\n} || nt_fail" in body


def test_token_never_appears_in_the_launch_command() -> None:
    body = render_body(JUPYTER, FULL_ENV, SESSION_DIR)
    launches = [ln.strip() for ln in body.splitlines() if ln.strip().startswith("jupyter lab")]
    assert launches == [
        'jupyter lab --no-browser --sock="$NT_SOCK" &',
        'jupyter lab --no-browser --ip=127.0.0.1 --port="$NT_PORT" --ServerApp.port_retries=0 &',
    ]
    assert all("token" not in launch.lower() for launch in launches)
    assert 'export JUPYTER_TOKEN_FILE="$NT_TOKEN_FILE"' in body
    assert 'NT_TOKEN_FILE="$NT_SESSION_DIR/token"' in body


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("~/x", '"$HOME"/x'),
        ("~", '"$HOME"'),
        ("~/", '"$HOME"'),
        ("~/a b/c", "\"$HOME\"/'a b/c'"),
        ("~/$(touch CANARY)", "\"$HOME\"/'$(touch CANARY)'"),
        ("~root/x", "'~root/x'"),  # only the user's own home is expanded
        ("/abs/path", "/abs/path"),
        ("rel/path", "rel/path"),
        ("x~/y", "'x~/y'"),
    ],
)
def test_tilde_paths(value: str, rendered: str) -> None:
    body = render_body(JUPYTER, Environment(venv=value, workdir=value), SESSION_DIR)
    assert f"[ -f {rendered}/bin/activate ] ||" in body
    assert f". {rendered}/bin/activate\n" in body
    assert f"cd {rendered} ||" in body


def test_session_dir_is_quoted() -> None:
    body = render_body(JUPYTER, Environment(), "/home/a b/$(touch CANARY)/s")
    assert "NT_SESSION_DIR='/home/a b/$(touch CANARY)/s'\n" in body


@pytest.mark.parametrize("value", HOSTILE_WORDS)
def test_hostile_values_are_quoted(value: str) -> None:
    v = value or "x"  # an empty value means "not given"
    env = Environment(modules=(v,), conda_env=v, venv=v, workdir=v)
    body = render_body(JUPYTER, env, SESSION_DIR)
    sh_n(body)
    lines = body.splitlines()

    def words(prefix: str) -> list[str]:
        (line,) = [ln for ln in lines if ln.startswith(prefix)]
        return shlex.split(line)  # each line is one command: the value comes back as one word

    assert words("module load ")[:4] == ["module", "load", v, "||"]
    assert words("conda activate ")[:4] == ["conda", "activate", v, "||"]
    assert words("[ -f ")[:5] == ["[", "-f", f"{v}/bin/activate", "]", "||"]
    assert words(". ") == [".", f"{v}/bin/activate"]
    assert words("cd ")[:3] == ["cd", v, "||"]


@pytest.mark.parametrize("bad", CONTROL_CHARS)
@pytest.mark.parametrize(
    ("option", "make"),
    [
        ("--module", lambda v: Environment(modules=("ok", f"gcc{v}12"))),
        ("--conda-env", lambda v: Environment(conda_env=f"env{v}x")),
        ("--venv", lambda v: Environment(venv=f"~/venv{v}x")),
        ("--venv", lambda v: Environment(venv=f"/abs/venv{v}x")),
        ("--workdir", lambda v: Environment(workdir=f"~/work{v}x")),
        ("--workdir", lambda v: Environment(workdir=f"work{v}x")),
    ],
)
def test_control_characters_are_refused(bad: str, option: str, make: Any) -> None:
    with pytest.raises(UsageError) as info:
        render_body(JUPYTER, make(bad), SESSION_DIR)
    assert option in info.value.message
    assert info.value.hint is not None
    assert option in info.value.hint


def test_control_characters_in_session_dir_are_refused() -> None:
    with pytest.raises(UsageError):
        render_body(JUPYTER, Environment(), "/home/a\nb")


def test_setup_may_span_lines_and_use_tabs() -> None:
    body = render_body(JUPYTER, Environment(setup="a=1\n\tb=2\nexport a b"), SESSION_DIR)
    sh_n(body)
    assert "a=1\n\tb=2\nexport a b\n} ||" in body


@pytest.mark.parametrize("bad", ["\r", "\x00", "\x1b[31m", "\u2028"])
def test_setup_refuses_other_control_characters(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        render_body(JUPYTER, Environment(setup=f"echo a{bad}b"), SESSION_DIR)
    assert "--setup" in info.value.message


def test_parse_endpoint() -> None:
    text = "socket=/tmp/nt.AbC123/s\nhost=node1\nnoise without separator\n k = v=w \n"
    assert parse_endpoint(text) == {"socket": "/tmp/nt.AbC123/s", "host": "node1", "k": "v=w"}
    assert parse_endpoint("") == {}


def test_socket_template_fits_a_unix_socket() -> None:
    assert len("/tmp/nt.XXXXXX/s") <= MAX_SOCKET_PATH <= 104


# ============================================================== real runs with sh
FAKE_JUPYTER = """\
#!{python} -IS
import json, os, socket, sys, time
if sys.argv[1:] == ["server", "--version"]:
    print({server_version!r})
    sys.exit(0)
version = tuple(int(p) for p in {server_version!r}.split(".")[:2])
if version < (1, 9) and any(a.startswith("--sock=") for a in sys.argv):
    sys.stderr.write("[C] Bad config encountered during initialization: Unrecognized flag: '--sock'\\n")
    sys.exit(1)  # as jupyter_server before 1.9 does
record = {{
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "pid": os.getpid(),
    "path": os.environ.get("PATH"),
    "token_file": os.environ.get("JUPYTER_TOKEN_FILE"),
}}
token = None
if record["token_file"]:
    with open(record["token_file"]) as f:
        token = f.read().strip()
record["token_in_argv"] = bool(token) and any(token in a for a in sys.argv)
record["token_in_env"] = any(token == v for k, v in os.environ.items() if k != "JUPYTER_TOKEN_FILE") if token else False
with open({log!r} + ".tmp", "w") as f:
    json.dump(record, f)
os.replace({log!r} + ".tmp", {log!r})
with open({log!r} + ".all", "a") as f:  # every start, in order
    f.write(json.dumps(record) + "\\n")
if not token or record["token_in_argv"]:
    sys.exit(3)
if {exit_at_once!r}:
    sys.exit(0)
sock = [a[len("--sock="):] for a in sys.argv if a.startswith("--sock=")]
port = [a[len("--port="):] for a in sys.argv if a.startswith("--port=")]
if sock:
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock[0])
else:
    s = socket.socket()
    s.bind(("127.0.0.1", int(port[0])))
s.listen()
while True:
    time.sleep(60)
"""

RECORDER = """\
#!{python} -IS
import json, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""

FAKE_CONDA = """\
#!{python} -IS
# 'conda shell.posix hook' prints a shell function that records 'conda activate ...'
import sys
if sys.argv[1:] == ["shell.posix", "hook"]:
    print("conda() {{ " + {recorder!r} + ' "$@"; }}')
    sys.exit(0)
sys.exit(9)
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


class Run:
    """One execution of a rendered body with /bin/sh, in its own process group."""

    def __init__(self, proc: subprocess.Popen[bytes], home: Path, rundir: Path) -> None:
        self.proc = proc
        self.home = home  # where the fake jupyter writes jupyter.json
        self.rundir = rundir  # job.sh, its output, the session directory
        self.session = rundir / "session dir"  # a space: the session directory is quoted too

    @property
    def jupyter(self) -> dict[str, Any] | None:
        """What the fake jupyter saw (argv, cwd, PID, token file), once it has started."""
        log = self.home / "jupyter.json"
        return json.loads(log.read_text()) if log.exists() else None

    def output(self) -> str:
        out = (self.rundir / "sh.out").read_text(errors="replace")
        err = self.session / "error"
        return f"exit={self.proc.poll()} output:\n{out}" + (
            f"\nerror file: {err.read_text()}" if err.exists() else ""
        )

    def wait_endpoint(self, timeout_s: float = 10) -> dict[str, str]:
        endpoint = self.session / "endpoint"
        deadline = time.monotonic() + timeout_s
        while not endpoint.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"the script ended before writing the endpoint: {self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no endpoint within {timeout_s} s: {self.output()}")
            time.sleep(0.02)
        return parse_endpoint(endpoint.read_text())

    def wait_exit(self, timeout_s: float = 10) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the script did not end within {timeout_s} s: {self.output()}")

    def error(self) -> str:
        path = self.session / "error"
        assert path.exists(), self.output()
        return path.read_text()


class Runner:
    """Builds the fake programs and runs bodies; ends every process it started."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path  # HOME, the scripts' working directory, and where canaries would land
        self.fakebin = tmp_path / "fakebin"
        self.runs: list[Run] = []
        _executable(self.fakebin / "module", self._recorder("module"))
        recorder = _executable(self.home / "recorders" / "conda-activate", self._recorder("conda"))
        _executable(
            self.fakebin / "conda",
            FAKE_CONDA.format(python=sys.executable, recorder=shlex.quote(str(recorder))),
        )

    def _recorder(self, name: str) -> str:
        return RECORDER.format(python=sys.executable, log=str(self.home / f"{name}.calls"))

    def calls(self, name: str) -> list[list[str]]:
        path = self.home / f"{name}.calls"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def install_jupyter(
        self, bindir: Path, *, exit_at_once: bool = False, server_version: str = "2.14.0"
    ) -> Path:
        return _executable(
            bindir / "jupyter",
            FAKE_JUPYTER.format(
                python=sys.executable,
                log=str(self.home / "jupyter.json"),
                exit_at_once=exit_at_once,
                server_version=server_version,
            ),
        )

    def make_venv(self, path: Path, *, with_jupyter: bool = True) -> None:
        """A fake virtualenv: 'activate' puts its bin first on PATH."""
        bindir = path / "bin"
        _executable(
            bindir / "activate",
            f'PATH={shlex.quote(str(bindir))}:"$PATH"\nexport PATH\n'
            f"VIRTUAL_ENV={shlex.quote(str(path))}\nexport VIRTUAL_ENV\n",
        )
        if with_jupyter:
            self.install_jupyter(bindir)

    def start(
        self,
        env: Environment,
        *,
        path: str | None = None,
        name: str = "run",
        tcp: bool = False,
        lease_s: float | None = None,
    ) -> Run:
        rundir = self.home / name
        session = rundir / "session dir"
        session.mkdir(parents=True)
        (session / "token").write_text(TOKEN + "\n")
        (session / "token").chmod(0o600)
        script = rundir / "job.sh"
        script.write_text(render_body(JUPYTER, env, str(session), tcp=tcp, lease_s=lease_s))
        with open(rundir / "sh.out", "wb") as out:
            proc = subprocess.Popen(
                ["/bin/sh", str(script)],
                cwd=self.home,
                env={
                    "HOME": str(self.home),
                    "PATH": path if path is not None else f"{self.fakebin}:/usr/bin:/bin",
                    "SLURMD_NODENAME": "nodeX",
                    "SLURM_JOB_ID": "4242",
                    "LC_ALL": "C.UTF-8",
                },
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = Run(proc, self.home, rundir)
        self.runs.append(run)
        return run

    def canaries(self) -> list[Path]:
        return list(self.home.rglob(CANARY))

    def cleanup(self) -> None:
        for run in self.runs:
            if run.proc.poll() is None:
                run.proc.terminate()  # the script's traps end the app and remove its directory
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.proc.wait(timeout=5)
            if _group_exists(run.proc.pid):
                # Our script leads its own process group (start_new_session): this ends
                # whatever is left of it and of the fake jupyter it started, by that group's ID.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait(timeout=10)
            rec = run.jupyter
            if rec is None:
                continue
            pid = int(rec["pid"])
            if _alive(pid) and _pgid(pid) == run.proc.pid:
                os.kill(pid, signal.SIGKILL)
            # The socket directory, if the script's EXIT trap did not get to remove it.
            sock = [a for a in rec["argv"] if a.startswith("--sock=")]
            if sock and SOCKET_RE.match(sock[0].removeprefix("--sock=")):
                sock_dir = Path(sock[0].removeprefix("--sock=")).parent
                if sock_dir.is_dir() and sock_dir.stat().st_uid == os.getuid():
                    for child in sock_dir.iterdir():
                        child.unlink()
                    sock_dir.rmdir()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    r = Runner(tmp_path)
    try:
        yield r
    finally:
        r.cleanup()


def _check_running_then_stop(run: Run) -> dict[str, Any]:
    """The app is up: check the endpoint and socket, then SIGTERM the script and check clean-up."""
    endpoint = run.wait_endpoint()
    sock = endpoint.get("socket", "")
    assert SOCKET_RE.match(sock), endpoint
    assert endpoint["host"] == "nodeX"
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    sock_dir = Path(sock).parent
    st = sock_dir.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()
    assert not (run.session / "endpoint.tmp").exists()
    assert not (run.session / "error").exists()

    rec = run.jupyter
    assert rec is not None
    assert rec["token_file"] == str(run.session / "token")
    assert not rec["token_in_argv"]
    assert not rec["token_in_env"]
    assert rec["argv"][1:] == ["lab", "--no-browser", f"--sock={sock}"]
    assert _alive(rec["pid"])

    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 143, run.output()
    # The EXIT trap ended the app and removed the socket directory.
    assert not sock_dir.exists()
    deadline = time.monotonic() + 5
    while _alive(rec["pid"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(rec["pid"]), "the app outlived the job script"
    return rec


def test_run_minimal(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin)
    run = runner.start(Environment())
    rec = _check_running_then_stop(run)
    assert rec["cwd"] == str(runner.home)


def test_run_tilde_paths_and_setup(runner: Runner) -> None:
    runner.make_venv(runner.home / "venvs" / "lab")
    (runner.home / "project").mkdir()
    env = Environment(
        venv="~/venvs/lab",
        setup='echo one > "$HOME/setup.log"\necho "two $VIRTUAL_ENV" >> "$HOME/setup.log"',
        workdir="~/project",
    )
    run = runner.start(env)
    rec = _check_running_then_stop(run)
    assert rec["argv"][0] == str(runner.home / "venvs" / "lab" / "bin" / "jupyter")
    assert rec["cwd"] == str(runner.home / "project")
    # setup ran after the venv was activated
    assert (runner.home / "setup.log").read_text() == (
        f"one\ntwo {runner.home / 'venvs' / 'lab'}\n"
    )


@pytest.mark.parametrize("value", HOSTILE)
def test_run_hostile_environment(runner: Runner, value: str) -> None:
    venv = runner.home / "venvs" / value
    runner.make_venv(venv)
    workdir = runner.home / "work" / value
    workdir.mkdir(parents=True)
    env = Environment(
        modules=("plain/1.0", value),
        conda_env=value,
        venv=f"~/venvs/{value}",
        workdir=str(workdir),
    )
    run = runner.start(env)
    rec = _check_running_then_stop(run)
    assert runner.calls("module") == [["load", "plain/1.0"], ["load", value]]
    assert runner.calls("conda") == [["activate", value]]
    assert rec["argv"][0] == str(venv / "bin" / "jupyter")
    assert rec["cwd"] == str(workdir)
    assert runner.canaries() == []


def test_run_venv_missing(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin)
    run = runner.start(Environment(venv="~/venvs/nope"))
    assert run.wait_exit() == 1, run.output()
    assert run.error() == "no virtualenv at ~/venvs/nope\n"
    assert not (run.session / "endpoint").exists()
    assert run.jupyter is None


def test_run_hostile_venv_missing(runner: Runner) -> None:
    run = runner.start(Environment(venv="$(touch CANARY)/`touch CANARY`"))
    assert run.wait_exit() == 1, run.output()
    assert run.error() == "no virtualenv at $(touch CANARY)/`touch CANARY`\n"
    assert runner.canaries() == []


def test_run_app_not_on_path(runner: Runner) -> None:
    run = runner.start(Environment(), path="/usr/bin:/bin")
    assert run.wait_exit() == 1, run.output()
    error = run.error()
    assert error.startswith("jupyter not found on PATH on ")
    assert "pip install jupyterlab" in error
    assert not (run.session / "endpoint").exists()


@pytest.mark.parametrize(
    "workdir",
    [
        "~/does-not-exist",
        "/nonexistent/$(touch CANARY)",
        "a'; touch CANARY; echo '",
        "`touch CANARY`",
        "x; touch CANARY",
    ],
)
def test_run_workdir_cannot_be_entered(runner: Runner, workdir: str) -> None:
    runner.install_jupyter(runner.fakebin)
    run = runner.start(Environment(workdir=workdir))
    assert run.wait_exit() == 1, run.output()
    assert run.error() == f"cannot enter work directory {workdir}\n"
    assert not (run.session / "endpoint").exists()
    assert run.jupyter is None
    assert runner.canaries() == []


def test_run_module_that_cannot_be_loaded(runner: Runner) -> None:
    # No 'module' command at all: the first module fails and says which.
    run = runner.start(Environment(modules=("$(touch CANARY)",)), path="/usr/bin:/bin")
    assert run.wait_exit() == 1, run.output()
    assert run.error() == "module $(touch CANARY) could not be loaded\n"
    assert runner.canaries() == []


def test_run_conda_missing(runner: Runner) -> None:
    run = runner.start(Environment(conda_env="ml"), path="/usr/bin:/bin")
    assert run.wait_exit() == 1, run.output()
    assert "conda is not on PATH" in run.error()


def test_run_setup_failure(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin)
    run = runner.start(Environment(setup="true\nfalse"))
    assert run.wait_exit() == 1, run.output()
    assert run.error() == "the --setup command failed\n"
    assert run.jupyter is None


def test_run_app_exits_before_listening(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin, exit_at_once=True)
    run = runner.start(Environment())
    assert run.wait_exit() == 1, run.output()
    assert "exited before listening" in run.error()
    assert not (run.session / "endpoint").exists()
    # On the socket only: a version that has --sock gets no second start on a port.
    starts = (runner.home / "jupyter.json.all").read_text().splitlines()
    assert len(starts) == 1
    rec = json.loads(starts[0])
    assert rec is not None  # it did start, with the token file and not the token
    assert not rec["token_in_argv"]
    sock_dir = Path(rec["argv"][-1].removeprefix("--sock=")).parent
    assert SOCKET_RE.match(f"{sock_dir}/s")
    assert not sock_dir.exists()  # the EXIT trap removed it


def test_run_workdir_starting_with_dash(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin)
    (runner.home / "-P").mkdir()
    run = runner.start(Environment(workdir="-P"))
    rec = _check_running_then_stop(run)
    assert rec["cwd"] == str(runner.home / "-P")


def test_run_activation_code_that_reads_unset_variables(runner: Runner) -> None:
    venv = runner.home / "venvs" / "old"
    runner.make_venv(venv)
    activate = venv / "bin" / "activate"
    # Like conda-forge's activate.d scripts and old virtualenvs: they assume nounset is off.
    activate.write_text(activate.read_text() + 'PROJ_LIB_BACKUP="$PROJ_LIB"\n')
    run = runner.start(Environment(venv="~/venvs/old", setup='echo "${PS2X}" >/dev/null'))
    _check_running_then_stop(run)


def _check_tcp_then_stop(run: Run) -> None:
    endpoint = run.wait_endpoint()
    assert "socket" not in endpoint
    assert endpoint["host"] == "nodeX"
    port = int(endpoint["port"])
    socket.create_connection(("127.0.0.1", port), 2).close()  # it listens, on loopback
    rec = run.jupyter
    assert rec is not None
    assert rec["argv"][1:] == [
        "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
    ]  # fmt: skip
    assert not rec["token_in_argv"]
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 143, run.output()


def test_run_tcp_when_asked(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin)
    _check_tcp_then_stop(runner.start(Environment(), tcp=True))


def test_run_tcp_when_jupyter_server_is_too_old_for_sockets(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin, server_version="1.8.0")
    run = runner.start(Environment())
    _check_tcp_then_stop(run)
    assert "cannot listen on a Unix socket" in run.output()


@pytest.mark.parametrize("version", ["1.9.0", "1.13.5", "2.0.0", "10.1"])
def test_run_socket_from_jupyter_server_1_9(runner: Runner, version: str) -> None:
    runner.install_jupyter(runner.fakebin, server_version=version)
    _check_running_then_stop(runner.start(Environment()))


def test_run_socket_path_too_long(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    # Node-local /tmp keeps it short; a deep directory would exceed sun_path.
    deep = runner.home / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(payload, "SOCKET_DIR_TEMPLATE", f"{deep}/nt.XXXXXX")
    runner.install_jupyter(runner.fakebin)
    run = runner.start(Environment())
    assert run.wait_exit() == 1, run.output()
    assert "too long for a Unix socket" in run.error()


def test_run_lease_ends_the_job_once_the_heartbeat_stops(runner: Runner) -> None:
    runner.install_jupyter(runner.fakebin)
    calls = runner.home / "scancel.calls"
    # scancel as on a node where it fails: the script then ends the app itself.
    _executable(runner.fakebin / "scancel",
                RECORDER.format(python=sys.executable, log=str(calls)) + "sys.exit(1)\n")  # fmt: skip
    run = runner.start(Environment(), lease_s=2)
    run.wait_endpoint()
    heartbeat = run.session / "heartbeat"
    assert heartbeat.read_text().strip().isdigit()
    # Kept: the laptop rewrites the heartbeat, so the job outlives the lease.
    kept_until = time.monotonic() + 4
    while time.monotonic() < kept_until:
        heartbeat.write_text(f"{int(time.time())}\n")
        assert run.proc.poll() is None, run.output()
        time.sleep(0.3)
    # Nobody checks in any more: the job ends within the lease and a check or two.
    stopped = time.monotonic()
    code = run.wait_exit(timeout_s=10)
    assert code != 0
    assert 2 <= time.monotonic() - stopped + 0.5 <= 6
    assert "the lease expired" in run.output()
    assert "the lease expired" in (run.session / "ended").read_text()
    assert json.loads(calls.read_text().splitlines()[0]) == ["4242"]


def test_run_lease_is_not_ended_by_an_unreadable_heartbeat_between_check_ins(
    runner: Runner,
) -> None:
    # A shared home can show a file half-written, or empty, at the moment the job looks: that is
    # no missed check-in. Only a lease's worth of time without a good one ends the job.
    runner.install_jupyter(runner.fakebin)
    _executable(runner.fakebin / "scancel", "#!/bin/sh\nexit 1\n")
    run = runner.start(Environment(), lease_s=4)
    run.wait_endpoint()
    heartbeat = run.session / "heartbeat"
    kept_until = time.monotonic() + 5
    good = True
    while time.monotonic() < kept_until:
        heartbeat.write_text(f"{int(time.time())}\n" if good else "")
        good = not good
        assert run.proc.poll() is None, run.output()
        time.sleep(0.3)
    heartbeat.write_text("garbage\n")  # nothing readable from now on: the lease runs out
    assert run.wait_exit(timeout_s=20) != 0
    assert "the lease expired" in run.output()
