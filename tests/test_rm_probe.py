"""experiments/rm_probe.py: its figures against slow loops, and one run on the shared smoke workdir."""

import importlib.util
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_pipeline import smoke_workdir  # noqa: E402  the same session workdir: run once, then skipped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("rm_probe", os.path.join(ROOT, "experiments", "rm_probe.py"))
rm_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rm_probe)


def test_probe_figures_match_loops():
    rng = np.random.default_rng(0)
    gold, rm, length = rng.random((7, 5)), rng.standard_normal((7, 5)), rng.integers(1, 40, (7, 5)).astype(float)
    got = rm_probe.probe(gold, rm, length)
    best = [gold[i][max(range(5), key=lambda j: rm[i][j])] for i in range(7)]
    assert np.isclose(got["best_of_n"], np.mean(best)) and np.isclose(got["oracle"], np.mean([max(r) for r in gold]))

    def corr(a, b):  # pooled Pearson correlation of the per-prompt deviations, element by element
        da = [a[i][j] - sum(a[i]) / 5 for i in range(7) for j in range(5)]
        db = [b[i][j] - sum(b[i]) / 5 for i in range(7) for j in range(5)]
        return sum(x * y for x, y in zip(da, db)) / (sum(x * x for x in da) * sum(y * y for y in db)) ** 0.5

    assert np.isclose(got["corr_rm_gold"], corr(rm, gold)) and np.isclose(got["corr_rm_length"], corr(rm, length))
    # A prompt's offset does not count: adding per-prompt constants changes nothing.
    assert np.isclose(rm_probe.within_corr(rm + np.arange(7)[:, None], gold), got["corr_rm_gold"])
    assert np.isclose(rm_probe.within_corr(gold, gold), 1.0)


def test_probe_runs_on_a_pipeline_workdir(tmp_path_factory, tmp_path, capsys):
    workdir, _, _ = smoke_workdir(tmp_path_factory)
    out = tmp_path / "probe.json"
    rm_probe.main(["--workdir", str(workdir), "--n", "2", "--prompts", "32", "--max_new_tokens", "8", "--out", str(out)])
    figures = json.loads(out.read_text())
    assert figures["n"] == 2 and figures["all"]["prompts"] == 32
    assert 0.0 <= figures["all"]["gold"] <= figures["all"]["oracle"] <= 1.0
    assert figures["all"]["best_of_n"] <= figures["all"]["oracle"]
    assert sum(f["prompts"] for f in figures["by_family"].values()) == 32
    assert "best-of-2" in capsys.readouterr().out
