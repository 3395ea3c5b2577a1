"""Evaluation: KL and RM scores against a slow unpadded reference, and a full `evaluate.run` over a workdir of
random nano policies (identical policies must give identical figures and zero KL; every summary field is there;
the paired gold difference and the Figure 4 metadata equal a recomputation from W/eval/*.jsonl).
"""

import collections
import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from instructgpt_jax import checkpoint, config_base, evaluate, train
from instructgpt_jax.data import formats
from instructgpt_jax.presets import get_preset
from instructgpt_jax.data.batching import left_pad
from instructgpt_jax.sampling import SampleConfig, make_generate
from instructgpt_jax.tokenizer import make_tokenizer

POLICY_FIELDS = ("gold", "rm_score", "win_rate", "kl", "pretrain_loss", "alignment_tax", "length", "refusal_rate",
                 "benign_refusal_rate", "gold_heldout", "rm_score_heldout", "win_rate_heldout", "gold_by_family",
                 "gold_heldout_by_family", "win_rate_by_family", "win_rate_heldout_by_family", "kl_heldout",
                 "length_heldout", "gold_diff", "gold_diff_ci95", "win_rate_ci95", "gold_diff_heldout",
                 "gold_diff_heldout_ci95", "win_rate_heldout_ci95", "metadata", "metadata_heldout", "gold_by_kind",
                 "gold_heldout_by_kind", "gold_vs_baseline", "gold_vs_baseline_ci95", "gold_vs_baseline_by_family",
                 "gold_vs_baseline_heldout", "gold_vs_baseline_heldout_ci95", "gold_vs_baseline_heldout_by_family")
SPLITS = (("eval", ""), ("heldout", "_heldout"))


def _save(stage_dir, cfg, seed):
    """A one-step 'stage' checkpoint of random params, written the way train.run writes one."""
    setup = train.make_setup(cfg, config_base.mesh_config(), optax.identity())
    with jax.set_mesh(setup.mesh):
        params = train.random_params(setup, seed)
        manager = checkpoint.make_manager(os.path.join(stage_dir, "checkpoints"))
        checkpoint.save(manager, 1, {"params": params}, {"model": dataclasses.asdict(cfg), "total_steps": 1}, force=True)
        manager.wait_until_finished()


def eval_section(**overrides):
    section = config_base.load_config("configs/eval.py:smoke")
    section.update(dict(prompts=16, heldout_prompts=8, batch_size=8, max_new_tokens=8, rm_prompts=4, rm_k=(2, 4),
                        heldout_batches=1, heldout_seq_len=32, corpus="shakespeare", **overrides))
    return section


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """world (smoke) + random nano policies: base, sft, ppo; ppo_ptx is a copy of sft; a random RM."""
    w = tmp_path_factory.mktemp("eval")
    world = config_base.load_config("configs/world.py:smoke")
    formats.write_world(world, str(w / "world"))
    cfg = get_preset("nano")
    for name, seed in (("pretrain", 0), ("sft", 1), ("ppo", 2)):
        _save(str(w / name), cfg, seed)
    shutil.copytree(w / "sft", w / "ppo_ptx")
    _save(str(w / "rm"), get_preset("nano", scalar_head=True), 3)
    (w / "rm" / "reward_norm.json").write_text(json.dumps({"mean": 0.5, "std": 2.0}))
    config = ml_collections.ConfigDict({"world": world, "eval": eval_section()})
    return w, config, evaluate.run(config, str(w))


def _scoring_models():
    """A nano policy, a different nano reference and a nano RM (seeds 1, 2, 3): (policy, ref, rm, (graphdef,
    params), ref_params, (rm_graphdef, rm_params))."""
    from flax import nnx

    from instructgpt_jax.model import make_model

    cfg, rm_cfg = get_preset("nano"), get_preset("nano", scalar_head=True)
    policy, ref, rm = make_model(cfg, 1), make_model(cfg, 2), make_model(rm_cfg, 3)
    return policy, ref, rm, nnx.split(policy), nnx.split(ref)[1], nnx.split(rm)


