"""How the benchmarks (benchmarks/run.py) read nodetunnel's --debug output and sdiag."""

from __future__ import annotations

from benchmarks.run import parse_commands, parse_sdiag_user_rpcs, scheduler_counts

DEBUG = """\
debug: run: ssh -F /tmp/nodetunnel-1001/nt-1/ssh_config -J login -T -- gateway 'sbatch --parsable --ignore-pbs'
debug:   exit 0 after 0.120 s
debug: run: ssh -F /tmp/nodetunnel-1001/nt-1/ssh_config -J login -T -- gateway 'squeue --noheader --jobs=7 '"'"'--format=%i|%T'"'"''
debug: run: ssh -F /tmp/nodetunnel-1001/nt-1/ssh_config -J login -T -- gateway 'cat /home/a/.nodetunnel/sessions/nt-1/endpoint'
debug: spawn: ssh -F /tmp/nodetunnel-1001/nt-1/ssh_config -J login,gateway -N -L 127.0.0.1:8888:/tmp/nt.x/s node1
debug: run: ssh -F /tmp/nodetunnel-1001/nt-1/ssh_config -J login -O exit gateway
not a debug line: squeue
debug: run: ssh -F /tmp/nodetunnel-1001/nt-1/ssh_config -J login -T -- gateway 'scancel 7'
"""


def test_commands_and_the_programs_they_run_on_the_cluster():
    commands = parse_commands((float(i), line) for i, line in enumerate(DEBUG.splitlines()))
    assert [c.kind for c in commands] == ["run", "run", "run", "spawn", "run", "run"]
    assert [c.remote for c in commands] == ["sbatch", "squeue", "cat", None, None, "scancel"]
    assert commands[1].at == 2.0
    assert scheduler_counts(commands) == {"sbatch": 1, "squeue": 1, "scancel": 1, "total": 3}
    assert scheduler_counts([]) == {"sbatch": 0, "squeue": 0, "scancel": 0, "total": 0}


SDIAG = """\
Remote Procedure Call statistics by message type
\tREQUEST_JOB_INFO                        ( 2003) count:12     ave_time:310    total_time:3720
Remote Procedure Call statistics by user
\troot            (       0) count:43     ave_time:232    total_time:9980
\tntalice         (    1001) count:9      ave_time:287    total_time:2583
"""


def test_rpcs_of_a_user_from_sdiag():
    assert parse_sdiag_user_rpcs(SDIAG, "ntalice") == 9
    assert parse_sdiag_user_rpcs(SDIAG, "ntbob") == 0  # no RPC from that user yet
    assert parse_sdiag_user_rpcs("sdiag: error", "ntalice") is None


def test_marked_commands_are_read_past_the_output_marker():
    import shlex

    from nodetunnel.transport.openssh import marked_command

    argv = ["ssh", "-F", "cfg", "-J", "login", "-T", "--", "gateway",
            marked_command("squeue --noheader --jobs=7")]  # fmt: skip
    (command,) = parse_commands([(0.0, "debug: run: " + shlex.join(argv))])
    assert command.remote == "squeue"
