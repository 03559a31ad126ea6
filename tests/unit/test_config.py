"""Per-cluster profiles: loading, merging, provenance, validation and the starter file.

Every test gets its own config home (XDG_CONFIG_HOME), no NODETUNNEL_CONFIG and
its own sandbox directory, so nothing here reads or writes the real ones.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from nodetunnel import config
from nodetunnel.config import (
    FIELDS,
    PRESETS,
    SOURCE_CLI,
    SOURCE_DEFAULT,
    Settings,
    config_path,
    known_clusters,
    load_config,
    resolve,
    sandbox_profile_path,
    sandbox_profile_toml,
    starter_config,
    write_starter_config,
)
from nodetunnel.errors import ExitCode, UsageError
from nodetunnel.sandbox.topology import DEFAULT_DIR, Paths

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODETUNNEL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("NODETUNNEL_SANDBOX_DIR", str(tmp_path / "sandbox"))


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def usage_error(excinfo: pytest.ExceptionInfo[UsageError]) -> tuple[str, str]:
    err = excinfo.value
    assert err.exit_code == ExitCode.USAGE
    assert err.hint, "every config error needs a hint"
    assert "\n" not in err.message
    return err.message, err.hint


# -------------------------------------------------------------------- paths
def test_default_path_follows_xdg(tmp_path: Path) -> None:
    assert config_path() == tmp_path / "xdg" / "nodetunnel" / "config.toml"
    assert config.default_config_path() == config_path()


def test_environment_overrides_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(tmp_path / "env.toml"))
    assert config_path() == tmp_path / "env.toml"
    assert config_path(tmp_path / "arg.toml") == tmp_path / "arg.toml"


def test_empty_environment_means_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODETUNNEL_CONFIG", "")
    assert config_path() == tmp_path / "xdg" / "nodetunnel" / "config.toml"


def test_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path("~/nt.toml") == tmp_path / "home" / "nt.toml"


def test_sandbox_profile_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox_profile_path() == tmp_path / "sandbox" / "profile.toml"
    assert sandbox_profile_path(tmp_path / "x") == tmp_path / "x" / "profile.toml"
    monkeypatch.delenv("NODETUNNEL_SANDBOX_DIR")
    assert sandbox_profile_path() == DEFAULT_DIR / "profile.toml"


# ------------------------------------------------------------------- loading
def test_missing_default_file_is_an_empty_config() -> None:
    cfg = load_config()
    assert not cfg.exists
    assert cfg.clusters == {}
    assert cfg.default_cluster is None


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_config(tmp_path / "nope.toml")
    message, hint = usage_error(info)
    assert str(tmp_path / "nope.toml") in message
    assert "does not exist" in message
    assert "config init" in hint


def test_missing_file_from_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(UsageError) as info:
        resolve(None, {})
    message, hint = usage_error(info)
    assert "NODETUNNEL_CONFIG" in message
    assert "NODETUNNEL_CONFIG" in hint


def test_config_from_environment_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[clusters.a]\npartition = "p"\n', "env.toml")
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(path))
    settings = resolve("a", {})
    assert settings.partition == "p"
    assert settings.source("partition") == f"config file {path}"


def test_no_cluster_and_no_file_gives_defaults() -> None:
    settings = resolve(None, {})
    assert settings.cluster is None
    assert settings.jump == ()
    assert settings.partition is None
    assert all(source == SOURCE_DEFAULT for _, _, source in settings.items())
    assert settings.config_exists is False


def test_the_whole_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
default_cluster = "lab"

[clusters.lab]
jump = ["login.example.org", "gw"]
user = "jdoe"
ssh_config = "extra_ssh_config"
connect_timeout_s = 90
multiplex = false
scheduler = "slurm"
job_check_interval_s = 30
partition = "gpu"
gres = "gpu:a100:1"
gpus = 2
mem = 16000
time = 90
cpus_per_task = 8
account = "acc"
qos = "high"
constraint = "a100|h100"
reservation = "course"
sbatch_args = ["--exclude=gpu-01", "--nice=10"]
conda_env = "/opt/envs/lab"
modules = ["cuda/12", "miniconda"]
venv = "~/venvs/lab"
setup = '''
export HF_HOME=/scratch/$USER/hf
echo "ready"	# with a tab
'''
workdir = "/scratch/jdoe/project one"
warn_before = "15m"
lease = 45
notify = false
""",
    )
    settings = resolve(None, {}, path)
    src = f"config file {path}"
    assert settings.cluster == "lab"
    assert settings.source("cluster") == src
    assert settings.jump == ("login.example.org", "gw")
    assert settings.user == "jdoe"
    assert settings.ssh_config == tmp_path / "extra_ssh_config"  # relative to the file
    assert settings.gpus == "2"
    assert settings.mem == "16000"
    assert settings.time == "90"
    assert settings.cpus_per_task == 8
    assert settings.job_check_interval_s == 30
    assert settings.connect_timeout_s == 90
    assert settings.multiplex is False
    assert settings.cluster_ref.multiplex is False
    assert settings.cluster_ref.connect_timeout_s == 90
    assert settings.sbatch_args == ("--exclude=gpu-01", "--nice=10")
    assert settings.modules == ("cuda/12", "miniconda")
    assert settings.venv == "~/venvs/lab"  # a path on the cluster: not expanded here
    assert settings.setup is not None
    assert settings.setup.startswith("export HF_HOME")
    assert settings.workdir == "/scratch/jdoe/project one"
    assert settings.warn_before_s == 900
    assert settings.lease_s == 45 * 60  # a bare number: minutes, as SLURM's --time
    assert settings.notify is False
    assert all(source == src for _, _, source in settings.items())
    assert settings.config_exists
    assert settings.config_path == path