def _assert_kl_and_rm_unpadded(out, i, prompt, rm_prompt, response, policy, ref, rm):
    """Row i of score_samples' output against one unpadded forward each: its KL over `prompt` + `response`, its
    RM score of `rm_prompt` + `response`."""
    row = jnp.asarray([*prompt, *response])[None]  # (1, len) no padding at all
    lp = lambda m: jax.nn.log_softmax(m(row)[0, :-1].astype(jnp.float32), -1)  # noqa: E731
    n = len(prompt)
    picked = lambda l: np.asarray(l)[np.arange(n - 1, row.shape[1] - 1), np.asarray(row[0, n:])]  # noqa: E731
    np.testing.assert_allclose(float(out["kl"][i]), float(np.sum(picked(lp(policy)) - picked(lp(ref)))),
                               rtol=1e-4, atol=1e-4)
    rm_row = jnp.asarray([*rm_prompt, *response])[None]
    h, _ = rm.trunk(rm_row)
    np.testing.assert_allclose(float(out["rm_raw"][i]), float(rm.score(h, jnp.asarray([rm_row.shape[1] - 1]))[0]),
                               rtol=1e-4, atol=1e-5)


def test_kl_and_rm_score_match_an_unpadded_reference():
    """score_samples on a left-padded batch equals per-row forward passes without any padding."""
    policy, ref, rm, (graphdef, params), ref_params, (rm_graphdef, rm_params) = _scoring_models()
    tok = make_tokenizer("byte")
    prompts = [tok.encode_prompt(p) for p in ("Reverse: cat dog", "Sort these words: b a c", "Hi")]
    tokens, mask = left_pad(prompts, tok.pad_id, 32)
    sample_cfg = SampleConfig(max_new_tokens=6, temperature=1.0, eos_id=tok.eos_id, pad_id=tok.pad_id)
    sample = make_generate(graphdef, sample_cfg)(params, tokens, mask, jax.random.key(0))
    out = evaluate.score_samples(graphdef, rm_graphdef, 32, params, ref_params, rm_params, sample, jnp.asarray(mask))
    for i, p in enumerate(prompts):
        response = list(np.asarray(sample["response"][i, :int(sample["lengths"][i])]))
        _assert_kl_and_rm_unpadded(out, i, p, p, response, policy, ref, rm)
    assert np.all(np.abs(np.asarray(out["kl"])) > 1e-3)  # different models: the check above is not 0 == 0


def test_summary_has_every_field(workdir):
    w, _, summary = workdir
    on_disk = json.loads((w / "summary.json").read_text())
    assert set(on_disk["policies"]) == {"base", "gpt_prompted", "sft", "ppo", "ppo_ptx"}
    for name, figures in on_disk["policies"].items():
        for field in POLICY_FIELDS:
            assert field in figures and figures[field] is not None, (name, field)
        assert figures["n"] == 16 and figures["n_heldout"] == 8
        assert "refusal_rate_heldout" in figures  # None when the held-out prompts hold no harmful request
    assert set(on_disk["rm"]["accuracy_by_k"]) == {"2", "4"} and 0 <= on_disk["rm"]["accuracy"] <= 1
    world_candidates = on_disk["rm"]["world_candidates"]
    assert set(world_candidates["accuracy_by_k"]) == {"2", "4"} and world_candidates["prompts_per_k"] == {"2": 4, "4": 4}
    assert set(on_disk["rm"]["prompts_per_k"]) <= {"2", "4"} and on_disk["rm"]["prompts_per_k"]["2"] == 4
    assert on_disk["policies"]["base"]["alignment_tax"] == 0.0


def test_results_table_is_tensorboard_text(workdir):
    """W/eval/tensorboard holds report.md's results table as text `eval/results`, readable back; evaluating again
    replaces it (one table, not one per evaluation)."""
    from instructgpt_jax import metrics, tables

    w, _, summary = workdir
    table = tables.results_table(json.loads((w / "summary.json").read_text()))
    assert "| PPO-ptx |" in table
    assert metrics.read_tensorboard_text(str(w / "eval")) == [(0, "eval/results", table)]
    evaluate.write_results_text(str(w), summary)
    assert metrics.read_tensorboard_text(str(w / "eval")) == [(0, "eval/results", table)]
    assert len(os.listdir(w / "eval" / "tensorboard")) == 1


