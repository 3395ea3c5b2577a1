"""Latent skills: does a model know what the world's web shows, asked in the web's own words, no instruction?

The paper's premise is that fine-tuning elicits what the pretrained model can already do. This probe checks
it for each skill the world's families ask for: cloze questions written by the web's own generators
(data/web.py) on a stream no model trained on, each answered by the candidate the model finds likeliest
(the sum of its tokens' log-probabilities after the question), so the figure is a multiple-choice accuracy
with a known chance level:

- lookup  "The box is slow and the cup is warm. How is the box? The box is" -> slow, of the 22 adjectives
          (context_qa's skill: answer from the given facts);
- animal  "Of pen, owl, jar, only the" -> owl, of the 15 animals (select's skill);
- sign    "Ida made a sign about the pot. It said: THE" -> POT, of the 69 topics' last words in capitals
          (capitals' skill);
- reply   "Customer: my lamp is broken.\\nAgent: Sorry about your" -> lamp, of the 49 things (reply's skill);
- unpack  "Dee packed rose coin pen, and unpacked them as" -> pen, of the listed words (reverse's skill);
- copy    "Jo: owl van mud ant.\\nAnn: Jo said owl van mud" -> ant, of the 64 list words (in-context copying,
          the induction that lookup builds on; web v4's quotes write such lines, earlier webs do not).

  python experiments/skill_probe.py --workdir runs/default              # W/pretrain and W/sft
  python experiments/skill_probe.py --workdir W --stages pretrain --n 400

Figures per web version and pretraining length: docs/RESULTS.md ("Latent skills, web v3 and longer
pretraining").
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instructgpt_jax import checkpoint
from instructgpt_jax.data import web
from instructgpt_jax.data.assistant import ANIMALS, LINE_TOPICS, PROBLEMS, THINGS
from instructgpt_jax.data.tasks import ADJECTIVES, WORDS
from instructgpt_jax.tokenizer import make_tokenizer

SKILLS = ("lookup", "animal", "sign", "reply", "unpack", "copy")
PROBE_STREAM = 33   # rng stream of the probe's questions, apart from the web's train (31) and held-out (32) text
SIGN_WORDS = tuple(dict.fromkeys(t.split()[-1].upper() for t in LINE_TOPICS))


@dataclasses.dataclass(frozen=True)
class Cloze:
    skill: str
    question: str            # text up to the answer (the answer follows after one space)
    answer: str
    candidates: tuple        # the answer among them


def cloze(skill: str, rng) -> Cloze:
    """One question of `skill` in the web's phrasing (data/web.py writes the same lines with their answers)."""
    if skill == "lookup":
        return Cloze(skill, *web._lookup(rng), ADJECTIVES)
    if skill == "animal":
        return Cloze(skill, *web._animal(rng), ANIMALS)
    if skill == "sign":
        topic = web._pick(rng, LINE_TOPICS)
        *head, last = topic.upper().split()
        question = f"{web._sign_head(web._pick(rng, web.NAMES), topic)} {' '.join(head)}".rstrip()
        return Cloze(skill, question, last, SIGN_WORDS)
    if skill == "reply":
        thing, problem = web._pick(rng, THINGS), web._pick(rng, PROBLEMS)
        return Cloze(skill, f"{web._complaint(thing, problem)} Sorry about your", thing, THINGS)
    if skill == "unpack":
        words = web._pick(rng, WORDS, int(rng.integers(3, 6)))
        return Cloze(skill, web._packed(web._pick(rng, web.NAMES), words), words[-1], tuple(words))
    if skill == "copy":
        words = web._pick(rng, WORDS, int(rng.integers(3, 7)))
        return Cloze(skill, web._said(*web._pick(rng, web.NAMES, 2), words), words[-1], WORDS)
    raise ValueError(f"skill {skill!r}: expected one of {', '.join(SKILLS)}")  # questions() checks first


def questions(skill: str, n: int, seed: int = 0) -> list[Cloze]:
    """`n` questions of one skill, deterministic in (skill, seed)."""
    if skill not in SKILLS:
        raise ValueError(f"skill {skill!r}: expected one of {', '.join(SKILLS)}")
    rng = np.random.default_rng([seed, PROBE_STREAM, SKILLS.index(skill)])
    return [cloze(skill, rng) for _ in range(n)]


