"""``nodetunnel config``, ``config init`` and ``config path``.

Every test gets its own config home (XDG_CONFIG_HOME under tmp_path) and no
NODETUNNEL_CONFIG; conftest.py gives it its own sandbox directory. Nothing
here reads or writes the real ~/.config.
"""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodetunnel import cli as cli_module
from nodetunnel import config
from nodetunnel.cli import cli, main
from nodetunnel.errors import ExitCode
from nodetunnel.sandbox.topology import Paths


@dataclasses.dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODETUNNEL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def default_path(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "nodetunnel" / "config.toml"


def nt(capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    code = info.value.code
    assert code is None or isinstance(code, int)
    return Outcome(int(code or 0), out, err)


def one_error_and_fix(result: Outcome) -> tuple[str, str]:
    assert result.code == ExitCode.USAGE == 2, result.err
    assert "Traceback" not in result.err
    assert len(result.err_lines) == 2, result.err
    error, fix = result.err_lines
    assert error.startswith("nodetunnel: error: ")
    assert fix.startswith("  fix: ")
    assert result.out == ""
    return error, fix


# ------------------------------------------------------------------------ path
def test_path_default(capsys: pytest.CaptureFixture[str], default_path: Path) -> None:
    result = nt(capsys, "config", "path")
    assert result.code == 0
    assert result.out == f"{default_path}\n"
    assert result.err == ""


def test_path_from_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(tmp_path / "env.toml"))
    assert nt(capsys, "config", "path").out == f"{tmp_path / 'env.toml'}\n"
    assert nt(capsys, "config", "--config", "x.toml", "path").out == "x.toml\n"


def test_path_with_clirunner(default_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "path"], prog_name="nodetunnel")
    assert result.exit_code == 0
    assert result.stdout == f"{default_path}\n"


# ------------------------------------------------------------------------ init
def test_init_writes_a_private_starter_file(
    capsys: pytest.CaptureFixture[str], default_path: Path
) -> None:
    result = nt(capsys, "config", "init")
    assert result.code == 0, result.err
    assert result.out == f"{default_path}\n"
    assert "nodetunnel config" in result.err
    assert default_path.read_text() == config.starter_config()
    assert stat.S_IMODE(default_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(default_path.parent.stat().st_mode) == 0o700


def test_init_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], default_path: Path) -> None:
    default_path.parent.mkdir(parents=True)
    default_path.write_text("# mine\n")
    error, fix = one_error_and_fix(nt(capsys, "config", "init"))
    assert str(default_path) in error
    assert "already exists" in error
    assert "--force" in fix
    assert default_path.read_text() == "# mine\n"


def test_init_force_replaces(capsys: pytest.CaptureFixture[str], default_path: Path) -> None:
    default_path.parent.mkdir(parents=True)
    default_path.write_text("# mine\n")
    default_path.chmod(0o644)
    result = nt(capsys, "config", "init", "--force")
    assert result.code == 0, result.err
    assert result.out == f"{default_path}\n"
    assert default_path.read_text() == config.starter_config()
    assert stat.S_IMODE(default_path.stat().st_mode) == 0o600


def test_init_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "new" / "nt.toml"
    result = nt(capsys, "config", "init", "--path", str(target))
    assert result.code == 0, result.err
    assert result.out == f"{target}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    # The written file is immediately usable.
    data = json.loads(nt(capsys, "config", "--config", str(target), "--json").out)
    assert data["cluster"] == {"value": "mylab", "source": f"config file {target}"}


def test_init_into_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    error, fix = one_error_and_fix(nt(capsys, "config", "init", "--path", str(tmp_path)))
    assert "is a directory" in error
    assert "--path" in fix


def test_init_uses_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(tmp_path / "env.toml"))
    assert nt(capsys, "config", "init").out == f"{tmp_path / 'env.toml'}\n"
    assert (tmp_path / "env.toml").exists()


# ------------------------------------------------------------------------ show
def test_show_without_a_config_file(capsys: pytest.CaptureFixture[str], default_path: Path) -> None:
    result = nt(capsys, "config")
    assert result.code == 0, result.err
    assert f"config file: {default_path}" in result.out
    assert "not found" in result.out
    assert "config init" in result.out
    for field in ("cluster", "partition", "cpus_per_task", "workdir"):
        assert field in result.out
    assert "swc (preset)" in result.out