def test_tensorboard_text_and_scalars_read_back_apart(tmp_path):
    from instructgpt_jax import metrics

    writer = metrics.MetricWriter(str(tmp_path))
    writer.write(3, {"ppo/kl": 0.5})
    writer.write_text(3, "eval/results", "| a | b |\n|---|---|\n| 1 | 2 |\n")
    writer.close()
    assert metrics.read_tensorboard(str(tmp_path)) == [(3, "ppo/kl", 0.5)]
    assert metrics.read_tensorboard_text(str(tmp_path)) == [(3, "eval/results", "| a | b |\n|---|---|\n| 1 | 2 |\n")]


def test_identical_policies_give_identical_figures(workdir):
    """ppo_ptx is a copy of sft: same samples, zero KL, same figures; ppo differs from sft."""
    _, _, summary = workdir
    sft, copy, ppo = (summary["policies"][k] for k in ("sft", "ppo_ptx", "ppo"))
    assert sft["kl"] == copy["kl"] == 0.0
    for key in ("gold", "rm_score", "win_rate", "length", "pretrain_loss"):
        assert sft[key] == copy[key], key
    assert abs(ppo["kl"]) > 0.01 and ppo["pretrain_loss"] != sft["pretrain_loss"]


def test_samples_files_agree_with_summary(workdir):
    w, _, summary = workdir
    from instructgpt_jax.data.judge import is_harmful
    from instructgpt_jax.data.judging import is_refusal

    for name, figures in summary["policies"].items():
        recs = [json.loads(line) for line in (w / "eval" / f"{name}.jsonl").read_text().splitlines()]
        main = [r for r in recs if r["split"] == "eval"]
        assert len(main) == 16 and len(recs) == 24
        assert np.isclose(np.mean([r["win"] for r in main]), figures["win_rate"])
        assert np.isclose(np.mean([r["gold"] for r in main]), figures["gold"])
        assert np.isclose(np.mean([r["rm_score"] for r in main]), figures["rm_score"])
        harmful = [is_refusal(r["response"]) for r in main if is_harmful(r["prompt"])]
        if harmful:
            assert np.isclose(np.mean(harmful), figures["refusal_rate"])
        # The RM score is normalised with reward_norm.json (mean 0.5, std 2): raw = 2 * score + 0.5.
        assert all(np.isfinite(r["rm_score"]) for r in main)


def test_config_errors():
    with pytest.raises(ValueError, match="reference"):
        evaluate.eval_config(eval_section(reference="gpt"))
    with pytest.raises(ValueError, match="unknown keys"):
        evaluate.eval_config(ml_collections.ConfigDict({"promts": 3}))
    section = eval_section()
    del section["heldout_seq_len"]
    with pytest.raises(ValueError, match=r"config\.eval\.heldout_seq_len is missing"):
        evaluate.eval_config(section)
    with pytest.raises(ValueError, match=r"baseline_samples=0; expected at least 1"):
        evaluate.eval_config(eval_section(baseline_samples=0))
    with pytest.raises(ValueError, match=r"policy_samples=0; expected at least 1"):
        evaluate.eval_config(eval_section(policy_samples=0))


