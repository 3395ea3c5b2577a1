"""The instruction world: prompts, demonstrations and labeler rankings standing in for OpenAI's API
prompts and its 40 contractors, which cannot be downloaded.

`World` draws each split's prompts from the task families of tasks.py: by default the last phrasing of
every family and the whole `lowercase` family are held out of training and form `eval_heldout`, which
measures instruction sensitivity (following an instruction phrased in a way never seen in training). Split
sizes keep the paper's SFT 13k : RM 33k : PPO 31k prompt ratio, times one `scale` factor. Demonstrations are
the reference answer, restyled or wrong at configured rates; `rank` / `prefer` ask a simulated labeler
(labelers.py), who sees the gold score through their own noise, length bias and strictness. The gold judge
lives in judge.py; a World carries the parts its users call (gold_score, family_of, ...) as static methods.
"""

import dataclasses

import numpy as np

from instructgpt_jax.config_base import from_config
from instructgpt_jax.data import labelers as labelers_lib, nlp
from instructgpt_jax.data.judge import (
    CAPS_ASKED, FAMILIES, Parsed, family_of, gold_score, is_harmful, kind_of, parse_strict, reference)
from instructgpt_jax.data.judging import is_refusal
from instructgpt_jax.data.tasks import ADJECTIVES, FILLERS, REFUSALS, WORDS, pick_words, topic_line

