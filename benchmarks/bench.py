"""The bench's driver: the sandbox, the test user's sessions, what this run started (for the
clean-up), and the order in which the parts are measured."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import platform
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodetunnel.errors import NodetunnelError
from nodetunnel.proc import Completed, ProcessRef, run, wait_until
from nodetunnel.sandbox.cluster import Sandbox, as_user_argv

from . import apps, assemble, datapath, footprint, homecache, pending, recovery, sidebyside
from .common import (
    CLUSTER_VENV,
    RESULT_VERSION,
    SCHEDULER_COMMANDS,
    USER,
    BenchError,
    Follower,
    Say,
    Settings,
    Watched,
    delta,
    http_status,
    minus,
    token_of,
    wait_working,
)
from .parsing import Command, commands_in, parse_commands, parse_sdiag_user_rpcs, scheduler_counts


class Bench:
    """The measurements, on a running sandbox, with ``nodetunnel`` (argv) run as the test user."""

    def __init__(
        self, sb: Sandbox, nodetunnel_argv: list[str], settings: Settings, say: Say
    ) -> None:
        self.sb = sb
        self.nodetunnel = nodetunnel_argv
        self.settings = settings
        self.say = say
        self.hosts = [h.name for h in sb.topo.hosts]
        self.home = sb.paths.user_home(USER)
        self.state_dir = self.home / ".local" / "state" / "nodetunnel" / "sessions"
        # Everything this run started, for the clean-up.
        self._procs: list[Watched] = []
        self._sessions: set[str] = set()
        self._jobs: set[str] = set()
        self._files: list[Path] = []
        self._undo: list[Callable[[], None]] = []

    # ------------------------------------------------------------ helpers
    def track_file(self, path: Path) -> None:
        """A file this run made, removed by the clean-up."""
        self._files.append(path)

    def write_user_file(self, path: Path, text: str, *, track: bool = True) -> None:
        """A file of the test user's (0600, a script 0700), removed by the clean-up if
        ``track``."""
        pw = pwd.getpwnam(USER)
        path.write_text(text)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        path.chmod(0o700 if text.startswith("#!") else 0o600)
        if track:
            self.track_file(path)

    def on_clean_up(self, action: Callable[[], None]) -> None:
        """Run ``action`` in the clean-up (after a failure too); it must be idempotent."""
        self._undo.append(action)

    def track_session(self, info: dict[str, Any]) -> None:
        """A session (its JSON) this run started, stopped by the clean-up if still there."""
        self._sessions.add(str(info["session_id"]))
        self._jobs.add(str(info["job_id"]))

    def sb_chown(self, path: Path) -> None:
        """Make ``path`` the test user's."""
        pw = pwd.getpwnam(USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)

    def track_job(self, job_id: str) -> None:
        """A job this run submitted (not through nodetunnel), cancelled by the clean-up."""
        self._jobs.add(job_id)

    def nt(self, *args: str) -> list[str]:
        return [*self.nodetunnel, "--debug", *args]

    def jupyter_argv(self, *extra: str) -> list[str]:
        return self.nt(
            "jupyter",
            "--cluster",
            "sandbox",
            "--venv",
            str(CLUSTER_VENV),
            "--no-browser",
            "--json",
            *extra,
        )

    def start(self, argv: list[str], label: str) -> Watched:
        w = Watched(argv, label)
        self._procs.append(w)
        return w

    def as_user(self, argv: list[str], timeout_s: float = 120) -> Completed:
        return run(as_user_argv(USER, argv), timeout_s=timeout_s, check=False, cwd="/")

    def ready(self, w: Watched) -> tuple[dict[str, Any], float]:
        """The session's JSON (tracked for the clean-up) and the time the URL worked."""
        info, _ = w.json_result()
        self.track_session(info)
        return info, wait_working(int(info["local_port"]), token_of(info))

    def auth_counts(self) -> dict[str, int]:
        """sshd's accepted public-key logins of the test user so far, per host."""
        counts = {}
        for host in self.hosts:
            log = self.sb.paths.log_dir / f"sshd-{host}.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            counts[host] = text.count(f"Accepted publickey for {USER} ")
        return counts

    def user_rpcs(self) -> int | None:
        """slurmctld's count of RPCs from the test user (run as root: not counted itself)."""
        out = self.sb.run_in("gateway", ["sdiag"], timeout_s=20, check=False)
        return parse_sdiag_user_rpcs(out, USER)

    def user_jobs(self) -> list[str]:
        out = self.sb.run_in("gateway", ["squeue", "-h", "-u", USER, "-o", "%i"], timeout_s=20)
        return out.split()

    def wait_job_gone(self, job_id: str, timeout_s: float = 60) -> None:
        """A cancelled job passes through COMPLETING; the next step starts on a quiet cluster."""
        wait_until(
            lambda: job_id not in self.user_jobs(),
            timeout_s=timeout_s,
            what=f"job {job_id} to leave the queue",
            interval_s=0.1,
        )

    def hold(
        self,
        seconds: float,
        alive: Callable[[], bool],
        port: int,
        token: str,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        """Keep a healthy session for ``seconds``: its keeper runs, the URL works at the end.

        Nothing here touches the cluster (that would be counted); ``tick`` runs every 0.2 s.
        """
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if not alive():
                raise BenchError("the process keeping the session exited during the hold")
            tick()
            time.sleep(min(0.2, left))
        tick()
        wait_working(port, token)

    # --------------------------------------------------------- the phases
    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        leftover = self.user_jobs()
        if leftover:
            raise BenchError(
                f"{USER} has jobs on the sandbox already ({', '.join(leftover)}); they would "
                "distort the numbers: end them (nodetunnel stop --all as that user) and retry"
            )
        try:
            results: dict[str, Any] = {
                "version": RESULT_VERSION,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "machine": self.machine(),
                "settings": dataclasses.asdict(self.settings),
            }
            parts: dict[str, Any] = {"cli_start": footprint.cli_start(self)}
            parts["sides"] = sidebyside.measure(self)
            parts["kept"] = self.kept_session()
            parts["detached"] = self.detached_session()
            parts["pending"] = pending.measure(self)
            parts["recovery"] = recovery.measure(self)
            parts["many"] = footprint.many_sessions(self)
            parts["apps"] = apps.measure(self, runs=1 if self.settings.quick else 2)
            parts["shared_home"] = homecache.measure(self, runs=self.settings.repetitions)
        except BaseException:
            try:
                self.clean_up()
            except BenchError as cleanup:  # the first error is the one to report
                self.say(str(cleanup))
            raise
        self.clean_up()
        results.update(assemble.results(parts))
        results["duration_s"] = round(time.monotonic() - started, 1)
        return results

    def machine(self) -> dict[str, Any]:
        ssh = run(["ssh", "-V"], timeout_s=10, check=False)
        slurm = self.sb.run_in("gateway", ["sinfo", "--version"], timeout_s=20, check=False)
        return {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "openssh": (ssh.stderr or ssh.stdout).strip(),
            "slurm": slurm.strip(),
            "nodes": len(self.sb.topo.nodes),
        }

    def cli_start(self) -> float:
        """How long the CLI itself takes to start (``nodetunnel --version``), for scale."""
        started = time.monotonic()
        done = self.as_user([*self.nodetunnel, "--version"], timeout_s=60)
        if done.returncode != 0:
            raise BenchError(f"nodetunnel --version failed: {done.stderr.strip()[-500:]}")
        return time.monotonic() - started

    def foreground_session(self, rep: int) -> dict[str, Any]:
        """``nodetunnel jupyter``: start, use, (hold,) Ctrl-C."""
        n = self.settings.repetitions
        self.say(f"jupyter {rep + 1}/{n}: start, use, Ctrl-C")
        before = self.auth_counts()
        rpcs_before = self.user_rpcs()
        cli = self.start(self.jupyter_argv(), "nodetunnel jupyter")
        info, ok_at = self.ready(cli)
        rpcs_start = self.user_rpcs()
        port, token = int(info["local_port"]), token_of(info)
        json_at = max(at for at, _ in cli.stdout)
        # When the job wrote its endpoint file (shared home: same path here), on our clock.
        endpoint = Path(str(info["session_dir"])) / "endpoint"
        # The URL can work a moment before the job has written that file: wait for it.
        mtime = wait_until(lambda: endpoint.exists() and endpoint.stat().st_mtime,
                           timeout_s=30, what=f"{endpoint} to be written")  # fmt: skip
        written_at = mtime - time.time() + time.monotonic()
        self.use(port, token)
        hold = None
        if rep == 0:
            hold = self.foreground_hold(cli, port, token)
        running = self.auth_counts()
        interrupted = time.monotonic()
        code = cli.interrupt()
        if code != 130:
            raise BenchError(
                f"nodetunnel jupyter exited with {code} on Ctrl-C: {cli.stderr_tail()}"
            )
        ctrl_c_s = time.monotonic() - interrupted
        self.wait_job_gone(str(info["job_id"]))
        after = self.auth_counts()
        commands = parse_commands(cli.stderr)
        sbatch_at = next(c.at for c in commands if c.remote == "sbatch")
        tunnel_at = next(c.at for c in commands if c.kind == "spawn")
        return {
            "ready_s": ok_at - cli.started,
            "phases": {
                # CLI start, ssh to login and gateway, the session directory on the cluster
                "connect_s": sbatch_at - cli.started,
                # sbatch, scheduling, until nodetunnel sees the job RUNNING and opens the tunnel
                "until_running_s": tunnel_at - sbatch_at,
                # JupyterLab starting on the node (the tunnel is up meanwhile), until its
                # endpoint file is written (nodetunnel does not wait for that file)
                "app_start_s": written_at - tunnel_at,
                # from the app listening to nodetunnel's first good answer through the tunnel
                "url_after_app_s": json_at - written_at,
            },
            "start_rpcs": None
            if rpcs_before is None or rpcs_start is None
            else rpcs_start - rpcs_before,
            "start_commands": scheduler_counts(c for c in commands if c.at <= json_at),
            "startup_squeue": sum(1 for c in commands if c.remote == "squeue" and c.at <= json_at),
            "ctrl_c_s": ctrl_c_s,
            "handshakes": delta(before, after),
            "handshake_steps": {
                "start_use": delta(before, running),
                "ctrl_c": delta(running, after),
            },
            "commands": scheduler_counts(commands),
            "hold": hold,
        }

    def use(self, port: int, token: str) -> None:
        """What a browser does first: the page, the status, the file list, the kernels."""
        for path, want in (
            ("/lab", 200),
            ("/api/status", 200),
            ("/api/contents", 200),
            ("/api/kernelspecs", 200),
            ("/api/kernels", 200),
        ):
            code = http_status(port, path, token)
            if code != want:
                raise BenchError(f"GET {path} through the tunnel: HTTP {code}, expected {want}")
        if http_status(port, "/api/status", None) != 403:
            raise BenchError("/api/status answered without the token")

    def foreground_hold(self, cli: Watched, port: int, token: str) -> dict[str, Any]:
        seconds = self.settings.hold_s
        self.say(f"  keeping the session for {seconds:g} s, counting scheduler queries")
        rpcs_before = self.user_rpcs()
        begin = time.monotonic()
        self.hold(seconds, cli.running, port, token)
        end = time.monotonic()
        rpcs_after = self.user_rpcs()
        window = [c for c in parse_commands(cli.stderr) if begin <= c.at <= end]
        return hold_result(window, begin, end, rpcs_before, rpcs_after)

    def kept_session(self) -> dict[str, Any]:
        """A ``--keep`` session, left with Ctrl-C; then ``attach`` (timed) and ``stop``."""
        self.say("jupyter --keep, Ctrl-C: a kept session to attach to")
        cli = self.start(self.jupyter_argv("--keep"), "nodetunnel jupyter --keep")
        info, _ = self.ready(cli)
        if (code := cli.interrupt()) != 130:
            raise BenchError(
                f"nodetunnel jupyter --keep exited with {code} on Ctrl-C: {cli.stderr_tail()}"
            )
        session_id = str(info["session_id"])
        ready_s: list[float] = []
        handshakes: dict[str, int] = {}
        plain: dict[str, int] = {}
        commands: dict[str, int] = {}
        data: dict[str, Any] = {}
        for rep in range(self.settings.repetitions):
            self.say(f"attach {rep + 1}/{self.settings.repetitions}")
            before = self.auth_counts()
            att = self.start(
                self.nt("attach", session_id, "--no-browser", "--json"), "nodetunnel attach"
            )
            again, ok_at = self.ready(att)
            ready_s.append(ok_at - att.started)
            if rep == 0:
                data = datapath.measure(self, again)
                plain = data["plain_forward_logins"]
            if (code := att.interrupt()) != 130:
                raise BenchError(
                    f"nodetunnel attach exited with {code} on Ctrl-C: {att.stderr_tail()}"
                )
            if rep == 0:
                # The plain forward's own logins are not the attach's.
                handshakes = minus(delta(before, self.auth_counts()), plain)
                commands = scheduler_counts(parse_commands(att.stderr))
        self.say("stop the kept session")
        done = self.as_user(self.nt("stop", session_id))
        if done.returncode != 0:
            raise BenchError(f"nodetunnel stop failed: {done.stderr.strip()[-500:]}")
        self.wait_job_gone(str(info["job_id"]))
        return {
            "attach_ready_s": ready_s,
            "attach_handshakes": handshakes,
            "attach_commands": commands,
            "plain_handshakes": plain,
            "datapath": data,
        }

    def detached_session(self) -> dict[str, Any]:
        """``jupyter --detach``: the keeper holds the session; then ``list`` and ``stop``."""
        self.say("jupyter --detach, keep, list, stop")
        counts = [self.auth_counts()]
        cli = self.start(self.jupyter_argv("--detach"), "nodetunnel jupyter --detach")
        info, ok_at = self.ready(cli)
        if (code := cli.wait_exit(60)) != 0:
            raise BenchError(f"nodetunnel jupyter --detach exited with {code}: {cli.stderr_tail()}")
        returned_s = time.monotonic() - cli.started
        counts.append(self.auth_counts())
        session_id = str(info["session_id"])
        port, token = int(info["local_port"]), token_of(info)
        record = json.loads((self.state_dir / f"{session_id}.json").read_text())
        keeper = ProcessRef(int(record["pid"]), int(record["pid_start"]))
        log = self.state_dir / f"{session_id}.log"

        seconds = self.settings.hold_s
        self.say(f"  keeping the detached session for {seconds:g} s, counting scheduler queries")
        follower = Follower(log)
        rpcs_before = self.user_rpcs()
        meter = footprint.IdleMeter(keeper.pid, session_id)
        meter.start()
        begin = time.monotonic()
        self.hold(seconds, keeper.alive, port, token, tick=follower.poll)
        end = time.monotonic()
        idle = meter.stop()
        rpcs_after = self.user_rpcs()
        window = parse_commands(follower.lines)
        hold = hold_result(window, begin, end, rpcs_before, rpcs_after)
        counts.append(self.auth_counts())

        listed = self.as_user(self.nt("list", "--json"))
        if listed.returncode != 0:
            raise BenchError(f"nodetunnel list failed: {listed.stderr.strip()[-500:]}")
        rows = [r for r in json.loads(listed.stdout) if r["session_id"] == session_id]
        if not rows or rows[0]["state"] != "RUNNING" or rows[0]["tunnel"] != "up":
            raise BenchError(f"nodetunnel list does not show the session healthy: {rows}")
        counts.append(self.auth_counts())
        stopped = self.as_user(self.nt("stop", session_id))
        if stopped.returncode != 0:
            raise BenchError(f"nodetunnel stop failed: {stopped.stderr.strip()[-500:]}")
        self.wait_job_gone(str(info["job_id"]))
        counts.append(self.auth_counts())
        steps = ("detach", "hold", "list", "stop")
        return {
            "ready_s": ok_at - cli.started,
            "returned_s": returned_s,
            "hold": hold,
            "keeper_idle": idle,
            "handshakes": delta(counts[0], counts[-1]),
            "handshake_steps": {s: delta(counts[i], counts[i + 1]) for i, s in enumerate(steps)},
            "commands": {
                "detach": scheduler_counts(parse_commands(cli.stderr)),
                "list": scheduler_counts(commands_in(listed.stderr)),
                "stop": scheduler_counts(commands_in(stopped.stderr)),
            },
        }

    # ------------------------------------------------------------ clean-up
    def clean_up(self) -> None:
        """End what this run started: processes, sessions, jobs, tunnels, the test file.

        Every step runs even if an earlier one fails; failures are reported together.
        """
        problems: list[str] = []

        def step(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except (NodetunnelError, BenchError, OSError, ValueError) as exc:
                problems.append(f"{what}: {exc}")

        for w in self._procs:
            if w.running():  # Ctrl-C first: nodetunnel closes its tunnel and cancels its job
                step(w.label, functools.partial(w.interrupt, timeout_s=30))
                step(w.label, w.kill)
        sessions = sorted(s for s in self._sessions if (self.state_dir / f"{s}.json").exists())
        if sessions:
            self.say(f"clean-up: stopping {', '.join(sessions)}")
            step("nodetunnel stop", functools.partial(self.as_user, self.nt("stop", *sessions)))
        step("leftover tunnels", self._end_leftovers)
        jobs: list[str] = []
        if self._jobs:
            step("squeue", lambda: jobs.extend(sorted(self._jobs & set(self.user_jobs()))))
        if jobs:
            self.say(f"clean-up: cancelling jobs {', '.join(jobs)}")
            step("scancel", functools.partial(self.sb.run_in, "gateway", ["scancel", *jobs]))
            for job in jobs:
                step(f"job {job}", functools.partial(self.wait_job_gone, job))
        # The test file, and the logs of our detached sessions (nodetunnel stop keeps them).
        logs = [self.state_dir / f"{s}.log" for s in sorted(self._sessions)]
        for undo in self._undo:
            step("restore", undo)
        for path in [*self._files, *logs]:
            step(str(path), functools.partial(path.unlink, missing_ok=True))
        if problems:
            raise BenchError("clean-up incomplete: " + "; ".join(problems))

    def _end_leftovers(self) -> None:
        """Tunnels and shared connections of our sessions whose nodetunnel was killed hard."""
        top = Path(f"/tmp/nodetunnel-{pwd.getpwnam(USER).pw_uid}")
        for session_id in sorted(self._sessions):
            local = top / session_id
            pid_file = local / "tunnel.pid"
            if pid_file.exists():
                pid, start = map(int, pid_file.read_text().split())
                ProcessRef(pid, start).stop(timeout_s=3)
            if local.is_dir():
                for sock in local.iterdir():
                    if sock.is_socket():
                        exit_master = ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"]
                        run(as_user_argv(USER, exit_master), timeout_s=10, check=False)


def hold_result(
    window: list[Command],
    begin: float,
    end: float,
    rpcs_before: int | None,
    rpcs_after: int | None,
) -> dict[str, Any]:
    """The scheduler commands run while a session was kept from ``begin`` to ``end``."""
    counts = scheduler_counts(window)
    rpcs = None if rpcs_before is None or rpcs_after is None else rpcs_after - rpcs_before
    return {
        "duration_s": round(end - begin, 1),
        **counts,
        "per_minute": round(counts["total"] * 60 / (end - begin), 2),
        # seconds into the window (the detached keeper's log is read every 0.2 s)
        "at_s": [round(c.at - begin, 1) for c in window if c.remote in SCHEDULER_COMMANDS],
        "remote_commands": sum(1 for c in window if c.remote is not None),
        "slurmctld_rpcs": rpcs,
    }
