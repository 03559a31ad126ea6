"""``nodetunnel sandbox``: the mini-cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import ExitCode
from . import cli
from .output import print_json, progress

_dir_option = click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="NODETUNNEL_SANDBOX_DIR",
    show_envvar=True,
    help="Where the sandbox keeps its files.  [default: /var/lib/nodetunnel-sandbox]",
)


def _sandbox(root: Path | None, node_count: int = 2, quiet: bool = False) -> Any:
    from ..sandbox.cluster import Sandbox
    from ..sandbox.topology import Paths

    paths = Paths(root.resolve()) if root else Paths()
    return Sandbox(paths, node_count=node_count, progress=None if quiet else progress)


@cli.group("sandbox")
def sandbox_group() -> None:
    """A throwaway mini-cluster on this machine, for trying nodetunnel and for its tests.

    Real OpenSSH, SLURM and PAM in Linux network namespaces: your machine plays
    the laptop; 'login' is reachable from it; 'gateway' (slurmctld) only from
    login; compute nodes 'node1', 'node2', ... (slurmd, a fake GPU) only from
    the gateway. Nodes refuse SSH from users with no job there
    (pam_slurm_adopt), like many real sites. Test users 'ntalice' and 'ntbob'
    have keys and an ~/.ssh/config for it.

    Needs root and the Debian/Ubuntu packages openssh-server, slurmctld,
    slurmd, slurm-client, munge, libpam-slurm-adopt (./scripts/setup installs
    them).

    \b
    Example, as root:
      nodetunnel sandbox up
      su - ntalice -c 'ssh -J login,gateway node1 hostname'   # refused: no job
      su - ntalice -c 'ssh -J login gateway sbatch -w node1 -D /tmp --wrap "sleep 60"'
      su - ntalice -c 'ssh -J login,gateway node1 hostname'   # accepted
      nodetunnel sandbox down
    """


@sandbox_group.command("up")
@click.option(
    "--nodes",
    "node_count",
    type=click.IntRange(1, 50),
    default=2,
    show_default=True,
    help="Number of compute nodes.",
)
@click.option("--mfa", is_flag=True,
              help="The login host asks for a key and a one-time code (see 'sandbox mfa').")  # fmt: skip
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sandbox_up(node_count: int, mfa: bool, root: Path | None, as_json: bool) -> None:
    """Build the mini-cluster and wait until it is ready (idempotent).

    Ready means: every sshd answers with its host key, slurmctld answers,
    all nodes are idle and the scheduler has made its first pass.
    """
    sb = _sandbox(root, node_count, quiet=as_json)
    status = sb.up()
    if mfa:
        files = sb.enable_mfa()
        status = sb.status()
        if not as_json:
            _say_mfa(files)
    _show_status(status, as_json)


@sandbox_group.command("mfa")
@click.option("--off", is_flag=True, help="A key alone is enough at the login host again.")
@_dir_option
def sandbox_mfa(off: bool, root: Path | None) -> None:
    """Make the login host ask for a key and a one-time code (TOTP), as MFA bastions do.

    sshd requires publickey,keyboard-interactive; the code comes from PAM
    (pam_oath: 30 s steps, 6 digits, each code accepted once). Every test
    user gets a new secret, readable by root only. Connections already
    open stay up.

    \b
    Example, as root:
      nodetunnel sandbox mfa
      su - ntalice -c 'ssh login hostname'     # asks: One-time password (OATH) for `ntalice':
      oathtool --totp "$(cat /var/lib/nodetunnel-sandbox/mfa/ntalice.hex)"   # the code
      nodetunnel sandbox mfa --off
    """
    sb = _sandbox(root, quiet=True)
    if off:
        was = sb.disable_mfa()
        click.echo("login host: key only" + (" (was key + one-time code)" if was else ""))
        return
    _say_mfa(sb.enable_mfa())


def _say_mfa(files: dict[str, Path]) -> None:
    click.echo("login host: key + one-time code (TOTP); the current code of a user:")
    for user, path in files.items():
        click.echo(f'  {user}: oathtool --totp "$(cat {path})"')


@sandbox_group.command("down")
@_dir_option
def sandbox_down(root: Path | None) -> None:
    """Remove the mini-cluster: processes, namespaces, route, test users, files.

    Works after a failed or interrupted 'up' too. Only processes the sandbox
    started (those in its own cgroup) are ended, by PID.
    """
    removed = _sandbox(root).down()
    if removed:
        click.echo("removed: " + ", ".join(removed))
    else:
        click.echo("nothing to remove: no sandbox on this machine")


@sandbox_group.command("status")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def sandbox_status(root: Path | None, as_json: bool) -> None:
    """Show hosts, daemons and node states. Exit code 0 only if the sandbox is up and healthy."""
    status = _sandbox(root, quiet=True).status()
    _show_status(status, as_json)
    if not status.up:
        raise SystemExit(ExitCode.SANDBOX if status.daemons else ExitCode.FAILURE)


@sandbox_group.command("cache-home")
@click.option("--seconds", "cache_s", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="How long a looked-up name, a missing name or a file's "
              "attributes are trusted (NFS's acdirmin is 30 s).")  # fmt: skip
@click.option("--hosts", default="login,gateway", show_default=True,
              help="Comma-separated hosts that see the home through the cache.")  # fmt: skip
@click.option("--off", is_flag=True, help="Every host sees the home directly again.")
@_dir_option
def sandbox_cache_home(cache_s: float, hosts: str, off: bool, root: Path | None) -> None:
    """Let hosts see the shared home through an NFS-like cache, as on real clusters.

    A FUSE mount (bindfs) over the home inside each host, with kernel
    timeouts for names, missing names and attributes: a file looked up on the
    login host before a node wrote it stays missing there for up to --seconds.
    New SSH sessions see it; the nodes and the laptop keep the direct view
    unless named in --hosts.

    \b
    Example, as root:
      nodetunnel sandbox cache-home --seconds 30
      nodetunnel sandbox cache-home --off
    """
    sb = _sandbox(root, quiet=True)
    if off:
        gone = sb.uncache_home()
        click.echo("home seen directly on every host"
                   + (f" (was cached on {', '.join(gone)})" if gone else ""))  # fmt: skip
        return
    names = tuple(h.strip() for h in hosts.split(",") if h.strip())
    sb.cache_home(cache_s, names)
    click.echo(f"home cached {cache_s:g} s on {', '.join(names)}")


@sandbox_group.command("ssh-config")
@_dir_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the config to this file instead of printing it.",
)
def sandbox_ssh_config(root: Path | None, output: Path | None) -> None:
    """Print the laptop-side ssh config for the sandbox (use it with ssh -F).

    Host-key checking stays on: the config points at a known_hosts file with
    every host's key. The test users already have it as ~/.ssh/config.
    """
    sb = _sandbox(root, quiet=True)
    path = sb.paths.ssh_config
    if not path.exists():
        from ..errors import SandboxError

        raise SandboxError(
            f"no sandbox ssh config at {path}", hint="run 'nodetunnel sandbox up' first"
        )
    text = path.read_text()
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            output.write_text(text)
        except OSError as exc:
            from ..errors import UsageError

            raise UsageError(
                f"cannot write the ssh config to {output}: {exc.strerror}",
                hint="choose a file in an existing directory you can write to",
            ) from exc
        click.echo(f"wrote {output}", err=True)


def _show_status(status: Any, as_json: bool) -> None:
    if as_json:
        print_json(status.to_json())
        return
    if not status.daemons:
        click.echo(f"no sandbox at {status.root}  (start one with: nodetunnel sandbox up)")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"nodetunnel sandbox at {status.root}", title_justify="left")
    for col in ("host", "addresses", "daemons", "slurm"):
        table.add_column(col)
    for host, addrs in status.hosts.items():
        daemons = ", ".join(
            f"{d.name} {d.pid}" + ("" if d.alive else " (dead)")
            for d in status.daemons
            if d.host == host and d.name != "holder"
        )
        table.add_row(host, " ".join(addrs), daemons, status.nodes.get(host, ""))
    console.print(table)
    console.print(f"users: {', '.join(status.users)}   ssh config: {status.ssh_config}")
    console.print(f"shared home: {status.home}   login: {status.login_auth}")
    for problem in status.problems:
        console.print(f"[red]problem:[/red] {problem}")
    console.print("[green]up[/green]" if status.up else "[red]not healthy[/red]")