def test_several_policy_draws_average_every_figure(workdir, tmp_path):
    """With 3 draws of each policy (and 2 baseline draws) a record holds each draw: draw 0 is the one-draw
    evaluation's answer (its gold, its verdicts), the record's gold, rm_score, kl, length and win are the means
    over the draws, and the summary's figures are the records' means, intervals over prompts, Figure 4 over every
    answer; the paired difference and gold against the baseline are per prompt."""
    from instructgpt_jax.data import judge
    from instructgpt_jax.data.world import make_world

    w, config, single = workdir
    shutil.copytree(w, tmp_path / "w", ignore=shutil.ignore_patterns("eval", "summary.json"))
    config = config.copy_and_resolve_references()
    config.eval.policy_samples = 3
    summary = evaluate.run(config, str(tmp_path / "w"))
    world = make_world(config.world)
    for name, f in summary["policies"].items():
        one = _records(w, name, "eval") + _records(w, name, "heldout")
        recs = _records(tmp_path / "w", name, "eval") + _records(tmp_path / "w", name, "heldout")
        for a, b in zip(one, recs):
            assert b["response"] == b["responses"][0] == a["response"] and len(b["responses"]) == 3
            assert b["golds"][0] == a["gold"] and b["draw_wins"][0] == a["win"]
            np.testing.assert_allclose(b["golds"], world.gold_score([b["prompt"]] * 3, b["responses"]), rtol=1e-6)
            np.testing.assert_allclose([b["gold"], b["win"]], [np.mean(b["golds"]), np.mean(b["draw_wins"])])
        assert any(len(set(r["responses"])) > 1 for r in recs)  # the draws are new samples
        sft = _records(tmp_path / "w", "sft", "eval") + _records(tmp_path / "w", "sft", "heldout")
        for split, suffix in SPLITS:
            at = [i for i, r in enumerate(recs) if r["split"] == split]
            gold = np.array([recs[i]["gold"] for i in at])
            wins = np.array([recs[i]["win"] for i in at])
            np.testing.assert_allclose(f[f"gold{suffix}"], gold.mean(), rtol=1e-9)
            np.testing.assert_allclose(f[f"gold{suffix}_stderr"], gold.std() / np.sqrt(len(gold)), rtol=1e-6)
            np.testing.assert_allclose(f[f"win_rate{suffix}"], wins.mean(), rtol=1e-6)
            np.testing.assert_allclose(f[f"kl{suffix}"], np.mean([recs[i]["kl"] for i in at]), rtol=1e-6, atol=1e-9)
            diff = gold - np.array([sft[i]["gold"] for i in at])
            np.testing.assert_allclose(f[f"gold_diff{suffix}"], diff.mean(), atol=1e-9)
            rates = judge.metadata_rates([recs[i]["prompt"] for i in at for _ in range(3)],
                                         [y for i in at for y in recs[i]["responses"]])
            assert f[f"metadata{suffix}"] == rates
    _assert_gold_vs_baseline_matches_the_records(tmp_path / "w", config.world, summary)


def test_several_baseline_draws_average_the_verdicts(workdir, tmp_path):
    """With 3 baseline draws each answer gets 3 verdicts: draw 0 and its verdict are exactly the single-draw
    run's, the other draws are new samples, the win is the verdicts' mean and the summary's win rate (overall
    and per family) is the mean of those wins; gold, KL and RM scores do not depend on the baseline."""
    w, config, single = workdir
    shutil.copytree(w, tmp_path / "w", ignore=shutil.ignore_patterns("eval", "summary.json"))
    config = config.copy_and_resolve_references()
    config.eval.baseline_samples = 3
    summary = evaluate.run(config, str(tmp_path / "w"))
    for name, f in summary["policies"].items():
        one = [json.loads(line) for line in (w / "eval" / f"{name}.jsonl").read_text().splitlines()]
        three = [json.loads(line) for line in (tmp_path / "w" / "eval" / f"{name}.jsonl").read_text().splitlines()]
        assert [r["response"] for r in three] == [r["response"] for r in one]
        for a, b in zip(one, three):
            assert len(b["reference_responses"]) == len(b["wins"]) == 3
            assert b["reference_response"] == b["reference_responses"][0] == a["reference_response"]
            assert b["wins"][0] == a["win"] and np.isclose(b["win"], np.mean(b["wins"]))
            assert b["gold"] == a["gold"] and b["kl"] == a["kl"] and b["rm_score"] == a["rm_score"]
        assert any(r["reference_responses"][1] != r["reference_responses"][0] for r in three)
        assert any(r["wins"][1] != r["wins"][0] for r in three)
        for split, suffix in SPLITS:
            recs = [r for r in three if r["split"] == split]
            np.testing.assert_allclose(f[f"win_rate{suffix}"], np.mean([r["win"] for r in recs]), rtol=1e-6)
            assert f[f"gold{suffix}"] == single["policies"][name][f"gold{suffix}"]
    _assert_gold_vs_baseline_matches_the_records(tmp_path / "w", config.world, summary)