def test_ssh_config_tilde_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(
        tmp_path, '[clusters.a]\nssh_config = "~/.ssh/x"\n[clusters.b]\nssh_config = "/etc/y"\n'
    )
    assert resolve("a", {}, path).ssh_config == tmp_path / "home" / ".ssh" / "x"
    assert resolve("b", {}, path).ssh_config == Path("/etc/y")


# ------------------------------------------------------ presets and merging
def test_swc_preset() -> None:
    settings = resolve("swc", {})
    assert settings.jump == ("ssh.swc.ucl.ac.uk", "hpc-gw2")
    assert settings.partition == "gpu"
    assert settings.source("jump") == "preset swc"
    assert settings.source("partition") == "preset swc"
    assert settings.source("cluster") == SOURCE_CLI
    assert settings.source("mem") == SOURCE_DEFAULT
    assert settings.jump_spec == "ssh.swc.ucl.ac.uk,hpc-gw2"


def test_config_overrides_preset_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.swc]\npartition = "cpu"\nuser = "jdoe"\n')
    settings = resolve("swc", {}, path)
    assert settings.partition == "cpu"
    assert settings.source("partition") == f"config file {path}"
    assert settings.user == "jdoe"
    assert settings.jump == PRESETS["swc"]["jump"]
    assert settings.source("jump") == "preset swc"


def test_command_line_overrides_everything(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.swc]\npartition = "cpu"\nmem = "8G"\n')
    settings = resolve(
        "swc",
        {"partition": "debug", "jump": "a,b", "cpus_per_task": "2", "modules": ["m1"], "gpus": 1},
        path,
    )
    assert settings.partition == "debug"
    assert settings.jump == ("a", "b")
    assert settings.cpus_per_task == 2
    assert settings.modules == ("m1",)
    assert settings.gpus == "1"
    for key in ("partition", "jump", "cpus_per_task", "modules", "gpus"):
        assert settings.source(key) == SOURCE_CLI
    assert settings.mem == "8G"
    assert settings.source("mem") == f"config file {path}"


