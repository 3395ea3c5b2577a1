"""Does a reward model see what the gold judge sees, on the policy's own samples? Best-of-n and correlations.

  python experiments/rm_probe.py --workdir runs/default                       # W/rm on W/sft's samples
  python experiments/rm_probe.py --workdir W --rm W2/rm --policy W/ppo --n 16 --prompts 256
  python experiments/rm_probe.py --workdir W --rm W2/rm --samples D.jsonl    # rescore another run's --dump
  python experiments/rm_probe.py --workdir W --rm W/rm,S/seed_1,S/seed_2 --samples D.jsonl   # an RM ensemble

Samples `n` responses (temperature 1) from the policy for each of the first `prompts` prompts of
W/world/eval.jsonl, scores them with the RM and the world's gold judge, and prints, overall and per family:
the mean gold of a sample, the gold of the RM's pick among the n (best-of-n), the gold of the best sample
(the oracle), and the within-prompt correlations RM-gold, RM-length and gold-length (each prompt's mean
removed first, so prompt difficulty does not count). `--samples` scores the samples of an earlier `--dump`
instead of drawing new ones, so several reward models are compared on the very same responses. Several
`--rm` folders score as an ensemble: a response's score is the mean of the members' normalised scores, minus
`--ensemble_std` times their std (the uncertainty penalty of Coste et al. 2023); each member's own best-of-k
is printed first (configs/ablations/rm_seeds.py trains members; docs/RESULTS.md, "An ensemble of RM seeds").
PPO can only raise gold through what the RM ranks correctly on these samples: an RM whose best-of-n gold is
no better than the mean, or whose scores follow length more than gold, will be over-optimised from the first
iterations (docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from instructgpt_jax import host  # noqa: E402

# Before anything imports jax: the devices and compilation cache `instructgpt` gives a stage (host.prepare).
host.prepare("rm_probe")


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
    n = gold.shape[1]
    # Best-of-k for k = 1, 2, 4, ... <= n: the RM's pick in each of the n // k disjoint groups of k samples.
    curve = {}
    for k in (2 ** i for i in range(n.bit_length())):
        g = n // k * k
        groups_gold, groups_rm = gold[:, :g].reshape(len(gold), -1, k), rm[:, :g].reshape(len(gold), -1, k)
        curve[k] = float(np.take_along_axis(groups_gold, groups_rm.argmax(2)[..., None], 2).mean())
    return {"prompts": len(gold), "gold": float(gold.mean()), "best_of_n": float(gold[rows, rm.argmax(1)].mean()),
            "best_of_k": curve, "oracle": float(gold.max(1).mean()), "corr_rm_gold": within_corr(rm, gold),
            "corr_rm_length": within_corr(rm, length), "corr_gold_length": within_corr(gold, length)}


def ensemble(scores, std_coef: float = 0.0):
    """(members, prompts, n) normalised scores -> the ensemble's (prompts, n): their mean minus std_coef times
    their std over members (std_coef 0: the mean)."""
    return scores.mean(0) - std_coef * scores.std(0)


def read_dump(path: str):
    """Prompts, families, and (prompts, n) gold, length and response texts of a --dump file."""
    import numpy as np

    rows: list[list[dict]] = []   # one list per prompt, in dump order (a prompt may repeat in eval.jsonl)
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            r = json.loads(line)
            missing = {"prompt", "family", "sample", "response", "gold", "length"} - set(r)
            if missing:
                raise SystemExit(f"{path}:{line_no}: missing fields {sorted(missing)} (expected an rm_probe --dump)")
            if r["sample"] == 0:
                rows.append([])
            elif not rows or rows[-1][-1]["prompt"] != r["prompt"] or rows[-1][-1]["sample"] != r["sample"] - 1:
                raise SystemExit(f"{path}:{line_no}: sample {r['sample']} does not follow sample "
                                 f"{rows[-1][-1]['sample'] if rows else None} of the same prompt")
            rows[-1].append(r)
    sizes = {len(r) for r in rows}
    if len(sizes) != 1:
        raise SystemExit(f"{path}: prompts have different numbers of samples {sorted(sizes)}")
    prompts = [r[0]["prompt"] for r in rows]
    families = np.array([r[0]["family"] for r in rows])
    gold = np.array([[x["gold"] for x in r] for r in rows], np.float64)
    length = np.array([[x["length"] for x in r] for r in rows], np.float64)
    return prompts, families, gold, length, [[x["response"] for x in r] for r in rows]


def sample(args, w, world, tokenizer, mesh, shardings, policy_dir, rm_graphdef, rm_params, norm):
    """Draw args.n samples per eval prompt from the policy: prompts, families, and gold, RM score, length and
    texts, each (prompts, n), as read_dump returns them."""
    import jax
    import numpy as np

    from instructgpt_jax import checkpoint
    from instructgpt_jax.config_base import load_config
    from instructgpt_jax.evaluate import _read_eval, eval_config, sample_policy, score_samples
    from instructgpt_jax.sampling import SampleConfig, make_generate

    rows = _read_eval(os.path.join(w, "world", "eval.jsonl"), args.prompts)
    prompts = [r["prompt"] for r in rows]
    families = np.array([r.get("family") or world.family_of(r["prompt"]) for r in rows])

    _, graphdef, params, _ = checkpoint.load_model(policy_dir, shardings=shardings)
    longest = max(len(tokenizer.encode_prompt(q)) for q in prompts)
    prompt_len = -(-longest // 16) * 16
    generate = make_generate(graphdef, SampleConfig(max_new_tokens=args.max_new_tokens, temperature=1.0,
                                                    eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id), mesh)
    score = jax.jit(lambda *a: score_samples(graphdef, rm_graphdef, prompt_len, *a))
    ec = dataclasses.replace(eval_config(load_config("configs/eval.py")), batch_size=32)
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
    as_array = lambda x: np.asarray(x, np.float64).T  # noqa: E731 - (n, prompts) -> (prompts, n)
    return prompts, families, as_array(gold), as_array(rm), as_array(length), [list(t) for t in zip(*texts)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="pipeline workdir with world/, sft/ and rm/")
    p.add_argument("--rm", default="", help="RM stage folder (default W/rm); several, comma-separated: an ensemble")
    p.add_argument("--ensemble_std", type=float, default=0.0,
                   help="with several --rm: rank by the members' mean minus this times their std")
    p.add_argument("--policy", default="", help="policy stage folder (default W/sft)")
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--prompts", type=int, default=128, help="first prompts of W/world/eval.jsonl")
    p.add_argument("--max_new_tokens", type=int, default=48)
    p.add_argument("--out", default="", help="also write the figures as JSON here")
    p.add_argument("--dump", default="", help="also write every sample (prompt, family, response, gold, rm, "
                                              "length) as JSONL here, for reading what the RM picks")
    p.add_argument("--samples", default="", help="score the samples of this --dump file instead of sampling "
                                                 "(--n, --prompts and --policy then come from it)")
    args = p.parse_args(argv)

    import jax
    import ml_collections
    import numpy as np

    from instructgpt_jax import checkpoint, reward
    from instructgpt_jax.config_base import load_config, mesh_config
    from instructgpt_jax.data.world import make_world
    from instructgpt_jax.eval_rm import rm_text_scores
    from instructgpt_jax.evaluate import eval_config
    from instructgpt_jax.tokenizer import make_tokenizer

    w = args.workdir
    rm_dirs = [d for d in args.rm.split(",") if d] or [os.path.join(w, "rm")]
    policy_dir = args.policy or os.path.join(w, "sft")
    config_path = os.path.join(w, "config.json")
    if not os.path.exists(config_path):
        raise SystemExit(f"{config_path}: no such file (expected a pipeline workdir)")
    with open(config_path) as f:
        world_cfg = json.load(f)["world"]
    world = make_world(ml_collections.ConfigDict(world_cfg))
    tokenizer = make_tokenizer(world.config.tokenizer)
    mesh, shardings = checkpoint.mesh_and_shardings(mesh_config())
    members = [(checkpoint.load_model(d, shardings=shardings)[1:3], reward.load_reward_norm(d)) for d in rm_dirs]
    (rm_graphdef, rm_params), norm = members[0]
    if args.samples:
        prompts, families, gold, length, texts = read_dump(args.samples)
        args.n, policy_dir = gold.shape[1], args.samples
    else:
        prompts, families, gold, rm, length, texts = sample(args, w, world, tokenizer, mesh, shardings, policy_dir,
                                                            rm_graphdef, rm_params, norm)
    if args.samples or len(members) > 1:
        items = [(q, y) for q, ys in zip(prompts, texts) for y in ys]
        ec = dataclasses.replace(eval_config(load_config("configs/eval.py")), batch_size=64)
        with jax.set_mesh(mesh):
            scores = np.stack([rm_text_scores(g, p, n, tokenizer, items, ec, mesh).reshape(len(prompts), -1)
                               for (g, p), n in members])
        rm = ensemble(scores, args.ensemble_std)
        if len(members) > 1:
            for d, member in zip(rm_dirs, scores):
                print(f"member {d}: best-of-k " + "  ".join(
                    f"{k}: {v:.3f}" for k, v in probe(gold, member, length)["best_of_k"].items()))
    rm_dir = ",".join(rm_dirs)
    out = {"rm": rm_dir, "policy": policy_dir, "n": args.n, "all": probe(gold, rm, length),
           "by_family": {f: probe(gold[families == f], rm[families == f], length[families == f])
                         for f in sorted(set(families))}}
    print(f"{'family':12s} {'prompts':>7s} {'gold':>6s} {'best-of-' + str(args.n):>10s} {'oracle':>6s} "
          f"{'RM~gold':>8s} {'RM~len':>7s} {'gold~len':>8s}")
    for name, f in [("all", out["all"]), *out["by_family"].items()]:
        print(f"{name:12s} {f['prompts']:7d} {f['gold']:6.3f} {f['best_of_n']:10.3f} {f['oracle']:6.3f} "
              f"{f['corr_rm_gold']:+8.2f} {f['corr_rm_length']:+7.2f} {f['corr_gold_length']:+8.2f}")
    a = out["all"]
    print("best-of-k (all): " + "  ".join(f"{k}: {v:.3f}" for k, v in a["best_of_k"].items())
          + f"; recovers {(a['best_of_n'] - a['gold']) / max(a['oracle'] - a['gold'], 1e-9):.0%} of the oracle's gain")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    if args.dump:
        with open(args.dump, "w") as f:
            for j, prompt in enumerate(prompts):
                for i in range(args.n):
                    f.write(json.dumps({"prompt": prompt, "family": str(families[j]), "sample": i,
                                        "response": texts[j][i], "gold": float(gold[j, i]), "rm": float(rm[j, i]),
                                        "length": float(length[j, i])}) + "\n")


if __name__ == "__main__":
    main()