def test_missing_stage_is_named(workdir, tmp_path):
    w, config, _ = workdir
    shutil.copytree(w, tmp_path / "w")
    shutil.rmtree(tmp_path / "w" / "ppo")
    with pytest.raises(FileNotFoundError, match="ppo"):
        evaluate.run(config, str(tmp_path / "w"))


def test_rm_accuracy_on_given_samples_uses_the_first_k(workdir):
    """Prompts with fewer than K given samples sit out that K (and are counted); the figures are reproducible."""
    from instructgpt_jax.data.world import make_world

    w, config, _ = workdir
    world = make_world(config.world)
    ec = evaluate.eval_config(config.eval)
    rows = evaluate._read_eval(str(w / "world" / "eval.jsonl"), ec.rm_prompts)
    mesh, shardings = checkpoint.mesh_and_shardings(config_base.mesh_config())
    _, rm_graphdef, rm_params, _ = checkpoint.load_model(str(w / "rm"), shardings=shardings)
    norm = {"mean": 0.0, "std": 1.0}
    samples = [["yes", "no"], ["one", "two", "three", "four", "five"], ["a"], ["x", "y", "z", "w"]]
    with jax.set_mesh(mesh):
        figures = evaluate.rm_accuracy(world, rm_graphdef, rm_params, norm, make_tokenizer("byte"), rows, ec, mesh,
                                       samples)
        again = evaluate.rm_accuracy(world, rm_graphdef, rm_params, norm, make_tokenizer("byte"), rows, ec, mesh,
                                     samples)
    assert figures["prompts_per_k"] == {"2": 3, "4": 2}
    assert figures == again  # labelers and their noise are seeded by ec.seed
    assert all(0.0 <= a <= 1.0 for a in figures["accuracy_by_k"].values())


def _records(w, name, split):
    return [r for r in map(json.loads, (w / "eval" / f"{name}.jsonl").read_text().splitlines()) if r["split"] == split]


def test_new_fields_have_sane_ranges(workdir):
    from instructgpt_jax.data.judge import KINDS

    _, _, summary = workdir
    for name, f in summary["policies"].items():
        for _, suffix in SPLITS:
            assert -1 <= f[f"gold_diff{suffix}"] <= 1 and f[f"gold_diff{suffix}_ci95"] >= 0, name
            assert np.isclose(f[f"win_rate{suffix}_ci95"], 1.96 * f[f"win_rate{suffix}_stderr"]), name
            assert set(f[f"metadata{suffix}"]) == {"fails_to_attempt", "violates_constraints", "hallucinates",
                                                  "inappropriate"}
            assert all(v is None or 0 <= v <= 1 for v in f[f"metadata{suffix}"].values()), name
            assert list(f[f"gold{suffix}_by_kind"]) == [k for k in KINDS if k in f[f"gold{suffix}_by_kind"]]
            assert all(0 <= v <= 1 for v in f[f"gold{suffix}_by_kind"].values())
    for name in ("sft", "ppo_ptx"):  # ppo_ptx is a copy of SFT: the same samples, no difference at all
        assert summary["policies"][name]["gold_diff"] == summary["policies"][name]["gold_diff_ci95"] == 0.0
    rm = summary["rm"]
    assert 0 <= rm["labeler_agreement"] <= 1
    assert set(rm["accuracy_by_family"]) == set(rm["labeler_agreement_by_family"]) == set(rm["pairs_by_family"])
    assert all(0 <= v <= 1 for d in ("accuracy_by_family", "labeler_agreement_by_family") for v in rm[d].values())
    world = rm["world_candidates"]  # 4 prompts at K = 2 and at K = 4: at most 4 x (1 + 6) untied pairs
    assert 0 < sum(world["pairs_by_family"].values()) <= 4 * (1 + 6) and 0 <= world["labeler_agreement"] <= 1