def test_options_not_given_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\npartition = "cpu"\nmodules = ["x"]\n')
    settings = resolve("a", {"partition": None, "modules": (), "sbatch_args": []}, path)
    assert settings.partition == "cpu"
    assert settings.modules == ("x",)
    assert settings.source("modules") == f"config file {path}"


def test_cli_overrides_without_cluster() -> None:
    settings = resolve(None, {"jump": ["login"], "user": "me"})
    assert settings.cluster is None
    assert settings.jump == ("login",)
    assert settings.source("user") == SOURCE_CLI


def test_explicit_cluster_beats_default_cluster(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_cluster = "a"\n[clusters.a]\n[clusters.b]\nqos = "q"\n')
    assert resolve(None, {}, path).cluster == "a"
    settings = resolve("b", {}, path)
    assert settings.cluster == "b"
    assert settings.qos == "q"


def test_default_cluster_may_name_a_preset(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_cluster = "swc"\n')
    settings = resolve(None, {}, path)
    assert settings.cluster == "swc"
    assert settings.source("cluster") == f"config file {path}"
    assert settings.source("partition") == "preset swc"


def test_login_and_gateway_become_the_jump_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[clusters.both]\nlogin = "l.example.org"\ngateway = "gw"\n'
        '[clusters.one]\nlogin = "l.example.org"\n'
        '[clusters.gw]\ngateway = "gw"\n'
        '[clusters.swc]\nlogin = "other.example.org"\n',
    )
    assert resolve("both", {}, path).jump == ("l.example.org", "gw")
    assert resolve("one", {}, path).jump == ("l.example.org",)
    assert resolve("gw", {}, path).jump == ("gw",)
    swc = resolve("swc", {}, path)
    assert swc.jump == ("other.example.org",)
    assert swc.source("jump") == f"config file {path}"


def test_jump_and_login_together_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\njump = ["x"]\nlogin = "y"\n')
    with pytest.raises(UsageError) as info:
        resolve("a", {}, path)
    message, hint = usage_error(info)
    assert f"{path}:3:" in message
    assert "login" in message
    assert "jump" in message
    assert "not both" in hint


def test_app_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[clusters.a]\ntime = "8:00:00"\nmem = "4G"\n[clusters.a.jupyter]\ntime = "1:00:00"\n',
    )
    plain = resolve("a", {}, path)
    assert plain.time == "8:00:00"
    jup = resolve("a", {}, path, app="jupyter")
    assert jup.time == "1:00:00"
    assert jup.source("time") == f"config file {path} (jupyter section)"
    assert jup.mem == "4G"
    assert jup.app == "jupyter"
    assert resolve("a", {"time": "5"}, path, app="jupyter").time == "5"


def test_connection_keys_are_not_allowed_in_an_app_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\n\n[clusters.a.jupyter]\njump = ["x"]\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message.startswith(f"{path}:4: unknown key 'jump' in [clusters.a.jupyter]")
    assert "partition" in hint
    assert "jump" not in hint.split(":", 1)[1]


def test_app_section_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\njupyter = "yes"\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert f"{path}:2: jupyter in [clusters.a] must be a table" in message


def test_programming_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="partiton"):
        resolve(None, {"partiton": "x"})
    with pytest.raises(ValueError, match="no-such-app"):
        resolve(None, {}, app="no-such-app")


# --------------------------------------------------------- unknown clusters
def test_unknown_cluster_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "[clusters.mylab]\n[clusters.other]\n")
    with pytest.raises(UsageError) as info:
        resolve("mylb", {}, path)
    message, hint = usage_error(info)
    assert "unknown cluster 'mylb'" in message
    assert "did you mean 'mylab'?" in message
    assert "known clusters: mylab, other, swc" in message
    assert "nodetunnel config init" in hint
    assert str(path) in hint


