"""The package's shape: small modules, and each app's and scheduler's specifics in one place.

(The import layers themselves are import-linter contracts in pyproject.toml,
checked by ./scripts/check.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "nodetunnel"
MODULES = sorted(SRC.rglob("*.py"))
MAX_LINES = 550  # "about 500": split a module before it grows past this

#: Code that only the SLURM backend may contain: its commands as argv words,
#: its environment variables, its script directives.
SLURM_CODE = re.compile(
    r"""["'](sbatch|squeue|scancel|sinfo|sacct|scontrol)\b|\bSLURMD?_[A-Z_]+|#SBATCH"""
)
#: Code that only the Jupyter recipe may contain: its variables, module, API, port, token.
JUPYTER_CODE = re.compile(
    r"""JUPYTER_[A-Z_]+|jupyter_server|/api/status|\b8888\b|["']jupyter["']|\?token=|token \{"""
)


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that are code, not docstrings or comments (a rough but strict cut)."""
    out, in_doc = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        quotes = stripped.count('"""')
        if in_doc:
            in_doc = quotes % 2 == 0
            continue
        if stripped.startswith('"""'):
            in_doc = quotes == 1
            continue
        out.append((number, line.split("  #", 1)[0] if not stripped.startswith("#") else ""))
    return out


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{_rel(path)} has {lines} lines: split it by what it does"


def _offenders(pattern: re.Pattern[str], allowed: tuple[str, ...]) -> list[str]:
    found = []
    for path in MODULES:
        if _rel(path).startswith(allowed):
            continue
        for number, line in _code_lines(path):
            if pattern.search(line):
                found.append(f"{_rel(path)}:{number}: {line.strip()}")
    return found


def test_slurm_code_only_in_the_slurm_backend() -> None:
    # scheduler/testing.py is the SLURM backend's test double; sandbox/ builds a SLURM cluster.
    allowed = ("scheduler/slurm/", "scheduler/testing.py", "sandbox/")
    assert _offenders(SLURM_CODE, allowed) == []


def test_jupyter_code_only_in_the_jupyter_recipe() -> None:
    # Voilà is a Jupyter server application: its recipe names Jupyter's token too.
    assert _offenders(JUPYTER_CODE, ("apps/jupyter.py", "apps/voila.py")) == []


def test_the_checks_would_find_what_they_look_for() -> None:
    assert SLURM_CODE.search('["scancel", job_id]')
    assert SLURM_CODE.search('NT_NODE="${SLURMD_NODENAME:-$(hostname)}"')
    assert not SLURM_CODE.search('"could not ask SLURM"')
    assert JUPYTER_CODE.search('headers={"Authorization": f"token {token}"}')
    assert JUPYTER_CODE.search("DEFAULT_PORT = 8888")
    assert not JUPYTER_CODE.search("JupyterLab today")