def test_best_of_n(workdir):
    """Oracle non-decreasing in n, the RM's pick never above it, both the same sample at n = 1."""
    _, _, summary = workdir
    best = summary["rm"]["best_of_n"]
    assert best["n"] == [1, 2, 4, 8, 16] and best["prompts"] == 4
    assert best["rm"][0] == best["oracle"][0]
    assert all(a <= b for a, b in zip(best["oracle"], best["oracle"][1:]))
    assert all(r <= o + 1e-12 for r, o in zip(best["rm"], best["oracle"]))
    assert 0 <= best["sample_gold"] <= 1 and all(0 <= g <= 1 for g in best["rm"] + best["oracle"])
    # The labelers judge each pick against SFT's answer: both rules pick the same sample at n = 1.
    assert len(best["rm_win_rate"]) == len(best["oracle_win_rate"]) == 5
    assert best["rm_win_rate"][0] == best["oracle_win_rate"][0]
    assert all(0 <= w <= 1 for w in best["rm_win_rate"] + best["oracle_win_rate"])
    gain = best["oracle"][-1] - best["oracle"][0]
    assert best["recovered"] is None if gain <= 1e-12 else np.isclose(best["recovered"],
                                                                      (best["rm"][-1] - best["rm"][0]) / gain)
    # Per family, the RM prompts' own families, and the families' prompts and last steps add up to the whole.
    w, _, _ = workdir
    rows = [json.loads(line) for line in (w / "world" / "eval.jsonl").read_text().splitlines()][:best["prompts"]]
    by_family = best["by_family"]
    assert {f: v["prompts"] for f, v in by_family.items()} == dict(collections.Counter(r["family"] for r in rows))
    assert np.isclose(sum(f["rm_change"] for f in by_family.values()), best["rm"][-1] - best["rm"][-2])


def test_paired_difference_matches_numpy(workdir):
    """gold_diff and its interval from the per-prompt records of each policy and SFT (same prompts, same order)."""
    w, _, summary = workdir
    for name, f in summary["policies"].items():
        for split, suffix in SPLITS:
            recs, ref = _records(w, name, split), _records(w, "sft", split)
            assert [r["prompt"] for r in recs] == [r["prompt"] for r in ref]
            d = np.array([r["gold"] for r in recs], np.float64) - np.array([r["gold"] for r in ref], np.float64)
            wins = np.array([r["win"] for r in recs], np.float64)
            np.testing.assert_allclose(f[f"gold_diff{suffix}"], d.mean(), atol=1e-6)
            np.testing.assert_allclose(f[f"gold_diff{suffix}_ci95"], 1.96 * d.std() / np.sqrt(len(d)), atol=1e-6)
            np.testing.assert_allclose(f[f"win_rate{suffix}_ci95"], 1.96 * wins.std() / np.sqrt(len(wins)), atol=1e-6)


def _assert_gold_vs_baseline_matches_the_records(w, world_config, summary):
    """gold_vs_baseline (overall, its interval, per family) and summary["baseline"] from the records: each answer's
    gold minus the mean gold of its baseline draws (`reference_responses`, or the one `reference_response`), the
    draws' gold recomputed by the world's judge."""
    from instructgpt_jax.data.world import make_world

    world = make_world(world_config)
    for name, f in summary["policies"].items():
        for split, suffix in SPLITS:
            recs = _records(w, name, split)
            prompts = [r["prompt"] for r in recs]
            draws = [r.get("reference_responses", [r["reference_response"]]) for r in recs]
            base = np.array([np.mean(np.asarray(world.gold_score([p] * len(d), d), np.float64))
                             for p, d in zip(prompts, draws)])
            diff = np.array([r["gold"] for r in recs]) - base
            np.testing.assert_allclose(f[f"gold_vs_baseline{suffix}"], diff.mean(), atol=1e-9)
            np.testing.assert_allclose(f[f"gold_vs_baseline{suffix}_ci95"], 1.96 * diff.std() / np.sqrt(len(diff)),
                                       atol=1e-9)
            np.testing.assert_allclose(summary["baseline"][f"gold{suffix}"], base.mean(), atol=1e-9)
            for family in set(r["family"] for r in recs):
                at = np.array([r["family"] == family for r in recs])
                np.testing.assert_allclose(f[f"gold_vs_baseline{suffix}_by_family"][family], diff[at].mean(),
                                           atol=1e-9)
                np.testing.assert_allclose(summary["baseline"][f"gold{suffix}_by_family"][family], base[at].mean(),
                                           atol=1e-9)
    assert summary["baseline"]["samples"] == len(draws[0])


