"""Simulated labelers: a pool of 40 contractors who rank K responses to one prompt.

InstructGPT's rankings come from ~40 contractors who agree with each other on 72.6 +- 1.5% of pairs of its
comparison data, K samples of its policies. Our noise is calibrated to that on the same kind of data: the
K samples of the pipeline's SFT policy (tests/data/sft_comparisons.jsonl, 400 prompts of a `:default` run's
compare stage), measured by `measure_agreement`; on the world's own candidates (references, refusals, junk:
larger gold gaps) they agree more often. Both figures: docs/RESULTS.md ("RM accuracy vs K"). Our
labelers also carry a length bias (a taste for longer, more thorough-looking answers), the kind of proxy
flaw a reward model inherits and PPO then over-optimises. Each simulated labeler l has its own noise
scale sigma_l, length bias b_l and harmlessness strictness s_l, drawn once from config distributions. For a
response y to prompt x the labeler's perceived utility is (Thurstone, or Plackett-Luce with Gumbel noise)

    u_l(x, y) = gold(x, y) + b_l * bytes(y) / 100 + (1 - s_l) * appeal * complies(x, y) + sigma_l * eps

where `complies` is 1 when x is a harmful request and y is not a refusal (a lenient labeler finds the
"helpful" answer appealing), and eps is drawn once per distinct response text, so identical responses always
tie. Responses are ranked by u; neighbours closer than `tie_eps` share a rank (dense ranks, 0 = best).
This module holds the pool and the ranking maths; `world.World.rank` feeds it gold scores.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LabelerConfig:
    """Distributions the labeler pool is drawn from; configs/world.py holds the values (`config.labelers`)."""
    n: int                            # labelers in the pool (the paper's 40 contractors)
    model: str                        # "thurstone" (Gaussian noise) or "plackett_luce" (Gumbel noise)
    noise_mean: float                 # mean sigma_l, the labelers' noise on the gold score (calibrated: RESULTS)
    noise_spread: float               # std of log sigma_l
    length_bias_mean: float           # utility per 100 response bytes; > 0 means longer answers look better
    length_bias_std: float            # spread of the length bias over labelers
    strictness_a: float               # harmlessness strictness ~ Beta(a, b)
    strictness_b: float
    compliance_appeal: float          # utility a fully lenient labeler gives complying with a harmful request
    tie_eps: float                    # perceived utilities closer than this are recorded as a tie


@dataclasses.dataclass(frozen=True)
class LabelerPool:
    """Per-labeler traits, each an (n,) array, plus the shared ranking settings."""
    noise: np.ndarray
    length_bias: np.ndarray
    strictness: np.ndarray
    model: str
    compliance_appeal: float
    tie_eps: float

    @property
    def n(self) -> int:
        return len(self.noise)


# Salt of the pool's traits (with the world seed), apart from the world's other NumPy streams.
TRAITS_STREAM = 7


def make_labelers(cfg: LabelerConfig, seed: int) -> LabelerPool:
    """Draw the pool's traits from `cfg`'s distributions with a seed of its own (independent of prompts)."""
    if cfg.model not in ("thurstone", "plackett_luce"):
        raise ValueError(f"labelers.model must be 'thurstone' or 'plackett_luce', got {cfg.model!r}")
    rng = np.random.default_rng([seed, TRAITS_STREAM])
    # Log-normal with E[sigma] = noise_mean: the mean stays the calibrated value whatever the spread.
    noise = cfg.noise_mean * np.exp(cfg.noise_spread * rng.standard_normal(cfg.n) - cfg.noise_spread ** 2 / 2)
    length_bias = cfg.length_bias_mean + cfg.length_bias_std * rng.standard_normal(cfg.n)
    strictness = rng.beta(cfg.strictness_a, cfg.strictness_b, cfg.n)
    return LabelerPool(noise, length_bias, strictness, cfg.model, cfg.compliance_appeal, cfg.tie_eps)


def utilities(pool: LabelerPool, labeler_id: int, gold, n_bytes, complies, group, rng) -> np.ndarray:
    """Labeler `labeler_id`'s perceived utility of K responses; `group[i]` ids identical response texts."""
    l = int(labeler_id)
    if not 0 <= l < pool.n:
        raise ValueError(f"labeler_id {l} outside the pool of {pool.n}")
    group = np.asarray(group)
    if pool.model == "thurstone":
        eps = rng.standard_normal(group.max() + 1)
    else:
        # Sorting by u + Gumbel noise samples a Plackett-Luce ranking; sqrt(6)/pi gives the Gumbel std 1,
        # so noise_mean means the same thing under both models.
        eps = (rng.gumbel(size=group.max() + 1) - np.euler_gamma) * np.sqrt(6) / np.pi
    u = (np.asarray(gold, np.float64) + pool.length_bias[l] * np.asarray(n_bytes) / 100.0
         + (1.0 - pool.strictness[l]) * pool.compliance_appeal * np.asarray(complies, np.float64))
    return u + pool.noise[l] * eps[group]


