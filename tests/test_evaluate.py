"""Evaluation: KL and RM scores against a slow unpadded reference, and a full `evaluate.run` over a workdir of
random nano policies (identical policies must give identical figures and zero KL; every summary field is there;
the paired gold difference and the Figure 4 metadata equal a recomputation from W/eval/*.jsonl).
"""

import collections
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from instructgpt_jax import checkpoint, config_base, eval_rm, evaluate
from instructgpt_jax.presets import get_preset
from instructgpt_jax.data.batching import left_pad
from instructgpt_jax.sampling import SampleConfig, make_generate
from instructgpt_jax.tokenizer import make_tokenizer

from eval_workdir import SPLITS, eval_section, evaluated_workdir, records as _records  # noqa: E402

POLICY_FIELDS = ("gold", "rm_score", "win_rate", "kl", "pretrain_loss", "alignment_tax", "length", "refusal_rate",
                 "benign_refusal_rate", "gold_heldout", "rm_score_heldout", "win_rate_heldout", "gold_by_family",
                 "gold_heldout_by_family", "win_rate_by_family", "win_rate_heldout_by_family", "kl_heldout",
                 "length_heldout", "gold_diff", "gold_diff_ci95", "win_rate_ci95", "gold_diff_heldout",
                 "gold_diff_heldout_ci95", "win_rate_heldout_ci95", "metadata", "metadata_heldout", "gold_by_kind",
                 "gold_heldout_by_kind", "gold_vs_baseline", "gold_vs_baseline_ci95", "gold_vs_baseline_by_family",
                 "gold_vs_baseline_heldout", "gold_vs_baseline_heldout_ci95", "gold_vs_baseline_heldout_by_family")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return evaluated_workdir(tmp_path_factory)


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
        figures = eval_rm.rm_accuracy(world, rm_graphdef, rm_params, norm, make_tokenizer("byte"), rows, ec, mesh,
                                       samples)
        again = eval_rm.rm_accuracy(world, rm_graphdef, rm_params, norm, make_tokenizer("byte"), rows, ec, mesh,
                                     samples)
    assert figures["prompts_per_k"] == {"2": 3, "4": 2}
    assert figures == again  # labelers and their noise are seeded by ec.seed
    assert all(0.0 <= a <= 1.0 for a in figures["accuracy_by_k"].values())


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