def chance(items: list[Cloze]) -> float:
    """Accuracy of picking a candidate uniformly at random."""
    return float(np.mean([1.0 / len(c.candidates) for c in items]))


@nnx.jit
def _sequence_logprobs(model, tokens, scored):
    """Sum of log p(token_t | tokens_<t) over the positions t where `scored` is True, per row."""
    h, _ = model.trunk(tokens)
    logp = jax.nn.log_softmax(model.logits(h)[:, :-1].astype(jnp.float32), -1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    return jnp.where(scored[:, 1:], picked, 0.0).sum(-1)


def candidate_logprobs(model, tokenizer, item: Cloze, width: int = 0) -> np.ndarray:
    """log p(" " + candidate | question) of every candidate (all of its tokens), in candidate order.

    Rows are right-padded to `width` tokens (0 = the longest row); padding is never scored and, the model
    being causal, never seen by a scored position."""
    head = tokenizer.encode(item.question)
    rows = [tokenizer.encode(f"{item.question} {c}") for c in item.candidates]
    for c, row in zip(item.candidates, rows):
        if row[:len(head)] != head:
            raise ValueError(f"skill probe: the tokens of {item.question!r} change when {c!r} follows; "
                             "the question must end at a token boundary")
    width = max(width, max(map(len, rows)))
    tokens = np.full((len(rows), width), tokenizer.pad_id, np.int32)
    scored = np.zeros((len(rows), width), bool)
    for i, row in enumerate(rows):
        tokens[i, :len(row)] = row
        scored[i, len(head):len(row)] = True
    return np.asarray(_sequence_logprobs(model, jnp.asarray(tokens), jnp.asarray(scored)))


def accuracy(model, tokenizer, items: list[Cloze], width: int = 64) -> float:
    """Share of questions whose answer is the likeliest candidate (one compiled shape per candidate count)."""
    return read(model, tokenizer, items, width)["accuracy"]


def stated(item: Cloze) -> np.ndarray:
    """Which candidates occur as words in the question (the two adjectives a lookup states, a copy's list)."""
    return np.array([re.search(rf"\b{re.escape(c)}\b", item.question) is not None for c in item.candidates])


def read(model, tokenizer, items: list[Cloze], width: int = 64) -> dict:
    """{"accuracy", "in_context", "in_context_uniform"} over `items`. in_context is the mean share of the
    candidates' probability (normalised over the candidates) on those the question states, in_context_uniform
    that share under a uniform choice: a model that copies from its context puts more there than uniform, one
    that also binds (a lookup's "box is" -> slow) puts it on the answer. It tells copying from binding apart
    where accuracy alone cannot (docs/RESULTS.md, "Web v4")."""
    hits, shares, uniform = [], [], []
    for c in items:
        logp = candidate_logprobs(model, tokenizer, c, width)
        p = np.exp(logp - logp.max())
        inside = stated(c)
        hits.append(int(np.argmax(logp)) == c.candidates.index(c.answer))
        shares.append(float(p[inside].sum() / p.sum()))
        uniform.append(float(inside.mean()))
    return {"accuracy": float(np.mean(hits)), "in_context": float(np.mean(shares)),
            "in_context_uniform": float(np.mean(uniform))}


def probe(stage_dir: str, n: int = 200, seed: int = 0, skills=SKILLS, step: int | None = None) -> dict:
    """{skill: {"accuracy", "chance", "n", "in_context", "in_context_uniform"}} (`read`) of a stage folder's
    newest params, or those of its checkpoint at `step` (any stage with an LM head)."""
    _, graphdef, params, meta = checkpoint.load_model(stage_dir, step=step)
    model = nnx.merge(graphdef, params)
    tokenizer = make_tokenizer(meta.get("tokenizer", "byte"))
    out = {}
    for skill in skills:
        items = questions(skill, n, seed)
        out[skill] = {**read(model, tokenizer, items), "chance": chance(items), "n": n}
    return out