def test_unknown_default_cluster_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_cluster = "gone"\n')
    with pytest.raises(UsageError) as info:
        resolve(None, {}, path)
    message, _ = usage_error(info)
    assert "'gone'" in message
    assert f"default_cluster in {path}" in message


def test_sandbox_without_profile_says_to_start_it() -> None:
    with pytest.raises(UsageError) as info:
        resolve("sandbox", {})
    message, hint = usage_error(info)
    assert "sandbox" in message
    assert "profile.toml" in message
    assert "nodetunnel sandbox up" in hint
    assert "sandbox" not in known_clusters()


def test_sandbox_profile_registers_the_preset(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "sandbox")
    paths.root.mkdir()
    sandbox_profile_path().write_text(sandbox_profile_toml(paths))
    assert known_clusters() == {"sandbox": "preset", "swc": "preset"}
    settings = resolve("sandbox", {})
    assert settings.jump == ("login", "gateway")
    assert settings.ssh_config == paths.ssh_config
    assert settings.partition == "cpu"
    assert settings.source("jump") == "preset sandbox"
    assert settings.source("ssh_config") == "preset sandbox"


def test_sandbox_profile_toml_default_paths() -> None:
    text = sandbox_profile_toml(Paths())
    assert text.startswith("#")
    assert 'jump = ["login", "gateway"]' in text
    assert f'ssh_config = "{DEFAULT_DIR / "ssh_config"}"' in text
    assert 'partition = "cpu"' in text


def test_sandbox_profile_toml_escapes_the_path(tmp_path: Path) -> None:
    root = tmp_path / 'odd "dir"\\x'
    root.mkdir()
    (root / "profile.toml").write_text(sandbox_profile_toml(Paths(root)))
    assert resolve("sandbox", {}, sandbox_dir=root).ssh_config == root / "ssh_config"


def test_config_overrides_the_sandbox_preset(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "sandbox")
    paths.root.mkdir()
    sandbox_profile_path().write_text(sandbox_profile_toml(paths))
    path = write(tmp_path, '[clusters.sandbox]\npartition = "gpu"\ngres = "gpu:1"\n')
    settings = resolve("sandbox", {}, path)
    assert settings.partition == "gpu"
    assert settings.source("partition") == f"config file {path}"
    assert settings.jump == ("login", "gateway")
    assert known_clusters(path)["sandbox"] == "preset + config file"


def test_user_defined_sandbox_works_without_the_profile(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.sandbox]\njump = ["mine"]\n')
    assert resolve("sandbox", {}, path).jump == ("mine",)


def test_broken_sandbox_profile_only_matters_when_selected(tmp_path: Path) -> None:
    (tmp_path / "sandbox").mkdir()
    sandbox_profile_path().write_text("jump = [\n")
    assert resolve("swc", {}).cluster == "swc"
    with pytest.raises(UsageError) as info:
        resolve("sandbox", {})
    message, hint = usage_error(info)
    assert f"{sandbox_profile_path()}:" in message
    assert "sandbox up" in hint


def test_unknown_key_in_sandbox_profile(tmp_path: Path) -> None:
    (tmp_path / "sandbox").mkdir()
    sandbox_profile_path().write_text('jump = ["login"]\nbogus = 1\n')
    with pytest.raises(UsageError) as info:
        resolve("sandbox", {})
    message, _ = usage_error(info)
    assert f"{sandbox_profile_path()}:2: unknown key 'bogus'" in message


# ------------------------------------------------------------ file errors
def test_unknown_key_names_file_line_and_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.mylab]\npartition = "gpu"\n\npartiton = "cpu"\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message == (
        f"{path}:4: unknown key 'partiton' in [clusters.mylab] (did you mean 'partition'?)"
    )
    for field in FIELDS:
        assert field.name in hint
    assert "login" in hint
    assert "gateway" in hint


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, '# comment\n\ndefault = "x"\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message.startswith(f"{path}:3: unknown key 'default' in the top level")
    assert "default_cluster" in message
    assert hint == "valid keys there: clusters, default_cluster"


