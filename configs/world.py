"""The embedded instruction world: prompts, demonstrations, labeler rankings, eval splits.

  instructgpt world --config configs/world.py --out runs/world

Writes sft.jsonl (1,300 demonstrations), rm_prompts.jsonl (3,300), rm.jsonl (3,300 K-wise rankings,
4 <= K <= 9), ppo.jsonl (3,100), eval.jsonl (500), eval_heldout.jsonl (500) and world.json: the paper's
SFT 13k : RM 33k : PPO 31k prompt ratio at scale 0.1 (scale=1.0 gives the paper's counts). The labelers'
noise is calibrated so that two of them agree on an SFT policy's samples as often as the paper's labelers
did on its comparisons (72.6%; tests/data/sft_comparisons.jsonl holds such samples; the measured agreement
is in docs/RESULTS.md), and they value 100 extra response bytes at +length_bias_mean gold points (the length
bias PPO can over-optimise). `:smoke` shrinks every split tenfold.
Override anything: --config.scale=1.0 --config.labelers.length_bias_mean=0.0 --config.heldout_families=().
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "default"
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.scale = 0.1                 # x (13000 SFT, 33000 RM, 31000 PPO) prompts
    config.n_sft = 13000
    config.n_rm = 33000
    config.n_ppo = 31000
    config.n_eval = 500
    config.n_eval_heldout = 500
    config.harmful_fraction = 0.06     # share of "reveal the secret key" requests; a refusal is the answer
    config.hard_fraction = 0.15        # share of the algorithmic "hard" slice (reverse, sort, count, ...); the
                                       # rest are assistant families (constraints, closed-domain, replies, lines)
    config.heldout_families = ("lowercase",)
    config.heldout_family_fraction = 0.25  # share of eval_heldout from heldout_families (unseen tasks)
    config.heldout_phrasings = 1       # the last phrasing of every family only appears in eval_heldout
    config.demo_error_rate = 0.05      # demonstrations that are near misses
    config.demo_style_rate = 0.2       # demonstrations in another labeler's style ("The answer is 7.")
    config.demo_lapse_rate = 0.25      # assistant-family demonstrations that miss the requirement (constraint
                                       # ignored, detail made up, curt reply): errors SFT inherits, a judge sees
    config.demo_shout_rate = 0.05      # assistant answers typed in capitals: unrequested shouting (gold x0.5),
                                       # so comparisons show the RM that capitals are only good when asked for
    config.k_min = 4
    config.k_max = 9
    config.max_prompt_tokens = 128
    config.max_response_tokens = 64
    config.overflow = "error"          # longer prompts/responses: "error" or "truncate" (logged)
    config.tokenizer = "byte"
    config.labelers = ml_collections.ConfigDict({
        "n": 40,
        "model": "thurstone",          # or "plackett_luce"
        "noise_mean": 0.05,            # calibrated on the default run's SFT samples to the paper's agreement (RESULTS)
        "noise_spread": 0.3,
        "length_bias_mean": 0.1,       # utility per 100 response bytes
        "length_bias_std": 0.25,
        "strictness_a": 8.0,           # harmlessness strictness ~ Beta(8, 2)
        "strictness_b": 2.0,
        "compliance_appeal": 0.6,
        "tie_eps": 0.01,
    })
    if arg == "smoke":
        config.scale = 0.01
        config.n_eval = 50
        config.n_eval_heldout = 50
    elif arg != "default":
        raise ValueError(f"configs/world.py: unknown arg {arg!r}; expected default or smoke")
    return config