def ranks_from_utilities(u, tie_eps: float) -> np.ndarray:
    """Dense ranks (0 = highest utility); sorted neighbours within `tie_eps` share a rank."""
    u = np.asarray(u, np.float64)
    order = np.argsort(-u, kind="stable")
    gaps = -np.diff(u[order])                      # >= 0 along the sorted order
    sorted_ranks = np.concatenate([[0], np.cumsum(gaps > tie_eps)])
    ranks = np.empty(len(u), np.int32)
    ranks[order] = sorted_ranks
    return ranks


def pair_agreement(ranks_a, ranks_b) -> tuple[int, int]:
    """(agreeing pairs, pairs) of two rankings of the same K responses; a tie agrees only with a tie."""
    a, b = np.asarray(ranks_a), np.asarray(ranks_b)
    i, j = np.triu_indices(len(a), 1)
    agree = np.sign(a[i] - a[j]) == np.sign(b[i] - b[j])
    return int(agree.sum()), len(i)


def untied_agreement(ranks_a, ranks_b) -> tuple[int, int]:
    """(pairs labeler b orders as a does, pairs a does not tie): the measure rm/accuracy is comparable to."""
    a, b = np.asarray(ranks_a), np.asarray(ranks_b)
    i, j = np.triu_indices(len(a), 1)
    strict = a[i] != a[j]
    return int((np.sign(a[i] - a[j]) == np.sign(b[i] - b[j]))[strict].sum()), int(strict.sum())


def measure_agreement(world, prompts, rng, responses=None) -> float:
    """Inter-labeler agreement (`untied_agreement`, as the compare stage reports it): two distinct random
    labelers rank the same responses per prompt: `responses[i]` (e.g. policy samples) for prompts[i], else
    K world candidates."""
    agree = total = 0
    for n, prompt in enumerate(prompts):
        if responses is None:
            k = int(rng.integers(world.config.k_min, world.config.k_max + 1))
            ys = world.candidates(prompt, k, rng)
        else:
            ys = responses[n]
        la, lb = rng.choice(world.labelers.n, 2, replace=False)
        a, t = untied_agreement(world.rank(prompt, ys, la, rng), world.rank(prompt, ys, lb, rng))
        agree, total = agree + a, total + t
    return agree / total


def measure_length_bias(world, prompts, rng, newton_steps: int = 25) -> float:
    """The labelers' length bias as they reveal it, in gold points per 100 bytes.

    Fits P(i preferred over j) = sigmoid(alpha * (gold_i - gold_j) + beta * (bytes_i - bytes_j) / 100) by
    Newton's method over all untied candidate pairs ranked by random labelers, and returns beta / alpha:
    how much gold score 100 extra bytes are worth to them. Its sign is the sign of the configured bias.
    """
    x, y = [], []
    for prompt in prompts:
        responses = world.candidates(prompt, world.config.k_max, rng)
        gold = world.gold_score([prompt] * len(responses), responses).astype(np.float64)
        n_bytes = np.array([len(r.encode("utf-8")) for r in responses]) / 100.0
        ranks = world.rank(prompt, responses, int(rng.integers(world.labelers.n)), rng)
        i, j = np.triu_indices(len(responses), 1)
        keep = ranks[i] != ranks[j]
        i, j = i[keep], j[keep]
        x.append(np.stack([gold[i] - gold[j], n_bytes[i] - n_bytes[j]], 1))
        y.append((ranks[i] < ranks[j]).astype(np.float64))
    x, y = np.concatenate(x), np.concatenate(y)
    w = np.zeros(2)
    for _ in range(newton_steps):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        w += np.linalg.solve(hessian, x.T @ (y - p))
    return float(w[1] / w[0])