SPLITS = ("sft", "rm", "ppo", "eval", "eval_heldout")
_SPLIT_SEED = {name: i for i, name in enumerate(SPLITS)}


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Every knob of the world; configs/world.py holds the values (make_world builds this from it)."""
    seed: int                          # prompts, demonstrations and the labeler pool are drawn from it
    scale: float                       # x (n_sft, n_rm, n_ppo) prompts; 1.0 gives the paper's 13k / 33k / 31k
    n_sft: int                         # SFT prompts at scale 1
    n_rm: int                          # RM prompts at scale 1
    n_ppo: int                         # PPO prompts at scale 1
    n_eval: int                        # eval prompts (not scaled)
    n_eval_heldout: int                # eval_heldout prompts (not scaled)
    harmful_fraction: float            # share of "reveal the secret key" requests; a refusal is the answer
    hard_fraction: float               # share of the algorithmic "hard" slice (reverse, sort, count, ...)
    heldout_families: tuple[str, ...]  # families only eval_heldout has (unseen tasks)
    heldout_phrasings: int             # the last n phrasings of every family are kept for eval_heldout
    heldout_family_fraction: float     # share of eval_heldout drawn from heldout_families (unseen tasks)
    demo_error_rate: float             # demonstrations that are near misses
    demo_lapse_rate: float             # demonstrations that miss an assistant family's requirement (Family.lapse)
    demo_shout_rate: float             # assistant-family demonstrations typed in capitals (a tone lapse)
    demo_style_rate: float             # demonstrations in another labeler's style ("The answer is 7.")
    k_min: int                         # fewest responses per RM ranking
    k_max: int                         # most responses per RM ranking
    max_prompt_tokens: int             # longer prompts: see overflow
    max_response_tokens: int           # longer responses: see overflow
    overflow: str                      # prompts/responses over their limit: "error" or "truncate" (logged)
    tokenizer: str                     # "byte" or "gpt2": what the token limits count
    labelers: labelers_lib.LabelerConfig  # the labeler pool's distributions


class World:
    """Prompts per split, demonstrations, candidate responses, the gold judge and the labeler pool."""

    gold_score = staticmethod(gold_score)
    family_of = staticmethod(family_of)
    kind_of = staticmethod(kind_of)
    is_harmful = staticmethod(is_harmful)
    is_refusal = staticmethod(is_refusal)
    reference = staticmethod(reference)

    def __init__(self, config: WorldConfig):
        unknown = set(config.heldout_families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"heldout_families {sorted(unknown)} are not families; valid: {sorted(FAMILIES)}")
        if not 2 <= config.k_min <= config.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got k_min={config.k_min}, k_max={config.k_max}")
        if not 0.0 < config.heldout_family_fraction < 1.0:
            raise ValueError(f"heldout_family_fraction must be in (0, 1), got {config.heldout_family_fraction}")
        if not 0 <= config.heldout_phrasings < 5:
            raise ValueError(f"heldout_phrasings must be in [0, 4], got {config.heldout_phrasings}")
        self.config = config
        self.labelers = labelers_lib.make_labelers(config.labelers, config.seed)
        self._prompts = {}

    # -- prompts

    def split_size(self, split: str) -> int:
        """Number of prompts in `split`: the paper's counts times `scale` for sft/rm/ppo, fixed for eval."""
        c = self.config
        sizes = {"sft": round(c.n_sft * c.scale), "rm": round(c.n_rm * c.scale), "ppo": round(c.n_ppo * c.scale),
                 "eval": c.n_eval, "eval_heldout": c.n_eval_heldout}
        if split not in sizes:
            raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
        return sizes[split]

    def _allowed(self, split: str) -> dict[str, list[int]]:
        """Family -> phrasing indices a split draws from: train families' first phrasings, or the held out."""
        n_held = self.config.heldout_phrasings
        allowed = {}
        for name, family in FAMILIES.items():
            n = len(family.phrasings)
            held_family = name in self.config.heldout_families
            if split == "eval_heldout":
                phrasings = list(range(n)) if held_family else list(range(n - n_held, n))
            else:
                phrasings = [] if held_family else list(range(n - n_held))
            if phrasings:
                allowed[name] = phrasings
        if not allowed:
            raise ValueError(f"split {split!r} has no families or phrasings to draw from")
        return allowed

    def family_weights(self, names) -> np.ndarray:
        """Draw probabilities of `names`: harmful_fraction for harmful requests, hard_fraction shared by the
        hard slice, the rest shared by the assistant families (open, constraint, closed, language)."""
        c = self.config
        kinds = [FAMILIES[f].kind for f in names]
        n_hard = sum(k == "hard" for k in kinds)
        n_rest = sum(k not in ("hard", "harmful") for k in kinds)
        rest = 1.0 - c.harmful_fraction - (c.hard_fraction if n_hard else 0.0)
        weights = [c.harmful_fraction if k == "harmful" else c.hard_fraction / n_hard if k == "hard"
                   else rest / max(n_rest, 1) for k in kinds]
        return np.asarray(weights, np.float64)

    def prompts(self, split: str) -> list[str]:
        """The split's prompts, deterministic in (seed, split).

        A prompt is redrawn within its family (up to 20 times) when it repeats one of the split's earlier
        prompts (the paper deduplicates its prompts) or, for eval splits, a training prompt.
        """
        if split in self._prompts:
            return self._prompts[split]
        n = self.split_size(split)
        allowed = self._allowed(split)
        names = list(allowed)
        weights = self.family_weights(names)
        if split == "eval_heldout":
            # Unseen tasks get a fixed share of the held-out split (by their usual weight they would be a
            # handful of prompts); the rest are unseen phrasings of the trained families.
            held = np.array([name in self.config.heldout_families for name in names])
            if held.any() and not held.all():
                f = self.config.heldout_family_fraction
                weights = np.where(held, f * weights / weights[held].sum(), (1 - f) * weights / weights[~held].sum())
        cdf = np.cumsum(weights / weights.sum())
        seen = set()
        if split.startswith("eval"):
            seen = {p for s in ("sft", "rm", "ppo") for p in self.prompts(s)}
        rng = np.random.default_rng([self.config.seed, _SPLIT_SEED[split]])
        out = []
        for _ in range(n):
            # The family is drawn once per prompt, so every family keeps its share of an eval split; a small
            # family (harmful: 70 distinct prompts) may run out of unseen prompts and then repeats one.
            family = FAMILIES[names[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(names) - 1)]]
            phrasings = allowed[family.name]
            for _attempt in range(20):
                template = family.phrasings[phrasings[rng.integers(len(phrasings))]]
                prompt = template.format(**family.sample(rng, template))
                if prompt not in seen:
                    break
            seen.add(prompt)
            out.append(prompt)
        self._prompts[split] = out
        return out

    # -- responses

    def _restyle(self, parsed: Parsed, rng) -> str:
        """The reference in another labeler's style: other words for open lines and refusals, else a frame."""
        if parsed.family == "write":
            a, b = rng.choice(len(ADJECTIVES), 2, replace=False)
            return topic_line(parsed.slots["topic"], [ADJECTIVES[a], ADJECTIVES[b]])
        if parsed.family == "harmful":
            return REFUSALS[rng.integers(len(REFUSALS))]
        if FAMILIES[parsed.family].kind in ("constraint", "closed", "language"):
            return parsed.reference   # a frame ("The answer is ...") would break their form; lapses vary them
        return (parsed.reference + ".", "Answer: " + parsed.reference,
                "The answer is " + parsed.reference + ".")[rng.integers(3)]

    def _wrong(self, parsed: Parsed, rng) -> str:
        """A near-miss answer that really differs from the reference (some corruptions can coincide with it)."""
        for _ in range(10):
            y = FAMILIES[parsed.family].corrupt(parsed.slots, parsed.reference, rng)
            if y.strip() and y != parsed.reference:
                return y
        return f"{parsed.reference} {parsed.reference}"

    def demonstration(self, prompt: str, rng) -> str:
        """A labeler-written SFT answer: the reference, restyled with demo_style_rate, wrong with demo_error_rate,
        and, for families with a lapse (assistant.py), fluent but missing the requirement with demo_lapse_rate;
        assistant answers typed in capitals (shouting, when not asked for) with demo_shout_rate."""
        parsed = parse_strict(prompt)
        family = FAMILIES[parsed.family]
        if family.lapse is not None and rng.random() < self.config.demo_lapse_rate:
            return family.lapse(parsed.slots, parsed.reference, rng)
        if family.kind != "hard" and parsed.family not in CAPS_ASKED and rng.random() < self.config.demo_shout_rate:
            return parsed.reference.upper()   # the right answer, shouted: a reward model must see that tone too
        if rng.random() < self.config.demo_error_rate:
            return self._wrong(parsed, rng)
        if rng.random() < self.config.demo_style_rate:
            return self._restyle(parsed, rng)
        return parsed.reference

    def candidates(self, prompt: str, k: int, rng) -> list[str]:
        """K distinct responses of mixed quality, as a mix of policies would write them.

        Used to measure labeler agreement and to write a ready-ranked RM file; the kinds (reference,
        restyled, padded with chatter, near misses, refusals, junk, truncated) span the gold range.
        """
        parsed = parse_strict(prompt)
        ref = parsed.reference
        harmful = parsed.family == "harmful"
        lapse = FAMILIES[parsed.family].lapse
        kinds = ["ref", "style", "verbose", "corrupt", "corrupt", "corrupt", "refusal", "junk", "truncated", "lapse"]
        p = np.array([1, 1, 1.5, 1, 1, 1, 2.0 if harmful else 0.3, 0.5, 0.5, 1.5 if lapse else 0.0])
        out, seen = [], set()
        for _ in range(20 * k):
            kind = kinds[rng.choice(len(kinds), p=p / p.sum())]
            if kind == "ref":
                y = ref
            elif kind == "style":
                y = self._restyle(parsed, rng)
            elif kind == "verbose":
                filler = FILLERS[rng.integers(len(FILLERS))]
                # Within the response budget (a long reply plus chatter would not fit max_response_tokens).
                y = f"{ref} {filler}" if len(ref) + len(filler) < self.config.max_response_tokens - 8 else f"{ref} Thanks!"
            elif kind == "corrupt":
                y = self._wrong(parsed, rng)
            elif kind == "refusal":
                y = REFUSALS[rng.integers(len(REFUSALS))]
            elif kind == "lapse":
                y = lapse(parsed.slots, ref, rng)
            elif kind == "junk":
                y = " ".join(pick_words(rng, 1, 3))
            else:
                y = ref[: max(1, len(ref) // 2)].rstrip() or ref
            if y.strip() and y not in seen:
                seen.add(y)
                out.append(y)
                if len(out) == k:
                    return out
        # Tiny answer spaces (e.g. one-letter answers) can run out of distinct kinds: pad with chatter.
        while len(out) < k:
            y = f"{ref} {WORDS[len(out)]}"
            if y not in seen:
                seen.add(y)
                out.append(y)
        return out

    # -- labelers

    def rank(self, prompt: str, responses: list[str], labeler_id: int, rng) -> np.ndarray:
        """Labeler `labeler_id`'s dense ranks of K responses: (K,) int32, 0 = best, ties share a rank."""
        gold = gold_score([prompt] * len(responses), responses)
        n_bytes = np.array([len(r.encode("utf-8")) for r in responses])
        complies = np.array([is_harmful(prompt) and not is_refusal(r) for r in responses])
        index = {}
        group = [index.setdefault(r, len(index)) for r in responses]   # identical texts share one noise draw
        u = labelers_lib.utilities(self.labelers, labeler_id, gold, n_bytes, complies, group, rng)
        return labelers_lib.ranks_from_utilities(u, self.labelers.tie_eps)

    def prefer(self, prompt: str, a: str, b: str, labeler_id: int, rng) -> float:
        """Pairwise judgement: 1.0 if the labeler prefers `a`, 0.0 if `b`, 0.5 for a tie."""
        ranks = self.rank(prompt, [a, b], labeler_id, rng)
        return 0.5 if ranks[0] == ranks[1] else float(ranks[0] < ranks[1])

    def preferences(self, prompts, responses_a, responses_b, rng, labeler_ids=None) -> np.ndarray:
        """Batched `prefer` with a random labeler per item unless given; its mean is a win rate of a over b."""
        if labeler_ids is None:
            labeler_ids = rng.integers(self.labelers.n, size=len(prompts))
        return np.array([self.prefer(p, a, b, l, rng)
                         for p, a, b, l in zip(prompts, responses_a, responses_b, labeler_ids)], np.float32)


def make_world(cfg, where: str = "config.world") -> World:
    """A World from an ml_collections ConfigDict (configs/world.py), a world.json's "config" or a WorldConfig."""
    return World(from_config(WorldConfig, cfg, where))


def gold_judge(name: str):
    """`config.eval.gold_judge` -> the judge: "world" is gold_score, "nlp" the NLP datasets' answer key, "" is
    none (a user's data has no gold)."""
    if name == "world":
        return gold_score
    if name == "nlp":  # the answer key of the world's NLP datasets (data/nlp.py), for the RM's starting point
        return nlp.answer_score
    if name:
        raise ValueError(f"config.eval.gold_judge={name!r}; expected 'world', 'nlp' or '' (none)")
    return None
