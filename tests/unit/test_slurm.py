"""The SLURM backend: job scripts (golden files, hostile values), squeue/sbatch parsing, commands.

Hostile values are checked three ways: ``shlex.split`` of each ``#SBATCH`` line,
a Python port of sbatch's own ``#SBATCH`` argument parser (``_get_argument`` in
Slurm's src/sbatch/opt.c, which, unlike a shell, honours ``\\`` inside single
quotes), and running the rendered script with ``sh`` next to a canary file.
"""

from __future__ import annotations

import dataclasses
import doctest
import shlex
import subprocess
from pathlib import Path

import pytest

from nodetunnel import scheduler
from nodetunnel.errors import (
    CommandNotFound,
    CommandTimeout,
    ExitCode,
    JobFailed,
    SchedulerError,
    UsageError,
    WaitTimeout,
)
from nodetunnel.scheduler import (
    JobRequest,
    JobState,
    JobStatus,
    Slurm,
    expand_hostlist,
    job_script,
    parse_time_left,
    render_header,
    testing,
)
from nodetunnel.scheduler.slurm import (
    END_OF_DIRECTIVES,
    SQUEUE_FORMAT,
    check_extra_arg,
    parse_sbatch_output,
    parse_squeue,
    sbatch_quote,
    translate_sbatch_error,
)
from nodetunnel.scheduler.testing import FakeRunner, FakeSlurm, UnexpectedCall

from .conftest import Golden

CANARY = "CANARY"  # replaced by a path in tmp_path

HOSTILE = [
    "a'; echo foo",
    "a'; touch CANARY; echo '",
    'a"; touch CANARY; echo "',
    "with spaces  and more",
    " leading and trailing ",
    "$(touch CANARY)",
    "`touch CANARY`",
    "${HOME}",
    "$HOME",
    "x; touch CANARY",
    "x && touch CANARY",
    "x | touch CANARY",
    "x > CANARY",
    "héllo wörld ✓ 日本語 🚀",
    "non\u00a0breaking\u2003spaces",
    "*",
    "[a-z]*",
    "~",
    "~/x",
    "\\",
    "\\\\",
    "a\\",
    "\\'",
    "\\n",
    "%s\\0",
    "'",
    "''",
    '"',
    "'\"'\"'",
    "-n",
    "--",
    "#not a comment",
    "x #SBATCH --partition=evil",
    "--partition=evil",
    "!",
    "a=b",
    "{a,b}",
    "%j %u %x",
    "pipe|bar",
]