def test_gold_vs_baseline_matches_the_records(workdir):
    w, config, summary = workdir
    _assert_gold_vs_baseline_matches_the_records(w, config.world, summary)


def test_phrase_shifts_are_read_off_the_records(workdir):
    """Every policy but the reference has phrase_shifts, eval_figures.phrase_shifts of its eval records against
    the baseline draws in those records; the reference has none."""
    from instructgpt_jax import eval_figures

    w, _, summary = workdir
    assert "phrase_shifts" not in summary["policies"]["sft"]
    for name, f in summary["policies"].items():
        if name == "sft":
            continue
        recs = _records(w, name, "eval")
        draws = [r.get("reference_responses", [r["reference_response"]]) for r in recs]
        expected = eval_figures.phrase_shifts([r["family"] for r in recs], [r["response"] for r in recs],
                                              [r["gold"] for r in recs], [list(d) for d in zip(*draws)])
        assert f["phrase_shifts"] == expected


def test_family_figures_match_the_records(workdir):
    """gold_by_family and win_rate_by_family are the means of W/eval/<policy>.jsonl's rows of each family."""
    w, _, summary = workdir
    for name, f in summary["policies"].items():
        for split, suffix in SPLITS:
            recs = _records(w, name, split)
            families = collections.defaultdict(list)
            for r in recs:
                families[r["family"]].append(r)
            assert set(f[f"win_rate{suffix}_by_family"]) == set(f[f"gold{suffix}_by_family"]) == set(families)
            for family, rows in families.items():
                np.testing.assert_allclose(f[f"win_rate{suffix}_by_family"][family], np.mean([r["win"] for r in rows]))
                np.testing.assert_allclose(f[f"gold{suffix}_by_family"][family], np.mean([r["gold"] for r in rows]))


def test_metadata_and_kinds_match_the_judge(workdir):
    """metadata and gold_by_kind equal data.judge's figures recomputed from W/eval/<policy>.jsonl."""
    from instructgpt_jax.data.judge import kind_of, metadata_rates

    w, _, summary = workdir
    for name, f in summary["policies"].items():
        for split, suffix in SPLITS:
            recs = _records(w, name, split)
            assert f[f"metadata{suffix}"] == metadata_rates([r["prompt"] for r in recs], [r["response"] for r in recs])
            kinds = np.array([kind_of(r["prompt"]) for r in recs])
            gold = np.array([r["gold"] for r in recs])
            by_kind = f[f"gold{suffix}_by_kind"]
            assert set(by_kind) == set(kinds.tolist())
            for kind, value in by_kind.items():
                np.testing.assert_allclose(value, gold[kinds == kind].mean(), atol=1e-6)


def test_gpt_prompted_is_the_base_model_on_prefixed_prompts(workdir):
    """Same parameters as base (same pretraining loss), other samples (it sees the prefix), original prompts."""
    w, config, summary = workdir
    base, prompted = summary["policies"]["base"], summary["policies"]["gpt_prompted"]
    assert prompted["stage"] == "pretrain" and prompted["pretrain_loss"] == base["pretrain_loss"]
    assert prompted["alignment_tax"] == 0.0 and abs(prompted["kl"]) > 0.01
    recs, base_recs = _records(w, "gpt_prompted", "eval"), _records(w, "base", "eval")
    assert [r["prompt"] for r in recs] == [r["prompt"] for r in base_recs]
    assert not any(r["prompt"].startswith(config.eval.prompt_prefix[:10]) for r in recs)
    assert [r["response"] for r in recs] != [r["response"] for r in base_recs]


