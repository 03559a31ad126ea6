"""The bench's pure parts: percentiles, the side-by-side rows, the table (from a real --quick run)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from benchmarks.datapath import percentile_ms
from benchmarks.sidebyside import startup_rows
from benchmarks.table import render_table

QUICK = json.loads((Path(__file__).parent / "data" / "bench_quick.json").read_text())


def test_percentiles_are_nearest_rank_in_milliseconds():
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile_ms(samples, 50) == 50.0
    assert percentile_ms(samples, 99) == 99.0
    assert percentile_ms([0.002], 99) == 2.0
    assert percentile_ms([0.003, 0.001, 0.002], 50) == 2.0


def _run(ready_s: float) -> dict:
    return {"ready_s": ready_s, "phases": {"sbatch_s": 0.5}}


def test_startup_rows_give_ratios_to_the_manual_recipe_and_keep_errors():
    sides = {
        "nodetunnel_runs": [_run(4.0), _run(5.0), _run(6.0)],
        "manual_runs": [_run(5.0), _run(6.0), _run(7.0)],
        "jupyter_forward_runs": [
            {"ready_s": None, "error": "it failed"},
            {"ready_s": None, "error": "it failed"},
        ],
    }
    rows = startup_rows(sides)
    assert rows["nodetunnel"]["median"] == 5.0
    assert rows["nodetunnel"]["ratio_to_manual"] == round(5 / 6, 3)
    assert rows["manual"]["ratio_to_manual"] == 1.0
    assert rows["jupyter_forward"] == {"n": 0, "errors": ["it failed"], "ratio_to_manual": None}
    assert rows["manual_phases"]["sbatch_s"]["median"] == 0.5


def test_the_table_shows_every_part_and_the_targets():
    text = render_table(QUICK)
    for heading in ("1. startup", "2. SSH logins", "3. scheduler load", "4. data path",
                    "5. recovery", "6. footprint", "7. command -> first 200 per app"):  # fmt: skip
        assert heading in text
    assert "target: nodetunnel <= 0.90x manual" in text
    assert "jupyter-forward --launch-command sbatch" in text


def test_the_table_reports_a_jupyter_forward_that_could_not_be_made_to_work():
    data = copy.deepcopy(QUICK)
    data["startup"]["side_by_side"]["jupyter_forward"] = {
        "n": 0, "errors": ["jupyter-forward exited with code 1"], "ratio_to_manual": None,
    }  # fmt: skip
    text = render_table(data)
    assert "jupyter-forward failed: jupyter-forward exited with code 1" in text