BAD_CHARS = ["\n", "\r", "\x00", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ud800"]

STRING_FIELDS = [
    f.name for f in dataclasses.fields(JobRequest) if f.name not in ("cpus_per_task", "extra_args")
]

FULL = JobRequest(
    partition="gpu",
    gres="gpu:a100:1",
    gpus="a100:1",
    mem="16G",
    time="4:00:00",
    cpus_per_task=4,
    account="proj-42",
    qos="normal",
    constraint="a100&ib",
    reservation="maint window",
    job_name="nodetunnel-jupyter",
    extra_args=("--mail-type=END", "--comment=my lab's notebook", "--exclusive", "-N1"),
    workdir="/home/alice/my project",
    output="/home/alice/.nodetunnel/logs/%j.log",
)

BODY = 'set -eu\nexec jupyter lab --no-browser --sock "$SOCK"\n'


def _values(tmp_path: Path) -> list[str]:
    canary = str(tmp_path / "canary")
    return [v.replace(CANARY, canary) for v in HOSTILE]


# ------------------------------------------------------- a port of sbatch's #SBATCH parser
def _c_isspace(ch: str) -> bool:
    return ch in " \t\n\v\f\r"


def sbatch_arguments(line: str) -> list[str]:
    """The argv sbatch builds from one ``#SBATCH`` line (port of opt.c's _get_argument loop)."""
    assert line.startswith("#SBATCH")
    text, i, args = line[len("#SBATCH") :], 0, []
    while True:
        while i < len(text) and _c_isspace(text[i]):
            i += 1
        if i >= len(text):
            return args
        arg: list[str] = []
        quoted, quote, escape = False, "", False
        while i < len(text) and (quoted or not _c_isspace(text[i])) and text[i] != "\n":
            ch = text[i]
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
                i += 1
                continue
            elif quoted:
                if ch == quote:
                    quoted = False
                    i += 1
                    continue
            elif ch in "\"'":
                quoted, quote = True, ch
                i += 1
                continue
            elif ch == "#":  # an unquoted '#' ends the line's arguments
                break
            arg.append(ch)
            i += 1
        assert not quoted, f"sbatch: unmatched quote in {line!r}"
        if not arg:  # sbatch returns NULL for an empty argument: the line ends there
            return args
        args.append("".join(arg))


def test_sbatch_parser_port_matches_what_sbatch_was_seen_doing() -> None:
    # Observed on Slurm 22.05 in the mini-cluster: backslash escapes even in single quotes.
    assert sbatch_arguments("#SBATCH --job-name='a\\\\b \"x\" $y #z'") == [
        '--job-name=a\\b "x" $y #z'
    ]
    assert sbatch_arguments('#SBATCH --job-name=a"\\\\"b') == ["--job-name=a\\b"]
    assert sbatch_arguments("#SBATCH --partition=gpu --gres=gpu:1 # comment") == [
        "--partition=gpu",
        "--gres=gpu:1",
    ]


def directive_lines(script: str) -> list[str]:
    """The lines sbatch reads directives from: ``#SBATCH`` lines before the first command."""
    lines = []
    for line in script.split("\n"):
        if line.startswith("#SBATCH"):
            lines.append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            break
    return lines


def sbatch_argv(script: str) -> list[str]:
    return [arg for line in directive_lines(script) for arg in sbatch_arguments(line)]


# ---------------------------------------------------------------------------- golden files
def test_full_request_script(golden: Golden) -> None:
    golden("sbatch-full.sh", job_script(FULL, BODY))


def test_minimal_request_script(golden: Golden) -> None:
    golden("sbatch-minimal.sh", job_script(JobRequest(), BODY))


def test_hostile_request_script(golden: Golden) -> None:
    req = JobRequest(
        job_name="a'; echo foo",
        partition="$(touch /tmp/x)",
        account="`id`",
        qos="back\\slash",
        workdir="/home/alice/with space",
        output="/home/alice/log #%j.out",
        extra_args=("--comment=x #SBATCH --partition=evil",),
    )
    golden("sbatch-hostile.sh", job_script(req, "true\n"))


def test_sbatch_reads_back_exactly_the_full_request() -> None:
    assert sbatch_argv(job_script(FULL, BODY)) == [
        "--job-name=nodetunnel-jupyter",
        "--partition=gpu",
        "--account=proj-42",
        "--qos=normal",
        "--reservation=maint window",
        "--constraint=a100&ib",
        "--time=4:00:00",
        "--cpus-per-task=4",
        "--mem=16G",
        "--gres=gpu:a100:1",
        "--gpus=a100:1",
        "--chdir=/home/alice/my project",
        "--output=/home/alice/.nodetunnel/logs/%j.log",
        "--no-requeue",
        "--mail-type=END",
        "--comment=my lab's notebook",
        "--exclusive",
        "-N1",
    ]


def test_minimal_request_only_names_the_job_and_is_not_requeued() -> None:
    assert render_header(JobRequest()) == (
        "#!/bin/sh\n#SBATCH --job-name=nodetunnel\n#SBATCH --no-requeue\n"
    )


def test_an_extra_requeue_comes_after_no_requeue_so_it_wins() -> None:
    header = render_header(JobRequest(extra_args=("--requeue",)))
    assert sbatch_argv(header) == ["--job-name=nodetunnel", "--no-requeue", "--requeue"]


def test_the_body_cannot_add_directives() -> None:
    script = job_script(JobRequest(), "#SBATCH --partition=evil\necho hi\n")
    assert sbatch_argv(script) == ["--job-name=nodetunnel", "--no-requeue"]
    assert f"\n{END_OF_DIRECTIVES}\n#SBATCH --partition=evil\n" in script


def test_body_gets_a_final_newline_and_no_second_shebang() -> None:
    assert job_script(JobRequest(), "true").endswith("\ntrue\n")
    assert job_script(JobRequest(), "").endswith(END_OF_DIRECTIVES + "\n")
    with pytest.raises(ValueError, match="shebang"):
        job_script(JobRequest(), "#!/bin/bash\ntrue\n")


def test_scheduler_job_script_is_the_pure_function() -> None:
    assert Slurm(FakeRunner()).job_script(FULL, BODY) == job_script(FULL, BODY)


# -------------------------------------------------------------------------- hostile values
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_sbatch_quote_round_trips_for_shlex_and_sbatch(value: str) -> None:
    word = sbatch_quote(value)
    assert shlex.split(word) == [value]
    assert sbatch_arguments(f"#SBATCH --job-name={word}") == [f"--job-name={value}"]


def test_sbatch_quote_is_plain_shlex_quote_without_backslashes() -> None:
    for value in HOSTILE:
        if "\\" not in value:
            assert sbatch_quote(value) == shlex.quote(value)
    assert sbatch_quote("gpu:1") == "gpu:1"
    assert sbatch_quote("a\\b") == 'a"\\\\"b'


def test_sbatch_quote_agrees_with_a_real_shell(tmp_path: Path) -> None:
    values = _values(tmp_path)
    line = "printf '%s\\0' " + " ".join(sbatch_quote(v) for v in values)
    out = subprocess.run(
        ["sh", "-c", line], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert out.split("\0")[:-1] == values
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_hostile_values_in_every_field_are_read_back_literally(field: str) -> None:
    option = {"workdir": "--chdir", "output": "--output"}.get(field, "--" + field.replace("_", "-"))
    for value in HOSTILE:
        header = render_header(JobRequest(**{field: value}))  # type: ignore[arg-type]
        lines = directive_lines(header)
        target = [line for line in lines if line.startswith(f"#SBATCH {option}=")]
        assert len(target) == 1, (value, header)
        assert shlex.split(target[0].removeprefix("#SBATCH ")) == [f"{option}={value}"]
        assert sbatch_arguments(target[0]) == [f"{option}={value}"]
        assert header.count("\n") == len(lines) + 1  # shebang + one line per directive


def test_hostile_extra_args_are_read_back_literally() -> None:
    args = tuple(f"--comment={v}" for v in HOSTILE)
    header = render_header(JobRequest(extra_args=args))
    assert sbatch_argv(header) == ["--job-name=nodetunnel", "--no-requeue", *args]
    assert [shlex.split(line)[1:] for line in directive_lines(header)][2:] == [[a] for a in args]


def test_rendered_script_with_hostile_values_runs_harmlessly(tmp_path: Path) -> None:
    values = _values(tmp_path)
    for i, value in enumerate(values):
        fields = {name: value for name in STRING_FIELDS}
        req = JobRequest(**fields, extra_args=(f"--comment={value}",))  # type: ignore[arg-type]
        script = tmp_path / f"job{i}.sh"
        script.write_text(job_script(req, "echo body-ran\n"))
        assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
        res = subprocess.run(
            ["sh", str(script)], capture_output=True, text=True, check=False, cwd=tmp_path
        )
        assert (res.returncode, res.stdout, res.stderr) == (0, "body-ran\n", ""), value
        assert not (tmp_path / "canary").exists(), value
        assert len(sbatch_argv(script.read_text())) == len(STRING_FIELDS) + 2  # + --no-requeue


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("bad", BAD_CHARS, ids=repr)
def test_control_characters_are_refused_naming_option_and_value(field: str, bad: str) -> None:
    value = f"gpu{bad}#SBATCH --partition=evil"
    with pytest.raises(UsageError) as info:
        render_header(JobRequest(**{field: value}))  # type: ignore[arg-type]
    option = {"workdir": "--chdir", "output": "--output"}.get(field, "--" + field.replace("_", "-"))
    assert info.value.message.startswith(f"{option}: the value {value!r} contains ")
    assert info.value.hint
    assert info.value.exit_code == ExitCode.USAGE


def test_newline_message_explains_the_danger() -> None:
    with pytest.raises(UsageError) as info:
        render_header(JobRequest(job_name="x\n#SBATCH --partition=evil"))
    assert info.value.message == (
        "--job-name: the value 'x\\n#SBATCH --partition=evil' contains a newline, which "
        "cannot be written into a job script (it would end the #SBATCH line and start a new one)"
    )
    assert info.value.hint == "remove the newline from --job-name"
    with pytest.raises(UsageError, match="control characters are not allowed there") as info:
        render_header(JobRequest(mem="16\tG"))
    assert info.value.hint == "remove the tab from --mem"


@pytest.mark.parametrize("bad", BAD_CHARS, ids=repr)
def test_control_characters_in_extra_args_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="--sbatch-arg"):
        render_header(JobRequest(extra_args=(f"--comment=a{bad}b",)))


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_values_are_refused(value: str) -> None:
    with pytest.raises(UsageError, match=r"--partition: the value .* is empty"):
        render_header(JobRequest(partition=value))


@pytest.mark.parametrize("value", [0, -1, True, "4", 2.5])
def test_cpus_per_task_must_be_a_positive_int(value: object) -> None:
    with pytest.raises(UsageError, match="--cpus-per-task"):
        render_header(JobRequest(cpus_per_task=value))  # type: ignore[arg-type]


def test_non_text_values_are_refused_but_ints_are_taken() -> None:
    assert "#SBATCH --time=60\n" in render_header(JobRequest(time=60))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"--mem: 1\.5 is not a text value"):
        render_header(JobRequest(mem=1.5))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ extra args
