"""Does a reward model see what the gold judge sees, on the policy's own samples? Best-of-n and correlations.

  python experiments/rm_probe.py --workdir runs/default                       # W/rm on W/sft's samples
  python experiments/rm_probe.py --workdir W --rm W2/rm --policy W/ppo --n 16 --prompts 256

Samples `n` responses (temperature 1) from the policy for each of the first `prompts` prompts of
W/world/eval.jsonl, scores them with the RM and the world's gold judge, and prints, overall and per family:
the mean gold of a sample, the gold of the RM's pick among the n (best-of-n), the gold of the best sample
(the oracle), and the within-prompt correlations RM-gold, RM-length and gold-length (each prompt's mean
removed first, so prompt difficulty does not count). PPO can only raise gold through what the RM ranks
correctly on these samples: an RM whose best-of-n gold is no better than the mean, or whose scores follow
length more than gold, will be over-optimised from the first iterations (docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def within_corr(a, b) -> float:
    """Pearson correlation of (prompts, n) arrays after removing each prompt's mean."""
    import numpy as np

    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def probe(gold, rm, length) -> dict:
    """Figures of (prompts, n) arrays of gold, RM score and response length."""
    import numpy as np

    rows = np.arange(len(gold))
    return {"prompts": len(gold), "gold": float(gold.mean()), "best_of_n": float(gold[rows, rm.argmax(1)].mean()),
            "oracle": float(gold.max(1).mean()), "corr_rm_gold": within_corr(rm, gold),
            "corr_rm_length": within_corr(rm, length), "corr_gold_length": within_corr(gold, length)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="pipeline workdir with world/, sft/ and rm/")
    p.add_argument("--rm", default="", help="RM stage folder (default W/rm)")
    p.add_argument("--policy", default="", help="policy stage folder (default W/sft)")
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--prompts", type=int, default=128, help="first prompts of W/world/eval.jsonl")
    p.add_argument("--max_new_tokens", type=int, default=48)
    p.add_argument("--out", default="", help="also write the figures as JSON here")
    p.add_argument("--dump", default="", help="also write every sample (prompt, family, response, gold, rm, "
                                              "length) as JSONL here, for reading what the RM picks")
    args = p.parse_args(argv)

    import jax
    import ml_collections
    import numpy as np

    from instructgpt_jax import checkpoint, reward
    from instructgpt_jax.config_base import mesh_config
    from instructgpt_jax.data.world import make_world
    from instructgpt_jax.evaluate import EvalConfig, _read_eval, mesh_and_shardings, sample_policy, score_samples
    from instructgpt_jax.sampling import SampleConfig, make_generate
    from instructgpt_jax.tokenizer import make_tokenizer

    w = args.workdir
    rm_dir, policy_dir = args.rm or os.path.join(w, "rm"), args.policy or os.path.join(w, "sft")
    config_path = os.path.join(w, "config.json")
    if not os.path.exists(config_path):
        raise SystemExit(f"{config_path}: no such file (expected a pipeline workdir)")
    with open(config_path) as f:
        world_cfg = json.load(f)["world"]
    world = make_world(ml_collections.ConfigDict(world_cfg))
    tokenizer = make_tokenizer(world_cfg.get("tokenizer", "byte"))
    rows = _read_eval(os.path.join(w, "world", "eval.jsonl"), args.prompts)
    prompts = [r["prompt"] for r in rows]
    families = np.array([r.get("family") or world.family_of(r["prompt"]) for r in rows])

    mesh, shardings = mesh_and_shardings(mesh_config())
    _, rm_graphdef, rm_params, _ = checkpoint.load_model(rm_dir, shardings=shardings)
    _, graphdef, params, _ = checkpoint.load_model(policy_dir, shardings=shardings)
    norm = reward.load_reward_norm(rm_dir)
    longest = max(len(tokenizer.encode_prompt(q)) for q in prompts)
    prompt_len = -(-longest // 16) * 16
    generate = make_generate(graphdef, SampleConfig(max_new_tokens=args.max_new_tokens, temperature=1.0,
                                                    eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id))
    score = jax.jit(lambda *a: score_samples(graphdef, rm_graphdef, prompt_len, *a))
    ec = EvalConfig(batch_size=32)
    gold, rm, length, texts = [], [], [], []
    with jax.set_mesh(mesh):
        for i in range(args.n):
            s = sample_policy(generate, score, params, params, rm_params, prompts, tokenizer, ec, mesh, 1000 + i,
                              prompt_len)
            gold.append(world.gold_score(prompts, s["response"]))
            rm.append((np.asarray(s["rm_raw"]) - norm["mean"]) / norm["std"])
            length.append(s["length"])
            texts.append(list(s["response"]))
            print(f"rm_probe: sample {i + 1}/{args.n}", file=sys.stderr)
    gold, rm, length = (np.asarray(x, np.float64).T for x in (gold, rm, length))
    out = {"rm": rm_dir, "policy": policy_dir, "n": args.n, "all": probe(gold, rm, length),
           "by_family": {f: probe(gold[families == f], rm[families == f], length[families == f])
                         for f in sorted(set(families))}}
    print(f"{'family':12s} {'prompts':>7s} {'gold':>6s} {'best-of-' + str(args.n):>10s} {'oracle':>6s} "
          f"{'RM~gold':>8s} {'RM~len':>7s} {'gold~len':>8s}")
    for name, f in [("all", out["all"]), *out["by_family"].items()]:
        print(f"{name:12s} {f['prompts']:7d} {f['gold']:6.3f} {f['best_of_n']:10.3f} {f['oracle']:6.3f} "
              f"{f['corr_rm_gold']:+8.2f} {f['corr_rm_length']:+7.2f} {f['corr_gold_length']:+8.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    if args.dump:
        with open(args.dump, "w") as f:
            for j, prompt in enumerate(prompts):
                for i in range(args.n):
                    f.write(json.dumps({"prompt": prompt, "family": str(families[j]), "sample": i,
                                        "response": texts[i][j], "gold": float(gold[j, i]), "rm": float(rm[j, i]),
                                        "length": float(length[j, i])}) + "\n")


if __name__ == "__main__":
    main()