def test_misspelled_clusters_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_cluster = "a"\n\n[cluster.a]\npartition = "x"\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert message.startswith(f"{path}:3: unknown key 'cluster'")
    assert "did you mean 'clusters'?" in message


def test_quoted_keys_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, '[ clusters . "mylab" ]  # comment\npartition = "x"\n  "bad-key" = 1\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert info.value.message.startswith(f"{path}:3: unknown key 'bad-key' in [clusters.mylab]")


def test_key_line_is_found_in_the_right_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[clusters.a]\ncpus_per_task = 1\n[clusters.b]\ncpus_per_task = "four"\n',
    )
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message == (
        f"{path}:4: cpus_per_task in [clusters.b] must be a positive integer, not 'four' (a string)"
    )
    assert hint == "write it like: cpus_per_task = 4"


def test_line_unknown_for_inline_tables_still_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'clusters = { a = { partiton = "x" } }\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert message.startswith(f"{path}: unknown key 'partiton' in [clusters.a]")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("cpus_per_task = 0", "must be a positive integer, not 0 (an integer)"),
        ("cpus_per_task = true", "must be a positive integer, not True (a boolean)"),
        ("cpus_per_task = 2.5", "must be a positive integer, not 2.5 (a number)"),
        ("job_check_interval_s = 0", "must be a positive integer, not 0 (an integer)"),
        ("partition = 5", "must be a string, not 5 (an integer)"),
        ('partition = ["a"]', "must be a string, not ['a'] (a list)"),
        ("jump = 5", "must be a list of host names, not 5 (an integer)"),
        ("jump = [1, 2]", "must be a list of host names, not [1, 2] (a list)"),
        ("jump = []", "is an empty list of hosts"),
        ("modules = [1]", "must be a list of strings, not [1] (a list)"),
        ("mem = 1.5", "must be a string or an integer, not 1.5 (a number)"),
        ("gpus = -1", "must be a string or an integer, not -1 (an integer)"),
        ("user = 7", "must be a user name (string), not 7 (an integer)"),
        ("ssh_config = false", "must be a file path (string), not False (a boolean)"),
        ("setup = 1", "must be a string of shell commands, not 1 (an integer)"),
        ("time = {h = 1}", "must be a string or an integer, not {'h': 1} (a table)"),
    ],
)
def test_wrong_types(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path, f"[clusters.a]\n{line}\n")
    key = line.split(" ", 1)[0]
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message == f"{path}:2: {key} in [clusters.a] {expected}"
    assert key in hint


def test_toml_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\npartition = "gpu"\ntime = 8:00:00\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message.startswith(f"{path}:3: TOML syntax error in config file: ")
    assert "(at line" not in message
    assert "quotes" in hint


def test_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\nqos = "a"\nqos = "b"\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert info.value.message.startswith(f"{path}:3: TOML syntax error")


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_config(tmp_path)
    message, _ = usage_error(info)
    assert "is a directory" in message


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[clusters.a]\npartition = "\xff"\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert "not UTF-8" in message