@pytest.mark.parametrize(
    "arg", ["--exclusive", "--mail-type=END", "--comment=a b", "-N1", "-ON2", "-pgpu", "-O"]
)
def test_extra_args_accepted(arg: str) -> None:
    assert check_extra_arg(arg) == arg


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        ("exclusive", "must start with - or --"),
        ("-", "must start with - or --"),
        ("--", "must start with - or --"),
        ("--gres gpu:1", "not one option word"),
        ("--=x", "not one option word"),
        ("-N 2", "space between the option and its value"),
        ("-O -N2", "not one option word"),
        ("-Oé", "not one option word"),
        ("--wait", "sbatch would not return"),
        ("--wai", "sbatch would not return"),
        ("-W", "sbatch would not return"),
        ("-OW", "sbatch would not return"),
        ("--array=1-4", "job array"),
        ("-a1-4", "job array"),
        ("--wrap=hostname", "written by nodetunnel"),
        ("--test-only", "submits nothing"),
        ("--output=x.log", "job log in the session directory"),
        ("-ox.log", "job log in the session directory"),
        ("--error=x.log", "job log in the session directory"),
        ("--chdir=/tmp", "use --workdir"),
        ("-D/tmp", "use --workdir"),
        ("--hold", "never start the app"),
        ("-H", "never start the app"),
        ("--clusters=other", "default cluster"),
        ("-Mother", "default cluster"),
    ],
)
def test_extra_args_refused(arg: str, match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        check_extra_arg(arg)
    assert repr(arg) in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("arg", ["--job-name=x", "--job=x", "-J", "-Jx", "-OJx"])
def test_a_job_name_of_ones_own_is_refused(arg: str) -> None:
    # list and attach find a session's job by the name nodetunnel gives it.
    with pytest.raises(UsageError, match="names the job after the session"):
        check_extra_arg(arg)


def test_extra_args_with_a_letter_inside_a_value_are_fine() -> None:
    assert check_extra_arg("-pMyWork") == "-pMyWork"  # -p takes the rest: no -M, no -W
    assert check_extra_arg("--cluster-constraint=x") == "--cluster-constraint=x"


def test_extra_args_list_becomes_a_tuple_and_a_string_is_refused() -> None:
    assert JobRequest(extra_args=["--exclusive"]).extra_args == ("--exclusive",)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not the string '--exclusive'"):
        JobRequest(extra_args="--exclusive")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("UNLIMITED", None),
        ("NOT_SET", None),
        ("INVALID", None),
        ("INFINITE", None),
        ("N/A", None),
        ("", None),
        ("0:00", 0),
        ("3:04", 184),
        ("59:59", 3599),
        ("2:03:04", 7384),
        ("12:00:00", 43200),
        ("1-02:03:04", 93784),
        ("1-00:59:57", 89997),
        ("10-00:00:00", 864000),
        ("1-02", 93600),
        ("45", 45),
    ],
)
def test_parse_time_left(text: str, seconds: int | None) -> None:
    assert parse_time_left(text) == seconds