def test_show_json_without_a_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    result = nt(capsys, "config", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert set(data) == {"cluster", *config.FIELD_NAMES}
    assert all(entry["source"] == "default" for entry in data.values())
    assert all(set(entry) == {"value", "source"} for entry in data.values())


def test_show_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(nt(capsys, "config", "--cluster", "swc", "--json").out)
    assert data["cluster"] == {"value": "swc", "source": "command line"}
    assert data["jump"] == {"value": ["ssh.swc.ucl.ac.uk", "hpc-gw2"], "source": "preset swc"}
    assert data["partition"] == {"value": "gpu", "source": "preset swc"}
    assert data["mem"] == {"value": None, "source": "default"}

    table = nt(capsys, "config", "-c", "swc").out
    assert "settings for cluster swc" in table
    assert "ssh.swc.ucl.ac.uk, hpc-gw2" in table
    assert "preset swc" in table
    assert "command line" in table


def test_show_merged_sources(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nt.toml"
    path.write_text(
        'default_cluster = "swc"\n[clusters.swc]\nuser = "jdoe"\n'
        '[clusters.swc.jupyter]\ntime = "2:00:00"\n'
    )
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(path))
    data = json.loads(nt(capsys, "config", "--json", "--app", "jupyter").out)
    assert data["cluster"]["source"] == f"config file {path}"
    assert data["user"] == {"value": "jdoe", "source": f"config file {path}"}
    assert data["partition"]["source"] == "preset swc"
    assert data["time"] == {"value": "2:00:00", "source": f"config file {path} (jupyter section)"}

    result = nt(capsys, "config", "--app", "jupyter")
    assert result.code == 0
    assert f"config file: {path}\n" in result.out
    assert "swc (preset + config file)" in result.out
    assert "config file (jupyter section)" in result.out
    assert "jdoe" in result.out


def test_show_does_not_interpret_markup(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nt.toml"
    path.write_text('[clusters.a]\nsetup = "echo [bold]x[/bold]"\n')
    result = nt(capsys, "config", "--config", str(path), "-c", "a")
    assert result.code == 0
    assert "echo [bold]x[/bold]" in result.out


def test_show_the_sandbox_once_registered(capsys: pytest.CaptureFixture[str]) -> None:
    error, fix = one_error_and_fix(nt(capsys, "config", "--cluster", "sandbox"))
    assert "sandbox" in error
    assert "nodetunnel sandbox up" in fix

    paths = Paths(config.sandbox_profile_path().parent)  # conftest's sandbox dir
    paths.root.mkdir(parents=True)
    config.sandbox_profile_path().write_text(config.sandbox_profile_toml(paths))
    data = json.loads(nt(capsys, "config", "--cluster", "sandbox", "--json").out)
    assert data["jump"] == {"value": ["login", "gateway"], "source": "preset sandbox"}
    assert data["ssh_config"]["value"] == str(paths.ssh_config)


# ---------------------------------------------------------------------- errors
def test_unknown_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    error, fix = one_error_and_fix(nt(capsys, "config", "--cluster", "nope"))
    assert "unknown cluster 'nope'" in error
    assert "swc" in error
    assert "nodetunnel config init" in fix


@pytest.mark.parametrize(
    ("text", "in_error"),
    [
        ('[clusters.a]\npartiton = "x"\n', ":2: unknown key 'partiton' in [clusters.a]"),
        ("[clusters.a]\ncpus_per_task = 0\n", ":2: cpus_per_task in [clusters.a] must be"),
        ("[clusters.a]\ntime = 8:00\n", ":2: TOML syntax error"),
        ('[clusters.a]\njump = ["-oProxyCommand=sh"]\n', ":2: jump in [clusters.a] has host"),
        ('[clusters.a]\nuser = "a b"\n', ":2: user in [clusters.a] has user name"),
    ],
)
def test_bad_config_file_exits_2_with_error_and_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, in_error: str
) -> None:
    path = tmp_path / "nt.toml"
    path.write_text(text)
    for args in (["config", "--config", str(path)], ["config", "--config", str(path), "--json"]):
        error, _fix = one_error_and_fix(nt(capsys, *args))
        assert f"{path}{in_error}" in error


def test_bad_config_from_the_default_location(
    capsys: pytest.CaptureFixture[str], default_path: Path
) -> None:
    default_path.parent.mkdir(parents=True)
    default_path.write_text("bogus = 1\n")
    error, fix = one_error_and_fix(nt(capsys, "config"))
    assert error == f"nodetunnel: error: {default_path}:1: unknown key 'bogus' in the top level"
    assert fix == "  fix: valid keys there: clusters, default_cluster"


def test_missing_explicit_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    error, fix = one_error_and_fix(nt(capsys, "config", "--config", str(tmp_path / "no.toml")))
    assert "does not exist" in error
    assert "config init" in fix


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    result = nt(capsys, "--debug", "config", "--cluster", "nope")
    assert result.code == 2
    assert "Traceback" in result.err
    assert result.err_lines[-2].startswith("nodetunnel: error: unknown cluster")


@pytest.mark.parametrize(
    "args",
    [
        ["config", "--json", "init"],
        ["config", "--cluster", "swc", "path"],
        ["config", "--app", "jupyter", "init"],
    ],
)
def test_show_options_with_a_subcommand_are_usage_errors(
    capsys: pytest.CaptureFixture[str], default_path: Path, args: list[str]
) -> None:
    result = nt(capsys, *args)
    assert result.code == 2
    assert "only applies to 'nodetunnel config' itself" in result.err
    assert "Traceback" not in result.err
    assert result.out == ""
    assert not default_path.exists()


def test_unknown_app_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = nt(capsys, "config", "--app", "nope")
    assert result.code == 2
    assert "--app" in result.err


# ------------------------------------------------------------------------ help
@pytest.mark.parametrize("path", [["config"], ["config", "init"], ["config", "path"]])
def test_help_teaches_with_an_example(path: list[str]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="nodetunnel")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"nodetunnel {' '.join(path)}" in result.stdout


def test_cli_app_choices_match_the_library() -> None:
    from nodetunnel.cli import config as config_commands

    assert config_commands._CONFIG_APPS == config.APPS
    assert set(cli_module.cli.commands) >= set(config.APPS)  # one command per app recipe