def test_unreadable_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "")

    def denied(_self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)  # root could read a chmod 0 file
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert message == f"cannot read config file {path}: Permission denied"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default_cluster = 3\n", "default_cluster in the top level must be a cluster name"),
        ("clusters = 3\n", "clusters in the top level must be a table of clusters"),
        ("[clusters]\na = 3\n", "a in the top level in [clusters] must be a table"),
        ('[clusters."-x"]\n', "cluster name '-x' is not allowed"),
        ('[clusters."a b"]\n', "cluster name 'a b' is not allowed"),
    ],
)
def test_bad_structure(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert expected in message
    assert str(path) in message


# --------------------------------------------------------- hostile values
HOSTILE_HOSTS = [
    "-oProxyCommand=touch /tmp/pwned",
    "-J",
    "login gateway",
    "login\tgateway",
    "login\nProxyCommand x",
    "lo\x00gin",
    "lo\x1bgin",
    "login\u202e",
    "login\u00a0",
    "a,b",
    "",
]


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_hostile_jump_hosts_in_the_file(tmp_path: Path, host: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[clusters.a]\njump = ["ok.example.org", {json.dumps(host)}]\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message.startswith(f"{path}:2: jump in [clusters.a]")
    assert "\x00" not in message
    assert "\x1b" not in message
    assert "host" in hint


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_hostile_jump_hosts_from_sugar(tmp_path: Path, host: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[clusters.a]\ngateway = {json.dumps(host)}\n")
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert message.startswith(f"{path}:2: gateway in [clusters.a]")


@pytest.mark.parametrize("host", [h for h in HOSTILE_HOSTS if h and "," not in h])
def test_hostile_jump_hosts_on_the_command_line(host: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve("swc", {"jump": [host]})
    message, _ = usage_error(info)
    assert message.startswith("--jump on the command line ")


def test_comma_separated_jump_on_the_command_line_is_checked_per_host() -> None:
    with pytest.raises(UsageError) as info:
        resolve(None, {"jump": "login,-oProxyCommand=x"})
    assert "starts with '-'" in info.value.message


@pytest.mark.parametrize(
    "user", ["-oProxyCommand=x", "-l", "j doe", "jdoe\n", "j\x00", "root@evil", "", "j\u200bdoe"]
)
def test_hostile_user_names(tmp_path: Path, user: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[clusters.a]\nuser = {json.dumps(user)}\n")
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert message.startswith(f"{path}:2: user in [clusters.a]")
    with pytest.raises(UsageError) as info2:
        resolve(None, {"user": user})
    assert info2.value.message.startswith("--user on the command line ")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("partition", "gpu\n#SBATCH --uid=0"),
        ("partition", "-x"),
        ("gres", "gpu:1\r"),
        ("mem", "16 G"),
        ("time", "-1"),
        ("workdir", "/scratch/\x00x"),
        ("conda_env", "--help"),
        ("venv", "a\nb"),
        ("setup", "echo \x00"),
        ("setup", "echo \x1b[2J"),
        ("sbatch_args", ["not-an-option"]),
        ("sbatch_args", ["--x=1\n--y"]),
        ("modules", ["-f"]),
        ("modules", ["cuda 12"]),
        ("ssh_config", "-F"),
    ],
)
def test_other_hostile_values(tmp_path: Path, key: str, value: Any) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[clusters.a]\n{key} = {json.dumps(value)}\n")
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, _ = usage_error(info)
    assert message.startswith(f"{path}:2: {key} in [clusters.a]")
    with pytest.raises(UsageError):
        resolve(None, {key: value})


def test_hostile_values_are_shown_escaped(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[clusters.a]\nuser = "a\\u001b]0;owned\\u0007"\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert "\x1b" not in info.value.message
    assert "\\x1b" in info.value.message


def test_allowed_odd_but_valid_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[clusters.a]\njump = ["jdoe@login.example.org:2222", "gw-2.internal"]\n'
        'setup = "module purge\\nexport X=1\\tY=2"\nsbatch_args = ["--comment=a b"]\n'
        'partition = "gpu,gpu_lowp"\nuser = "j.doe_2"\n',
    )
    settings = resolve("a", {}, path)
    assert settings.jump == ("jdoe@login.example.org:2222", "gw-2.internal")
    assert settings.sbatch_args == ("--comment=a b",)


# ------------------------------------------------------------ Settings API
def test_to_json_shape(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\nssh_config = "/x/y"\nmodules = ["m"]\n')
    data = resolve("a", {"partition": "p"}, path).to_json()
    assert list(data) == list(Settings.field_names())
    assert data["cluster"] == {"value": "a", "source": "command line"}
    assert data["ssh_config"] == {"value": "/x/y", "source": f"config file {path}"}
    assert data["modules"] == {"value": ["m"], "source": f"config file {path}"}
    assert data["partition"] == {"value": "p", "source": "command line"}
    assert data["jump"] == {"value": [], "source": "default"}
    assert data["cpus_per_task"] == {"value": None, "source": "default"}
    json.dumps(data)


def test_source_of_an_unknown_field() -> None:
    with pytest.raises(KeyError):
        Settings().source("nope")


def test_job_request() -> None:
    settings = resolve(
        "swc",
        {"gres": "gpu:1", "cpus_per_task": 4, "time": "1:00:00", "sbatch_args": ["--nice=5"]},
    )
    job = settings.job_request("nodetunnel-jupyter")
    assert (job.partition, job.gres, job.time, job.cpus_per_task) == ("gpu", "gpu:1", "1:00:00", 4)
    assert job.extra_args == ("--nice=5",)
    assert job.job_name == "nodetunnel-jupyter"
    assert Settings().job_request("x").partition is None
    assert Settings().jump_spec is None


def test_job_check_interval_defaults_to_the_sessions_and_is_a_connection_setting(
    tmp_path: Path,
) -> None:
    from nodetunnel.session import JOB_CHECK_INTERVAL_S

    assert Settings().job_check_interval_s == JOB_CHECK_INTERVAL_S
    assert resolve("swc", {}).source("job_check_interval_s") == SOURCE_DEFAULT
    path = write(tmp_path, "[clusters.swc]\njob_check_interval_s = 5\n")
    settings = resolve("swc", {}, path)
    assert settings.job_check_interval_s == 5
    assert settings.source("job_check_interval_s") == f"config file {path}"
    assert "job_check_interval_s" not in config.APP_KEYS  # not a command-line option
    bad = write(tmp_path, "[clusters.swc.jupyter]\njob_check_interval_s = 5\n", "app.toml")
    with pytest.raises(UsageError, match="unknown key 'job_check_interval_s'"):
        load_config(bad)


def test_settings_field_names_match_the_profile_fields() -> None:
    from nodetunnel.config import FIELD_NAMES

    assert Settings.field_names() == ("cluster", *FIELD_NAMES)
    for name in Settings.field_names():  # every profile field is an attribute
        getattr(Settings(), name)
    with pytest.raises(AttributeError):
        _ = Settings().no_such_field


# ----------------------------------------------------------- starter file
def test_starter_parses_and_yields_a_valid_profile(tmp_path: Path) -> None:
    path = write(tmp_path, starter_config())
    settings = resolve(None, {}, path)
    assert settings.cluster == "mylab"
    assert settings.jump == ("ssh.swc.ucl.ac.uk", "hpc-gw2")
    assert settings.partition == "gpu"
    assert settings.cpus_per_task == 4
    assert settings.source("partition") == f"config file {path}"
    assert known_clusters(path) == {"mylab": "config file", "swc": "preset"}


def test_starter_explains_every_key() -> None:
    text = starter_config()
    for field in FIELDS:
        assert re.search(rf"^# {field.name}: \S", text, re.M), field.name
        assert re.search(rf"^(# )?{field.name} = ", text, re.M), field.name
    for word in ("login", "gateway", "default_cluster", "[clusters.mylab.jupyter]"):
        assert word in text


def test_starter_examples_are_valid_when_uncommented(tmp_path: Path) -> None:
    """Uncommenting every example key (and the example tables) still gives a valid file."""
    text = re.sub(r"^# (\[clusters\.|[a-z_]+ = )", r"\1", starter_config(), flags=re.M)
    assert "\n# user = " not in text
    path = write(tmp_path, text)
    settings = resolve("mylab", {}, path, app="jupyter")
    assert settings.user == "jdoe"
    assert settings.time == "4:00:00"
    assert settings.modules == ("miniconda",)
    assert resolve("other", {}, path).jump == ("login.other.example.org",)


def test_readme_example_is_valid(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no TOML example"
    for block in blocks:
        path = write(tmp_path, block)
        load_config(path)


def test_write_starter_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        written = write_starter_config()
    finally:
        os.umask(old)
    assert written == tmp_path / "xdg" / "nodetunnel" / "config.toml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    assert written.read_text() == starter_config()


def test_write_starter_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write(tmp_path, "mine = 1\n")
    with pytest.raises(UsageError) as info:
        write_starter_config(path)
    message, hint = usage_error(info)
    assert str(path) in message
    assert "already exists" in message
    assert "--force" in hint
    assert path.read_text() == "mine = 1\n"


def test_write_starter_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.toml"
    link.symlink_to(tmp_path / "elsewhere.toml")
    with pytest.raises(UsageError):
        write_starter_config(link)
    assert not (tmp_path / "elsewhere.toml").exists()


def test_write_starter_force(tmp_path: Path) -> None:
    path = write(tmp_path, "mine = 1\n")
    path.chmod(0o644)
    assert write_starter_config(path, force=True) == path
    assert path.read_text() == starter_config()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temp file left


def test_write_starter_into_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)
    written = write_starter_config(directory / "nt.toml")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_write_starter_to_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        write_starter_config(tmp_path)
    message, hint = usage_error(info)
    assert "is a directory" in message
    assert "config.toml" in hint


def test_write_starter_where_it_cannot(tmp_path: Path) -> None:
    blocker = write(tmp_path, "", "file")
    with pytest.raises(UsageError) as info:
        write_starter_config(blocker / "sub" / "config.toml")
    message, _ = usage_error(info)
    assert "cannot write" in message


def test_write_starter_uses_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODETUNNEL_CONFIG", str(tmp_path / "env" / "nt.toml"))
    assert write_starter_config() == tmp_path / "env" / "nt.toml"
    assert load_config().exists


def test_login_must_be_one_host_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\nlogin = ["a", "b"]\n')
    with pytest.raises(UsageError) as info:
        load_config(path)
    message, hint = usage_error(info)
    assert message == (
        f"{path}:2: login in [clusters.a] must be a host name (a string), not ['a', 'b'] (a list)"
    )
    assert hint == 'write it like: login = "login.example.org"'


def test_jump_as_one_string(tmp_path: Path) -> None:
    path = write(tmp_path, '[clusters.a]\njump = "login, gateway"\n')
    assert resolve("a", {}, path).jump == ("login", "gateway")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2d", 172800), ("45", 2700), (" 1H ", 3600),
     ("0", 0)],
)  # fmt: skip
def test_duration_s(text: str, seconds: float) -> None:
    assert config.duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1x", "1.5h", "-5m", "30 m", "1m1h", "h1"])
def test_duration_s_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        config.duration_s(text)


def test_session_defaults_and_command_line_durations() -> None:
    settings = resolve("swc", {})
    assert settings.warn_before_s == config.DEFAULT_WARN_BEFORE_S
    assert settings.lease_s is None
    settings = resolve("swc", {"warn_before": "0", "lease": "2h"})
    assert settings.warn_before_s is None  # 0 turns the warning off
    assert settings.lease_s == 7200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lease": "5s"}, "--lease on the command line is '5s': a lease under 10 s"),
        ({"lease": "soon"}, "--lease on the command line is 'soon', not a duration"),
        ({"warn_before": "1x"}, "--warn-before on the command line is '1x', not a duration"),
    ],
)
def test_bad_durations_are_named(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        resolve("swc", overrides)
    assert message in err.value.message
    assert err.value.hint


def test_connections_are_shared_unless_a_profile_says_not() -> None:
    import os

    ref = resolve("swc", {}).cluster_ref
    assert ref.multiplex is (os.name != "nt")
    assert ref.connect_timeout_s is None  # the user's ssh config decides