@pytest.mark.parametrize("text", ["abc", "1:2:3:4", "-1:00", "1-", "x-01:00:00", "1:xx", "٣:٠٤"])
def test_parse_time_left_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time_left(text)


@pytest.mark.parametrize(
    ("nodelist", "nodes"),
    [
        ("", []),
        ("(null)", []),
        ("node1", ["node1"]),
        ("node[1-3,5]", ["node1", "node2", "node3", "node5"]),
        ("gpu[08-11]", ["gpu08", "gpu09", "gpu10", "gpu11"]),
        ("n[9-10]", ["n9", "n10"]),
        ("node1,gpu[01-02],login", ["node1", "gpu01", "gpu02", "login"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("rack[1-2]-node[01,03]", ["rack1-node01", "rack1-node03", "rack2-node01", "rack2-node03"]),
        ("a-b.c_d", ["a-b.c_d"]),
    ],
)
def test_expand_hostlist(nodelist: str, nodes: list[str]) -> None:
    assert expand_hostlist(nodelist) == nodes


@pytest.mark.parametrize(
    "nodelist", ["node[1-3", "node]1[", "node[[1]]", "node[3-1]", "node[a-b]", "a,,b", "n[]"]
)
def test_expand_hostlist_rejects_malformed(nodelist: str) -> None:
    with pytest.raises(ValueError, match=r"host list|range"):
        expand_hostlist(nodelist)


def test_expand_hostlist_is_bounded() -> None:
    with pytest.raises(ValueError, match="bad range"):
        expand_hostlist("n[0-99999999]")
    with pytest.raises(ValueError, match="more than 100000 names"):
        expand_hostlist(",".join(f"n[0-{50_000}]" for _ in range(3)))


SQUEUE_OUT = (
    "13|PENDING||5:00|N/A|ntalice|Resources\n"
    "12|RUNNING|node1|1-00:59:57|2026-11-28T10:58:20|ntalice|None\n"
    "14|RUNNING|node[1-2]|UNLIMITED|2026-11-28T10:58:21|ntalice|None\n"
    "15|PENDING||UNLIMITED|N/A|ntalice|Nodes required for job are DOWN, DRAINED or reserved"
    " for jobs in higher priority partitions\n"
    "16|CANCELLED||5:00|2026-11-28T10:58:23|ntalice|Priority\n"
    "99|RUNNING|node2|1:00|2026-11-28T10:58:21|ntbob|None\n"
)


def test_parse_squeue() -> None:
    got = parse_squeue(SQUEUE_OUT, ["12", "13", "14", "15", "16", "17"])
    assert list(got) == ["12", "13", "14", "15", "16", "17"]  # the order asked, not squeue's
    assert got["12"] == JobStatus(
        job_id="12",
        state=JobState.RUNNING,
        nodelist="node1",
        nodes=("node1",),
        reason=None,
        time_left_s=89997,
        start_estimate="2026-11-28T10:58:20",
        user="ntalice",
        state_raw="RUNNING",
    )
    assert got["12"].node == "node1"
    assert got["13"].state is JobState.PENDING
    assert (got["13"].reason, got["13"].nodes, got["13"].node) == ("Resources", (), None)
    assert (got["13"].time_left_s, got["13"].start_estimate) == (300, None)
    assert got["14"].nodes == ("node1", "node2")
    assert got["14"].time_left_s is None
    assert got["15"].reason is not None
    assert got["15"].reason.startswith("Nodes required for job are DOWN, DRAINED")
    assert got["16"].state is JobState.CANCELLED
    assert got["17"] == JobStatus.ended("17")
    assert got["17"].state is JobState.ENDED
    assert "99" not in got


def test_parse_squeue_keeps_a_reason_with_a_separator_whole() -> None:
    got = parse_squeue("5|PENDING||UNLIMITED|N/A|u|odd|reason|text\n", ["5"])
    assert got["5"].reason == "odd|reason|text"


def test_parse_squeue_unknown_state_keeps_the_raw_word() -> None:
    got = parse_squeue("5|FROBNICATED||UNLIMITED|N/A|u|None\n", ["5"])["5"]
    assert (got.state, got.state_raw, got.describe()) == (
        JobState.UNKNOWN,
        "FROBNICATED",
        "FROBNICATED",
    )


def test_parse_squeue_tolerates_a_garbled_time() -> None:
    assert parse_squeue("5|RUNNING|n1|soon|N/A|u|None\n", ["5"])["5"].time_left_s is None


@pytest.mark.parametrize(
    "line",
    [
        "12 RUNNING node1",
        "12|RUNNING|node1",
        "abc|RUNNING|n1|1:00|N/A|u|None",
        "12|RUNNING|n[1-|1:00|N/A|u|None",
    ],
)
def test_parse_squeue_refuses_unexpected_output(line: str) -> None:
    with pytest.raises(SchedulerError) as info:
        parse_squeue(line + "\n", ["12"])
    assert info.value.hint


def test_job_state_helpers() -> None:
    for state in (JobState.PENDING, JobState.CONFIGURING, JobState.RUNNING, JobState.COMPLETING):
        assert (state.active, state.finished) == (True, False)
    for state in (
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.OUT_OF_MEMORY,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.ENDED,
    ):
        assert (state.active, state.finished) == (False, True)
    assert (JobState.UNKNOWN.active, JobState.UNKNOWN.finished) == (False, False)
    assert JobState.SUSPENDED.active
    assert JobState.parse("running") is JobState.RUNNING
    assert JobState.parse("CANCELLED by 1000") is JobState.CANCELLED
    assert JobState.parse("COMPLETED+") is JobState.COMPLETED
    assert JobState.parse("???") is JobState.UNKNOWN


def test_describe() -> None:
    got = parse_squeue(SQUEUE_OUT, ["12", "13"])
    assert got["12"].describe() == "RUNNING on node1"
    assert got["13"].describe() == "PENDING (Resources)"


@pytest.mark.parametrize(
    ("stdout", "job_id"),
    [("42\n", "42"), ("42;cluster1\n", "42"), ("sbatch: note\n42\n", "42"), ("  7  ", "7")],
)
def test_parse_sbatch_output(stdout: str, job_id: str) -> None:
    assert parse_sbatch_output(stdout) == job_id


@pytest.mark.parametrize("stdout", ["", "Submitted batch job 42\n", "42;\n", "x\n"])
def test_parse_sbatch_output_without_id(stdout: str) -> None:
    with pytest.raises(SchedulerError, match="printed no job id") as info:
        parse_sbatch_output(stdout)
    assert "squeue --me" in (info.value.hint or "")


# ------------------------------------------------------------------ sbatch error translation
INVALID_PARTITION = (
    "sbatch: error: invalid partition specified: nope\n"
    "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
)
NODE_CONFIG = (
    "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
)


def test_invalid_partition_names_it_and_lists_the_real_ones() -> None:
    err = translate_sbatch_error(
        INVALID_PARTITION, JobRequest(partition="nope"), partitions=lambda: ["cpu", "gpu"]
    )
    assert err.message == (
        "partition 'nope' does not exist on this cluster (sbatch: invalid partition specified: "
        "nope; Invalid partition name specified)"
    )
    assert err.hint == "choose one of: cpu, gpu ('sinfo -s' lists them with their nodes)"
    assert err.exit_code == ExitCode.SCHEDULER


def test_invalid_partition_without_request_or_partition_list() -> None:
    def broken() -> list[str]:
        raise SchedulerError("sinfo failed")

    err = translate_sbatch_error(INVALID_PARTITION, None, partitions=broken)
    assert err.message.startswith("partition 'nope' does not exist")
    assert err.hint == "list the partitions with 'sinfo -s' and pick one with --partition"


def test_impossible_resources_name_what_was_asked() -> None:
    req = JobRequest(partition="gpu", gres="gpu:9", mem="16G")
    err = translate_sbatch_error(NODE_CONFIG, req)
    assert err.message == (
        "no node in partition 'gpu' has mem 16G, gres gpu:9 "
        "(sbatch: Requested node configuration is not available)"
    )
    assert "sinfo" in (err.hint or "")


@pytest.mark.parametrize(
    ("stderr", "req", "message", "hint"),
    [
        (
            "sbatch: error: Batch job submission failed: Invalid account or "
            "account/partition combination specified\n",
            JobRequest(account="nope"),
            "account 'nope' cannot be used here",
            "sacctmgr",
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid qos specification\n",
            JobRequest(qos="nope"),
            "QOS 'nope' cannot be used here",
            "sacctmgr",
        ),
        (
            "sbatch: error: Invalid generic resource (gres) specification\n",
            JobRequest(gres="bogus:1"),
            "the GPU/GRES request 'bogus:1' is not valid here",
            "gpu:1",
        ),
        (
            "sbatch: error: Batch job submission failed: Invalid feature specification\n",
            JobRequest(constraint="nope"),
            "constraint 'nope' matches no node feature",
            "%f",
        ),
        (
            "sbatch: error: Batch job submission failed: Requested reservation is invalid\n",
            JobRequest(reservation="nope"),
            "reservation 'nope' cannot be used",
            "scontrol show reservation",
        ),
        (
            "sbatch: error: Invalid --time specification\n",
            JobRequest(time="abc"),
            "time limit 'abc' was refused",
            "D-HH:MM:SS",
        ),
        (
            "sbatch: error: Batch job submission failed: Requested time limit is invalid "
            "(missing or exceeds some limit)\n",
            JobRequest(time="99-00:00:00"),
            "time limit '99-00:00:00' was refused",
            "D-HH:MM:SS",
        ),
        (
            "sbatch: error: Invalid --mem specification\n",
            JobRequest(mem="abc"),
            "memory 'abc' was refused",
            "16G",
        ),
        (
            "sbatch: unrecognized option '--bogus=1'\nTry \"sbatch --help\" for more information\n",
            JobRequest(extra_args=("--bogus=1",)),
            "sbatch does not know an option it was given (sbatch: unrecognized option '--bogus=1')",
            "--sbatch-arg",
        ),
        (
            "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
            "(job submit limit, user's size and/or time limits)\n",
            JobRequest(),
            "the job breaks a limit of your account or QOS",
            "sacctmgr show qos",
        ),
        (
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
            "(connect failure)\n",
            JobRequest(),
            "sbatch could not reach the SLURM controller",
            "try again",
        ),
        (
            "sbatch: error: Batch job submission failed: Something new\n",
            JobRequest(),
            "sbatch refused the job: Something new",
            "sbatch --help",
        ),
        ("", None, "sbatch refused the job: no error message", "sbatch --help"),
    ],
)
def test_sbatch_errors(stderr: str, req: JobRequest | None, message: str, hint: str) -> None:
    err = translate_sbatch_error(stderr, req)
    assert isinstance(err, SchedulerError)
    assert err.message.startswith(message), err.message
    assert hint in (err.hint or ""), err.hint


# -------------------------------------------------------------------- the backend, scripted
def test_submit_sends_the_script_on_stdin_and_no_values_in_argv() -> None:
    runner = FakeRunner()
    runner.reply("sbatch", stdout="4242;cluster\n")
    script = job_script(FULL, BODY)
    assert Slurm(runner, timeout_s=12).submit(script) == "4242"
    (call,) = runner.calls
    assert call.argv == ["sbatch", "--parsable", "--ignore-pbs"]
    assert (call.input, call.timeout_s, call.check) == (script, 12, False)


def test_submit_job_renders_and_names_refused_values() -> None:
    runner = FakeRunner()
    runner.reply("sbatch", stderr=INVALID_PARTITION, returncode=1)
    runner.reply("sinfo", stdout="cpu\ngpu\ngpu\n")
    with pytest.raises(SchedulerError) as info:
        Slurm(runner).submit_job(JobRequest(partition="nope"), "true\n")
    assert info.value.message.startswith("partition 'nope' does not exist")
    assert info.value.hint == "choose one of: cpu, gpu ('sinfo -s' lists them with their nodes)"
    assert runner.calls[0].input == job_script(JobRequest(partition="nope"), "true\n")
    assert runner.calls[1].argv == ["sinfo", "--noheader", "--format=%R"]


def test_submit_refuses_bad_values_before_running_anything() -> None:
    runner = FakeRunner()
    with pytest.raises(UsageError, match="--job-name"):
        Slurm(runner).submit_job(JobRequest(job_name="a\nb"), "true\n")
    assert runner.calls == []


def test_sbatch_missing_on_the_submit_host() -> None:
    runner = FakeRunner()
    runner.reply("sbatch", stderr="bash: line 1: sbatch: command not found\n", returncode=127)
    with pytest.raises(SchedulerError, match="'sbatch' was not found on the submit host") as info:
        Slurm(runner).submit("#!/bin/sh\n")
    assert "login node" in (info.value.hint or "")


def test_sbatch_missing_on_this_machine() -> None:
    runner = FakeRunner()
    runner.reply("sbatch", raises=CommandNotFound(["sbatch"]))
    with pytest.raises(SchedulerError, match="'sbatch' was not found on the submit host"):
        Slurm(runner).submit("#!/bin/sh\n")


def test_runner_timeouts_propagate() -> None:
    runner = FakeRunner()
    runner.reply("squeue", raises=CommandTimeout(["squeue"], 60))
    with pytest.raises(CommandTimeout):
        Slurm(runner).status(["1"])


def test_status_asks_squeue_once_for_all_jobs() -> None:
    runner = FakeRunner()
    runner.reply("squeue", stdout=SQUEUE_OUT)
    runner.reply("sacct", stderr="sacct: error: Slurm accounting storage is disabled\n",
                 returncode=1)  # fmt: skip
    ids = ["12", "13", "14", "17", "12"]
    got = Slurm(runner, timeout_s=7).status(ids)
    assert list(got) == ["12", "13", "14", "17"]
    assert got["17"].state is JobState.ENDED
    (call,) = runner.calls_to("squeue")
    assert call.argv == [
        "squeue",
        "--noheader",
        "--states=all",
        "--jobs=12,13,14,17",
        f"--format={SQUEUE_FORMAT}",
    ]
    assert call.timeout_s == 7


def test_status_of_no_jobs_runs_nothing() -> None:
    runner = FakeRunner()
    assert Slurm(runner).status([]) == {}
    assert runner.calls == []


def test_status_when_squeue_knows_none_of_the_jobs() -> None:
    runner = FakeRunner()
    runner.reply("squeue", stderr="slurm_load_jobs error: Invalid job id specified\n", returncode=1)
    got = Slurm(runner).status(["1", "2"])
    assert {j: s.state for j, s in got.items()} == {"1": JobState.ENDED, "2": JobState.ENDED}


def test_status_other_squeue_failures_are_errors() -> None:
    runner = FakeRunner()
    runner.reply(
        "squeue",
        stderr="slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n",
        returncode=1,
    )
    with pytest.raises(SchedulerError, match="squeue could not reach the SLURM controller"):
        Slurm(runner).status(["1"])
    runner.reply("squeue", stderr="squeue: error: something odd\n", returncode=1)
    with pytest.raises(SchedulerError) as info:
        Slurm(runner).status(["1"])
    assert info.value.message == (
        "could not read the state of job(s) 1: squeue exited with code 1 (something odd)"
    )


@pytest.mark.parametrize("job_id", ["1,2", "", "-1", "1 2", "abc", "$(id)", "12\n"])
def test_job_ids_are_checked_before_use(job_id: str) -> None:
    runner = FakeRunner()
    slurm = Slurm(runner)
    for call in (
        lambda: slurm.status([job_id]),
        lambda: slurm.cancel(job_id),
        lambda: slurm.start_estimate(job_id),
    ):
        with pytest.raises(UsageError, match="is not a SLURM job id"):
            call()
    assert runner.calls == []


def test_cancel() -> None:
    runner = FakeRunner()
    runner.reply("scancel")
    runner.reply(
        "scancel",
        stderr="scancel: error: Kill job error on job id 5: Invalid job id specified\n",
        returncode=1,
    )
    runner.reply(
        "scancel",
        stderr="scancel: error: Kill job error on job id 5: "
        "Job/step already completing or completed\n",
        returncode=1,
    )
    runner.reply(
        "scancel",
        stderr="scancel: error: Kill job error on job id 5: Access/permission denied\n",
        returncode=1,
    )
    slurm = Slurm(runner)
    slurm.cancel("5")
    slurm.cancel("5")
    slurm.cancel("5")
    with pytest.raises(SchedulerError, match="could not cancel job 5") as info:
        slurm.cancel("5")
    assert "only your own jobs" in (info.value.hint or "")
    assert [c.argv for c in runner.calls] == [["scancel", "5"]] * 4


def test_start_estimate() -> None:
    runner = FakeRunner()
    runner.reply("squeue", stdout="2026-11-28T12:00:00\n")
    runner.reply("squeue", stdout="N/A\n")
    runner.reply("squeue", stdout="")
    runner.reply("squeue", stderr="slurm_load_jobs error: Invalid job id specified\n", returncode=1)
    slurm = Slurm(runner)
    assert slurm.start_estimate("5") == "2026-11-28T12:00:00"
    assert slurm.start_estimate("5") is None
    assert slurm.start_estimate("5") is None
    assert slurm.start_estimate("5") is None
    assert runner.calls[0].argv == ["squeue", "--start", "--noheader", "--jobs=5", "--format=%S"]


def test_partitions() -> None:
    runner = FakeRunner()
    runner.reply("sinfo", stdout="cpu\ngpu\n\ncpu\n")
    assert Slurm(runner).partitions() == ["cpu", "gpu"]


def test_every_call_passes_a_timeout() -> None:
    runner = FakeRunner(lambda call: pytest.fail(f"unexpected {call.argv}"))
    with pytest.raises(UnexpectedCall, match="timeout_s"):
        runner(["squeue"], timeout_s=0)
    with pytest.raises(UnexpectedCall, match="list of strings"):
        runner("squeue", timeout_s=1)


def test_fake_runner_without_a_reply_complains() -> None:
    with pytest.raises(UnexpectedCall, match="no reply scripted for 'sbatch --parsable'"):
        FakeRunner()(["sbatch", "--parsable"], timeout_s=1)


# ------------------------------------------------------------ end to end on the fake SLURM
def test_lifecycle_on_fake_slurm() -> None:
    fake = FakeSlurm()
    slurm = Slurm(fake)
    job = slurm.submit_job(JobRequest(partition="gpu", gres="gpu:1", job_name="a'b"), "true\n")
    assert fake.jobs[job].name == "a'b"
    assert slurm.status_of(job).state is JobState.PENDING
    fake.start(job, "node[1-2]")
    st = slurm.status_of(job)
    assert (st.state, st.nodes, st.node, st.time_left_s) == (
        JobState.RUNNING,
        ("node1", "node2"),
        "node1",
        3598,
    )
    slurm.cancel(job)
    assert slurm.status_of(job).state is JobState.CANCELLED
    fake.forget(job)
    assert slurm.status_of(job).state is JobState.ENDED
    slurm.cancel(job)  # already gone: fine
    assert all(c.timeout_s == slurm.timeout_s for c in fake.calls)


def test_fake_slurm_refuses_like_sbatch() -> None:
    slurm = Slurm(FakeSlurm())
    with pytest.raises(SchedulerError, match="partition 'nope' does not exist") as info:
        slurm.submit_job(JobRequest(partition="nope"), "true\n")
    assert "cpu, gpu" in (info.value.hint or "")
    with pytest.raises(SchedulerError, match="no node in partition 'gpu' has gres gpu:9"):
        slurm.submit_job(JobRequest(partition="gpu", gres="gpu:9"), "true\n")


def test_wait_started_returns_the_running_status() -> None:
    fake = FakeSlurm(auto_start=True)
    slurm = Slurm(fake)
    job = slurm.submit_job(JobRequest(), "true\n")
    assert slurm.wait_started(job, timeout_s=5).node == "node1"


def test_wait_started_fails_fast_when_the_job_ends() -> None:
    fake = FakeSlurm()
    slurm = Slurm(fake)
    job = slurm.submit_job(JobRequest(), "true\n")
    fake.finish(job, JobState.FAILED, "NonZeroExitCode")
    with pytest.raises(JobFailed) as info:
        slurm.wait_started(job, timeout_s=5)
    assert info.value.message == (
        f"job {job} ended (FAILED (NonZeroExitCode)) before it started running"
    )
    assert (info.value.job_id, info.value.state, info.value.reason) == (
        job,
        "FAILED",
        "NonZeroExitCode",
    )
    assert isinstance(info.value, SchedulerError)
    fake.forget(job)
    with pytest.raises(JobFailed, match="no longer in the queue"):
        slurm.wait_started(job, timeout_s=5)


def test_wait_started_times_out_naming_the_pending_reason() -> None:
    fake = FakeSlurm()
    slurm = Slurm(fake)
    job = slurm.submit_job(JobRequest(), "true\n")
    fake.jobs[job].reason = "Resources"
    with pytest.raises(WaitTimeout) as info:
        slurm.wait_started(job, timeout_s=0.2, interval_s=0.05)
    assert info.value.last == f"job {job} is PENDING (Resources)"
    assert f"scancel {job}" in (info.value.hint or "")
    assert fake.jobs[job].state is JobState.PENDING  # left alone


@pytest.mark.parametrize("module", [scheduler, testing], ids=lambda m: m.__name__)
def test_docstring_examples(module: object) -> None:
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert tried > 0
    assert failed == 0


# ------------------------------------------------------------------ named jobs
def test_parse_named_jobs_keeps_matching_names_only() -> None:
    import re as re_mod

    from nodetunnel.scheduler.slurm import NAMED_FORMAT, parse_named_jobs

    assert NAMED_FORMAT == "%i|%j|%T|%N|%L|%S|%u|%r"
    pattern = re_mod.compile(r"nodetunnel-[a-z]+-nt-[0-9a-f]{8}")
    out = (
        "101|nodetunnel-jupyter-nt-0123abcd|RUNNING|node1|59:30|2026-11-28T10:00:00|alice|None\n"
        "102|my | odd | name|RUNNING|node2|1:00|N/A|alice|None\n"
        "103|nodetunnel-jupyter-nt-0123abcd-x|RUNNING|node2|1:00|N/A|alice|None\n"
        "104|nodetunnel-jupyter-nt-99999999|PENDING||1:00:00|N/A|alice|Resources\n"
        "garbage line\n"
    )
    jobs = parse_named_jobs(out, pattern)
    assert sorted(jobs) == ["101", "104"]
    name, status = jobs["101"]
    assert name == "nodetunnel-jupyter-nt-0123abcd"
    assert status.state is JobState.RUNNING
    assert status.nodes == ("node1",)
    assert status.time_left_s == 3570
    assert jobs["104"][1].reason == "Resources"


def test_named_jobs_is_one_squeue_of_my_jobs() -> None:
    import re as re_mod

    runner = FakeRunner()
    runner.reply("squeue", stdout="7|nodetunnel-jupyter-nt-0123abcd|RUNNING|n1|5:00|N/A|a|None\n")
    jobs = Slurm(runner).named_jobs(re_mod.compile(r"nodetunnel-.*"))
    assert list(jobs) == ["7"]
    (call,) = runner.calls
    assert call.argv[:4] == ["squeue", "--me", "--noheader", "--states=all"]


def test_cancel_jobs_is_one_scancel_and_tolerates_ended_jobs() -> None:
    runner = FakeRunner()
    runner.reply(
        "scancel",
        stderr="scancel: error: Kill job error on job id 8: Job/step already completing or completed\n"
        "scancel: error: Kill job error on job id 9: Invalid job id specified\n",
        returncode=1,
    )
    Slurm(runner).cancel_jobs(["7", "8", "9", "7"])
    (call,) = runner.calls
    assert call.argv == ["scancel", "7", "8", "9"]
    Slurm(runner).cancel_jobs([])  # nothing to do: no call
    assert len(runner.calls) == 1


def test_cancel_jobs_reports_other_errors() -> None:
    runner = FakeRunner()
    runner.reply("scancel", stderr="scancel: error: Kill job error on job id 7: Access/permission denied\n",
                 returncode=1)  # fmt: skip
    with pytest.raises(SchedulerError, match="could not cancel job"):
        Slurm(runner).cancel_jobs(["7"])


def test_cancel_jobs_refuses_bad_ids() -> None:
    with pytest.raises(UsageError):
        Slurm(FakeRunner()).cancel_jobs(["7; rm -rf ~"])


# ------------------------------------------------------------------ accounting, old SLURM
def test_an_ended_job_squeue_forgot_is_read_from_accounting() -> None:
    runner = FakeRunner()
    runner.reply("squeue", stdout="")  # purged from the controller
    runner.reply("sacct", stdout="41|TIMEOUT|0:0|node1\n41.batch|CANCELLED|0:15|node1\n"
                                 "42|CANCELLED by 1002|0:0|None assigned\n")  # fmt: skip
    slurm = Slurm(runner)
    got = slurm.status(["41", "42", "43"])
    assert got["41"].state is JobState.TIMEOUT
    assert got["41"].nodes == ("node1",)
    assert got["42"].state is JobState.CANCELLED
    assert got["43"].state is JobState.ENDED  # accounting does not know it either
    (sacct,) = runner.calls_to("sacct")
    assert "--jobs=41,42,43" in sacct.argv


def test_without_accounting_sacct_is_asked_once() -> None:
    runner = FakeRunner()
    for _ in range(3):
        runner.reply("squeue", stdout="")
    runner.reply("sacct", stderr="sacct: error: Slurm accounting storage is disabled\n",
                 returncode=1)  # fmt: skip
    slurm = Slurm(runner)
    for _ in range(3):
        assert slurm.status_of("41").state is JobState.ENDED
    assert len(runner.calls_to("sacct")) == 1


def test_sacct_that_cannot_reach_the_database_is_no_error() -> None:
    runner = FakeRunner()
    runner.reply("squeue", stdout="")
    runner.reply("sacct", stderr="sacct: error: Problem talking to the database: "
                                 "Connection refused\n", returncode=1)  # fmt: skip
    assert Slurm(runner).status_of("41").state is JobState.ENDED


def test_slurm_before_20_11_lists_jobs_by_user_name() -> None:
    runner = FakeRunner()
    runner.reply(
        "squeue",
        stderr="squeue: unrecognized option '--me'\nTry \"squeue --help\" for more information\n",
        returncode=1,
    )
    runner.reply(
        "sh", stdout="77|nodetunnel-jupyter-nt-0123abcd|RUNNING|node1|59:00|N/A|alice|None\n"
    )
    slurm = Slurm(runner)
    import re as re_mod

    jobs = slurm.named_jobs(re_mod.compile(r"nodetunnel-.*"))
    assert jobs["77"][1].state is JobState.RUNNING
    first, fallback = runner.calls
    assert first.argv[:2] == ["squeue", "--me"]
    assert fallback.argv[:2] == ["sh", "-c"]
    assert 'exec squeue --user="$(id -un)" "$@"' in fallback.argv[2]
    assert "--me" not in fallback.argv
    # And the backend remembers: the next question goes straight to the fallback.
    runner.reply("sh", stdout="")
    slurm.named_jobs(re_mod.compile(r"nodetunnel-.*"))
    assert runner.calls[-1].argv[:2] == ["sh", "-c"]
