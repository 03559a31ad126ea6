"""The SLURM backend: job scripts with quoted ``#SBATCH`` lines, sbatch/squeue/scancel via argv.

Design (after submitit's SLURM backend and dask-jobqueue):

* The script is rendered by pure functions (:mod:`.script`) and checked
  against golden files; see there for how values are quoted and checked.
* ``sbatch --parsable --ignore-pbs`` reads the script on stdin: its argv carries
  no user value at all. Its refusals become :class:`SchedulerError` naming the
  refused value, with a hint (``sinfo -s`` ...) (:mod:`.errors`).
* :meth:`Slurm.status` asks about any number of jobs with **one** ``squeue``
  call; a job squeue no longer shows is :attr:`JobState.ENDED` (:mod:`.parse`).
* Every call goes through the :class:`CommandRunner` with a timeout.

This package is the only place in nodetunnel that knows SLURM's commands and
environment variables.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from ...errors import CommandNotFound, SchedulerError
from ...proc import Completed
from ..base import CommandRunner, JobRequest, JobState, JobStatus, PendingInfo, Scheduler
from .errors import _controller_error, _not_installed, _summary, translate_sbatch_error
from .parse import (
    NAMED_FORMAT,
    PENDING_FORMAT,
    SACCT_FORMAT,
    SQUEUE_FORMAT,
    _none_if_na,
    check_job_id,
    expand_hostlist,
    parse_named_jobs,
    parse_pending,
    parse_pending_queue,
    parse_sacct,
    parse_sbatch_output,
    parse_squeue,
    parse_start,
    parse_time_left,
)
from .script import (
    DENIED_OPTIONS,
    DIRECTIVES,
    END_OF_DIRECTIVES,
    NO_REQUEUE,
    SHEBANG,
    check_extra_arg,
    check_value,
    job_script,
    render_header,
    sbatch_quote,
)

__all__ = [
    "DENIED_OPTIONS",
    "DIRECTIVES",
    "END_OF_DIRECTIVES",
    "NAMED_FORMAT",
    "NO_REQUEUE",
    "PENDING_FORMAT",
    "SACCT_FORMAT",
    "SHEBANG",
    "SQUEUE_FORMAT",
    "Slurm",
    "check_extra_arg",
    "check_job_id",
    "check_value",
    "expand_hostlist",
    "job_script",
    "parse_named_jobs",
    "parse_pending",
    "parse_pending_queue",
    "parse_sacct",
    "parse_sbatch_output",
    "parse_squeue",
    "parse_start",
    "parse_time_left",
    "render_header",
    "sbatch_quote",
    "translate_sbatch_error",
]


class Slurm(Scheduler):
    """SLURM through its command-line tools, run by ``runner`` on the submit host.

    Every command gets ``timeout_s``. Nothing here prints; failures are
    :class:`SchedulerError` (or the runner's ``CommandTimeout``).
    """

    name: ClassVar[str] = "slurm"
    SUBMIT_ARGV: ClassVar[tuple[str, ...]] = ("sbatch", "--parsable", "--ignore-pbs")
    #: SLURM's name for the node (the laptop checks it against the job's node list).
    NODE_NAME_SHELL: ClassVar[str] = '"${SLURMD_NODENAME:-$(hostname)}"'
    CANCEL_SELF_SHELL: ClassVar[str] = 'scancel "$SLURM_JOB_ID"'

    def __init__(self, runner: CommandRunner, *, timeout_s: float = 60.0) -> None:
        super().__init__(runner, timeout_s=timeout_s)
        self._accounting: bool | None = None  # whether sacct answers here (None: not known yet)
        self._has_me: bool | None = None  # whether squeue/scancel know --me (SLURM >= 20.11)
        self._partition_of: dict[str, str] = {}  # job id -> partition(s), once known

    def _run(self, argv: list[str], *, input: str | None = None) -> Completed:
        try:
            done = self.runner(argv, input=input, timeout_s=self.timeout_s, check=False)
        except CommandNotFound as exc:
            raise SchedulerError(
                f"{argv[0]!r} was not found on the submit host",
                hint="nodetunnel must submit from a SLURM login node: one where "
                f"'{argv[0]} --version' works",
            ) from exc
        if done.returncode != 0:
            err = _not_installed(argv[0], done) or _controller_error(argv[0], done.stderr)
            if err is not None:
                raise err
        return done

    def _failed(
        self, program: str, done: Completed, what: str, hint: str | None = None
    ) -> SchedulerError:
        return SchedulerError(
            f"{what}: {program} exited with code {done.returncode} "
            f"({_summary(done.stderr or done.stdout)})",
            hint=hint or "see SLURM's message; if it is temporary, try again in a minute",
        )

    # -- rendering ------------------------------------------------------------
    def job_script(self, request: JobRequest, body: str) -> str:
        return job_script(request, body)

    # -- commands -------------------------------------------------------------
    def submit(self, script: str, *, request: JobRequest | None = None) -> str:
        """``sbatch --parsable --ignore-pbs`` with ``script`` on stdin; returns the job id.

        (``--ignore-pbs``: sbatch would otherwise also obey ``#PBS``/``#BSUB`` lines.)
        A cluster name in sbatch's answer (``123;cluster``) is dropped.
        """
        done = self._run(list(self.SUBMIT_ARGV), input=script)
        if done.returncode != 0:
            raise translate_sbatch_error(done.stderr or done.stdout, request, self.partitions)
        job_id = parse_sbatch_output(done.stdout)
        if request is not None and request.partition:
            self._partition_of[job_id] = request.partition
        return job_id

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """One ``squeue --states=all --jobs=ID,ID,...`` call for all ``job_ids``."""
        ids = list(dict.fromkeys(check_job_id(j) for j in job_ids))
        if not ids:
            return {}
        done = self._run(
            [
                "squeue",
                "--noheader",
                "--states=all",
                f"--jobs={','.join(ids)}",
                f"--format={SQUEUE_FORMAT}",
            ]
        )
        if done.returncode != 0:
            if "invalid job id" in done.stderr.lower():
                # squeue fails this way when none of the jobs is known any more.
                return {jid: JobStatus.ended(jid) for jid in ids}
            raise self._failed(
                "squeue", done, f"could not read the state of job(s) {', '.join(ids)}"
            )
        found = parse_squeue(done.stdout, ids)
        gone = [jid for jid, st in found.items() if st.state is JobState.ENDED]
        if gone:  # squeue forgets ended jobs after a while: accounting still knows how they ended
            found.update(self.accounting_status(gone))
        return found

    def accounting_status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """How ended jobs ended, from ``sacct`` where accounting runs; ``{}`` where it does not.

        A site without accounting is asked only once per backend.
        """
        if self._accounting is False or not job_ids:
            return {}
        try:
            done = self._run(["sacct", "--noheader", "--parsable2", "--allocations",
                              f"--jobs={','.join(job_ids)}", f"--format={SACCT_FORMAT}"])  # fmt: skip
        except SchedulerError:  # no sacct, or no accounting database to ask
            self._accounting = False
            return {}
        if done.returncode != 0:
            self._accounting = False  # not installed, or accounting storage is disabled
            return {}
        self._accounting = True
        return parse_sacct(done.stdout, job_ids)

    def _mine(self, program: str, args: list[str]) -> Completed:
        """``program --me ARGS``; on SLURM before 20.11 (no ``--me``), ``--user=$(id -un)``."""
        if self._has_me is not False:
            done = self._run([program, "--me", *args])
            low = done.stderr.lower()
            refused = "--me" in low and any(
                w in low for w in ("unrecognized option", "invalid option", "unknown option")
            )
            if not refused:
                return done
            self._has_me = False
        return self._run(["sh", "-c", f'exec {program} --user="$(id -un)" "$@"', "sh", *args])

    def named_jobs(self, name_pattern: re.Pattern[str]) -> dict[str, tuple[str, JobStatus]]:
        """The user's jobs whose name matches ``name_pattern``, recently ended ones included:
        one ``squeue --me --states=all`` call (``{job id: (name, status)}``)."""
        done = self._mine("squeue", ["--noheader", "--states=all", "--all",
                                     f"--format={NAMED_FORMAT}"])  # fmt: skip
        if done.returncode != 0:
            raise self._failed("squeue", done, "could not list your jobs")
        return parse_named_jobs(done.stdout, name_pattern)

    def start_estimate(self, job_id: str) -> str | None:
        """SLURM's estimated start time of a pending job (``squeue --start``), or ``None``."""
        jid = check_job_id(job_id)
        done = self._run(["squeue", "--start", "--noheader", f"--jobs={jid}", "--format=%S"])
        if done.returncode != 0:
            if "invalid job id" in done.stderr.lower():
                return None
            raise self._failed("squeue", done, f"could not read the start estimate of job {jid}")
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        return _none_if_na(lines[0]) if lines else None

    def pending_info(self, job_id: str) -> PendingInfo | None:
        """Where a pending job stands, with **one** squeue (see :meth:`pending_infos`)."""
        jid = check_job_id(job_id)
        return self.pending_infos([jid]).get(jid)

    def pending_infos(self, job_ids: Sequence[str]) -> dict[str, PendingInfo]:
        """Where each of ``job_ids`` stands, with **one** squeue for all of them: the pending
        jobs of their partitions, by priority (``--sort=-p,i``), with their start estimates
        (``--start``).

        A job's partition is the one asked for at submit, or learnt from an earlier
        answer; while one is not known, every pending job the user may see is listed
        (one query still).
        """
        ids = list(dict.fromkeys(check_job_id(j) for j in job_ids))
        if not ids:
            return {}
        argv = ["squeue", "--noheader", "--start", "--states=PD", "--sort=-p,i",
                f"--format={PENDING_FORMAT}"]  # fmt: skip
        known = [self._partition_of.get(jid) for jid in ids]
        if all(known):
            names = sorted({p for part in known if part for p in part.split(",") if p})
            for name in names:
                check_value("--partition", name)
            argv.append(f"--partition={','.join(names)}")
        done = self._run(argv)
        if done.returncode != 0:
            raise self._failed("squeue", done, f"could not read the queue of job {', '.join(ids)}")
        found = parse_pending_queue(done.stdout, ids)
        for jid, info in found.items():
            if info.partition:
                self._partition_of[jid] = info.partition
        return found

    def cancel_jobs(self, job_ids: Sequence[str]) -> None:
        """One ``scancel ID ID ...``; jobs that already ended (or are unknown) are no error."""
        ids = list(dict.fromkeys(check_job_id(j) for j in job_ids))
        if not ids:
            return
        done = self._run(["scancel", *ids])
        if done.returncode == 0:
            return
        problems = [
            line
            for line in done.stderr.splitlines()
            if line.strip()
            and "invalid job id specified" not in line.lower()
            and "already completing or completed" not in line.lower()
        ]
        if problems:
            raise self._failed(
                "scancel",
                done,
                f"could not cancel job {', '.join(ids)}",
                hint=f"check with 'squeue -j {','.join(ids)}'; only your own jobs can be cancelled",
            )

    def cancel_named(self, job_name: str) -> None:
        """``scancel --me --name NAME``: the user's jobs with that (unique) name, if any."""
        check_value("--job-name", job_name)
        done = self._mine("scancel", [f"--name={job_name}"])
        if done.returncode != 0:
            raise self._failed(
                "scancel",
                done,
                f"could not cancel the job named {job_name}",
                hint=f"check with 'squeue --me --name={job_name}' and scancel it by hand",
            )

    def partitions(self) -> list[str]:
        """The partitions this user can see (``sinfo --format=%R``), in sinfo's order."""
        done = self._run(["sinfo", "--noheader", "--format=%R"])
        if done.returncode != 0:
            raise self._failed("sinfo", done, "could not list the partitions")
        return list(
            dict.fromkeys(line.strip() for line in done.stdout.splitlines() if line.strip())
        )

    def cancel_command(self, job_ids: Sequence[str]) -> str:
        return "scancel " + " ".join(job_ids)

    def leftover_hint(self) -> str:
        return "check with 'squeue --me' on the cluster and scancel what is left"