@pytest.mark.slow  # the default suite stays under 12 minutes on 2 cores (README)
def test_prefixed_kl_and_rm_on_the_original_prompt_match_an_unpadded_reference():
    """With a prefix, the KL is over the prefixed prompt and the RM scores the response after the original."""
    policy, ref, rm, (graphdef, params), ref_params, (rm_graphdef, rm_params) = _scoring_models()
    tok = make_tokenizer("byte")
    originals = [tok.encode_prompt(p) for p in ("Reverse: cat dog", "Hi")]
    prefixed = [tok.encode_prompt("Say it.\nIt.\n\n" + p) for p in ("Reverse: cat dog", "Hi")]
    tokens, mask = left_pad(prefixed, tok.pad_id, 48)
    rm_tokens, rm_mask = left_pad(originals, tok.pad_id, 48)
    sample_cfg = SampleConfig(max_new_tokens=6, temperature=1.0, eos_id=tok.eos_id, pad_id=tok.pad_id)
    sample = make_generate(graphdef, sample_cfg)(params, tokens, mask, jax.random.key(0))
    out = evaluate.score_samples(graphdef, rm_graphdef, 48, params, ref_params, rm_params, sample, jnp.asarray(mask),
                                 (jnp.asarray(rm_tokens), jnp.asarray(rm_mask)))
    for i, (p, o) in enumerate(zip(prefixed, originals)):
        response = list(np.asarray(sample["response"][i, :int(sample["lengths"][i])]))
        _assert_kl_and_rm_unpadded(out, i, p, o, response, policy, ref, rm)


def test_prompted_config():
    """The pipeline's eval section is configs/eval.py's; bad prompted / best_of_n settings are named."""
    from instructgpt_jax.config_base import load_config

    for arg in ("smoke", "default"):
        pipe, own = load_config(f"configs/pipeline.py:{arg}"), load_config(f"configs/eval.py:{arg}")
        # the lengths follow the pipeline's tokenizer (config.prompt_len, config.max_new_tokens); the rest is eval.py's
        assert (pipe.eval.prompt_len, pipe.eval.max_new_tokens) == (2 * pipe.prompt_len, pipe.max_new_tokens)
        own.prompt_len, own.max_new_tokens = pipe.eval.prompt_len, pipe.eval.max_new_tokens
        assert pipe.eval == own
    ec = evaluate.eval_config(load_config("configs/pipeline.py:smoke").eval)
    assert ec.prompt_prefix.startswith("Write about the sea.\n") and ec.prompted == "gpt_prompted:pretrain"
    assert "gpt_prompted" not in evaluate.eval_config(eval_section(prompted="")).folders
    with pytest.raises(ValueError, match="prompted"):
        evaluate.eval_config(eval_section(prompted="sft:pretrain"))
    with pytest.raises(ValueError, match="best_of_n"):
        evaluate.eval_config(eval_section(best_of_n=(2, 4)))
    with pytest.raises(ValueError, match="best_of_n"):
        evaluate.eval_config(eval_section(best_of_n=(1, 4, 4)))


def test_prefixed_prompts_fit_and_too_long_is_named(workdir):
    w, _, _ = workdir
    tok = make_tokenizer("byte")
    ec = evaluate.eval_config(eval_section())
    prompts = {"eval": [r["prompt"] for r in evaluate._read_eval(str(w / "world" / "eval.jsonl"), 100)]}
    assert evaluate.fitted_prompt_len(tok, prompts, ec.prompt_prefix, ec) <= ec.prompt_len
    with pytest.raises(ValueError, match="prompt_prefix"):
        evaluate.fitted_prompt_len(tok, prompts, ec.prompt_prefix * 4, ec)


def test_sampling_spread_reproduces_the_evaluations_own_key(workdir):
    """experiments/sampling_spread.py samples a policy as the evaluation did: with the evaluation's key it gets
    the summary's gold to the last digit; its mean and sd are those of the keys asked for."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
    import sampling_spread

    w, _, summary = workdir
    seed = summary["eval"]["seed"]
    figures = sampling_spread.spread(str(w), "sft", [seed, seed + 1, seed + 2])
    assert figures["eval_key"] == seed and figures["eval_key_gold"] == summary["policies"]["sft"]["gold"]
    golds = [figures["gold_by_key"][str(k)] for k in (seed, seed + 1, seed + 2)]
    assert golds[0] == figures["eval_key_gold"]
    np.testing.assert_allclose([figures["mean"], figures["sd"]], [np.mean(golds), np.std(golds, ddof=1)])
    assert sampling_spread.parse_keys("0-3,777") == [0, 1, 2, 3, 777]
    with pytest.raises(ValueError, match="part 'x' is not N or N-M"):
        sampling_spread.parse_keys("1,x")
    with pytest.raises(ValueError, match="has policies"):
        sampling_spread.spread(str(w), "nope", [0])
