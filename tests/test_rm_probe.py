"""experiments/rm_probe.py: its figures against slow loops, and one run on the shared smoke workdir."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

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


def test_best_of_k_curve_matches_disjoint_groups():
    rng = np.random.default_rng(1)
    gold, rm = rng.random((6, 8)), rng.standard_normal((6, 8))
    curve = rm_probe.probe(gold, rm, np.ones((6, 8)))["best_of_k"]
    assert list(curve) == [1, 2, 4, 8]
    for k, value in curve.items():  # the RM's pick in each disjoint group of k samples, averaged
        picks = [gold[i][g * k + max(range(k), key=lambda j: rm[i][g * k + j])] for i in range(6) for g in range(8 // k)]
        assert np.isclose(value, np.mean(picks))
    assert np.isclose(curve[1], gold.mean()) and np.isclose(curve[8], rm_probe.probe(gold, rm, np.ones((6, 8)))["best_of_n"])


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


def test_samples_mode_rescores_every_sample_of_a_dump(tmp_path_factory, tmp_path):
    from instructgpt_jax import checkpoint, config_base, eval_rm, evaluate, reward
    from instructgpt_jax.tokenizer import make_tokenizer

    workdir, _, _ = smoke_workdir(tmp_path_factory)
    dump, again = tmp_path / "dump.jsonl", tmp_path / "again.jsonl"
    rm_probe.main(["--workdir", str(workdir), "--n", "2", "--prompts", "16", "--max_new_tokens", "8", "--dump", str(dump)])
    rm_probe.main(["--workdir", str(workdir), "--samples", str(dump), "--dump", str(again)])
    first = [json.loads(line) for line in dump.read_text().splitlines()]
    second = [json.loads(line) for line in again.read_text().splitlines()]
    assert len(first) == len(second) == 32
    for a, b in zip(first, second):  # the same prompt, sample, response and gold, in the same order
        assert {k: a[k] for k in ("prompt", "sample", "response", "gold", "length")} == \
               {k: b[k] for k in ("prompt", "sample", "response", "gold", "length")}
    # Each rescored sample is the RM's score of its own text (scored one at a time here: no batch to mix up).
    mesh, shardings = checkpoint.mesh_and_shardings(config_base.mesh_config())
    _, graphdef, params, meta = checkpoint.load_model(str(workdir / "rm"), shardings=shardings)
    norm, tok = reward.load_reward_norm(str(workdir / "rm")), make_tokenizer(meta["tokenizer"])  # the RM's own
    ec = evaluate.eval_config(config_base.load_config("configs/eval.py:smoke"))
    for b in second[:6]:
        alone = eval_rm.rm_text_scores(graphdef, params, norm, tok, [(b["prompt"], b["response"])], ec, mesh)[0]
        assert np.isclose(b["rm"], alone, atol=1e-4)

    lines = dump.read_text().splitlines()
    (tmp_path / "short.jsonl").write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # prompt 0's sample 1 missing
    with pytest.raises(SystemExit, match=r"short.jsonl: prompts have different numbers of samples \[1, 2\]"):
        rm_probe.main(["--workdir", str(workdir), "--samples", str(tmp_path / "short.jsonl")])
    (tmp_path / "gap.jsonl").write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # prompt 1's sample 0 missing
    with pytest.raises(SystemExit, match="gap.jsonl:3: sample 1 does not follow sample 1 of the same prompt"):
        rm_probe.main(["--workdir", str(workdir), "--samples", str(tmp_path / "gap.jsonl")])


def test_ensemble_is_the_members_mean_less_their_spread():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((3, 4, 5))
    for coef in (0.0, 1.5):
        got = rm_probe.ensemble(scores, coef)
        for i in range(4):
            for j in range(5):
                member = [scores[m][i][j] for m in range(3)]
                mean = sum(member) / 3
                std = (sum((x - mean) ** 2 for x in member) / 3) ** 0.5
                assert np.isclose(got[i][j], mean - coef * std)


def test_ensemble_mode_scores_with_every_member(tmp_path_factory, tmp_path, capsys):
    workdir, _, _ = smoke_workdir(tmp_path_factory)
    dump, single, double = (tmp_path / f"{n}.jsonl" for n in ("dump", "single", "double"))
    rm_probe.main(["--workdir", str(workdir), "--n", "2", "--prompts", "16", "--max_new_tokens", "8", "--dump", str(dump)])
    rm_probe.main(["--workdir", str(workdir), "--samples", str(dump), "--dump", str(single)])
    # The same RM twice: its members agree, so their mean (with or without the spread penalty) is its score.
    rm = str(workdir / "rm")
    capsys.readouterr()
    rm_probe.main(["--workdir", str(workdir), "--samples", str(dump), "--rm", f"{rm},{rm}", "--ensemble_std", "1",
                   "--dump", str(double)])
    assert capsys.readouterr().out.count(f"member {rm}: best-of-k 1:") == 2
    one = [json.loads(line)["rm"] for line in single.read_text().splitlines()]
    two = [json.loads(line)["rm"] for line in double.read_text().splitlines()]
    assert len(one) == 32 and np.allclose(one, two, atol=1e-6)
