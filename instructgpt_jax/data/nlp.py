"""The world's public NLP datasets: reading comprehension and claim checking, for the RM's starting point.

The paper's reward model did not start from a bare GPT-3: "The final reward model was initialized from a 6B
GPT-3 model that was fine-tuned on a variety of public NLP datasets (ARC, BoolQ, CoQA, DROP, MultiNLI,
OpenBookQA, QuAC, RACE, and Winogrande)" (Ouyang et al. 2022, Appendix C.2; at their scale it mattered
little, "similar results when initializing the RM from the GPT-3 or SFT models"). Those datasets teach the
judgement a labeler uses on closed-domain prompts: does this statement follow from that passage (MultiNLI,
BoolQ), what does the passage say (CoQA, QuAC, RACE), is this arithmetic right (DROP).

`nlp_records` writes the world's analogue: passages and lists from the world's word banks, with a question or
a claim about them and its answer, labelled by construction, as a dataset's annotators label it. Nothing
here reads the gold judge or a policy's response; no record uses an instruction family's phrasing (the
families are in data/assistant.py and data/tasks.py); each kind checks something a family's answer needs:

  fact      "Passage: the bed is sweet and the wind is cold. Claim: the bed is small. True or false?" (context_qa)
  read      "Passage: ... Question: what is the bed like? Answer:" -> "sweet" (context_qa, as CoQA)
  member    "Words: ink, cup, frog. Is cup one of them?" (use_word, select: is the word in the input)
  animal    "Words: ink, cup, frog. Claim: frog is the animal among them. True or false?" (select)
  distinct  "List: quiet, kind, kind. Are the words all different?" (list_format)
  caps      "Text: the hill is old. In capitals: THE HILL IS OLD. Same words?" (capitals)
  backwards "Words: ink cup frog. Backwards: frog cup ink. Right or wrong?" (reverse, the hard slice)
  sum       "Sum: 12 + 30 = 42. Right or wrong?" (arithmetic, the hard slice)

Every yes/no kind is balanced (half of each label). A record is {"prompt", "response", "kind"}: the SFT
format (formats.read_sft reads it; "kind" is for analysis).
"""

from __future__ import annotations

import re

import numpy as np

from instructgpt_jax.data.assistant import ANIMALS, THINGS
from instructgpt_jax.data.tasks import ADJECTIVES, WORDS
from instructgpt_jax.data.web import _pick

KINDS = ("fact", "read", "member", "animal", "distinct", "caps", "backwards", "sum")
NLP_STREAM = 41   # the rng stream of these datasets, apart from the world's files (formats.FILE_STREAM) and web text
SPLITS = {"train": 0, "val": 1}


def _other(rng, seq, exclude) -> str:
    rest = [w for w in seq if w not in exclude]
    return rest[rng.integers(len(rest))]


def _yes_no(flag: bool, true: str = "yes", false: str = "no") -> str:
    return true if flag else false


def _passage(rng) -> tuple[str, str, str, str]:
    """Two facts: (passage, the thing asked about, its adjective, the other thing's adjective)."""
    (w1, w2), (a1, a2) = _pick(rng, THINGS, 2), _pick(rng, ADJECTIVES, 2)
    i = int(rng.integers(2))
    return f"the {w1} is {a1} and the {w2} is {a2}.", (w1, w2)[i], (a1, a2)[i], (a2, a1)[i]


def _fact(rng, truth: bool) -> tuple[str, str]:
    passage, thing, right, other = _passage(rng)
    said = right if truth else (other if rng.random() < 0.5 else _other(rng, ADJECTIVES, (right, other)))
    return f"Passage: {passage} Claim: the {thing} is {said}. True or false?", _yes_no(truth, "true", "false")


def _read(rng, truth: bool) -> tuple[str, str]:
    passage, thing, right, _ = _passage(rng)
    return f"Passage: {passage} Question: what is the {thing} like? Answer:", right


def _member(rng, truth: bool) -> tuple[str, str]:
    words = _pick(rng, WORDS, int(rng.integers(3, 6)))
    asked = words[rng.integers(len(words))] if truth else _other(rng, WORDS, words)
    return f"Words: {', '.join(words)}. Is {asked} one of them?", _yes_no(truth)


def _animal(rng, truth: bool) -> tuple[str, str]:
    animal = ANIMALS[rng.integers(len(ANIMALS))]
    things = _pick(rng, THINGS, int(rng.integers(2, 4)))
    items = things + [animal]
    items = [items[i] for i in rng.permutation(len(items))]
    said = animal if truth else (things[0] if rng.random() < 0.5 else _other(rng, ANIMALS, (animal,)))
    return f"Words: {', '.join(items)}. Claim: {said} is the animal among them. True or false?", \
        _yes_no(truth, "true", "false")


def _distinct(rng, truth: bool) -> tuple[str, str]:
    words = _pick(rng, ADJECTIVES, 3)
    if not truth:
        i, j = (int(x) for x in rng.choice(3, 2, replace=False))
        words[j] = words[i]
    return f"List: {', '.join(words)}. Are the words all different?", _yes_no(truth)


def _caps(rng, truth: bool) -> tuple[str, str]:
    thing, adj = THINGS[rng.integers(len(THINGS))], ADJECTIVES[rng.integers(len(ADJECTIVES))]
    line = f"the {thing} is {adj}"
    shown = line if truth else (f"the {_other(rng, THINGS, (thing,))} is {adj}" if rng.random() < 0.5
                                else f"the {thing} is {_other(rng, ADJECTIVES, (adj,))}")
    return f"Text: {line}. In capitals: {shown.upper()}. Same words?", _yes_no(truth)


def _backwards(rng, truth: bool) -> tuple[str, str]:
    words = _pick(rng, WORDS, int(rng.integers(3, 5)))
    shown = words[::-1]
    if not truth:   # the words as they were, or backwards with two of them swapped (distinct words: never right)
        i, j = (int(x) for x in rng.choice(len(words), 2, replace=False))
        shown = list(words) if rng.random() < 0.3 else shown[:]
        shown[i], shown[j] = (shown[i], shown[j]) if shown == words else (shown[j], shown[i])
    return f"Words: {' '.join(words)}. Backwards: {' '.join(shown)}. Right or wrong?", \
        _yes_no(truth, "right", "wrong")


def _sum(rng, truth: bool) -> tuple[str, str]:
    a, b = (int(x) for x in rng.integers(0, 50, 2))
    total = a + b if truth else a + b + int(rng.choice([-10, -2, -1, 1, 2, 10]))
    return f"Sum: {a} + {b} = {total}. Right or wrong?", _yes_no(truth, "right", "wrong")


MAKERS = {"fact": _fact, "read": _read, "member": _member, "animal": _animal, "distinct": _distinct,
          "caps": _caps, "backwards": _backwards, "sum": _sum}


def nlp_records(seed: int, n: int, split: str = "train"):
    """n records of the world's NLP datasets, the kinds in turn (so any prefix is balanced across kinds), each
    yes/no kind's label alternating; the same seed and split give the same records, the two splits differ."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; expected one of {sorted(SPLITS)}")
    if n < 0:
        raise ValueError(f"n={n}; expected >= 0")
    rng = np.random.default_rng([seed, NLP_STREAM, SPLITS[split]])
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        truth = (i // len(KINDS)) % 2 == 0
        prompt, response = MAKERS[kind](rng, truth)
        yield {"prompt": prompt, "response": response, "kind": kind}


# ---------------------------------------------------------------- the answer key, read back from a prompt

_PASSAGE = r"Passage: the (\w+) is (\w+) and the (\w+) is (\w+)\. "
_KEYS = (
    ("fact", re.compile(_PASSAGE + r"Claim: the (\w+) is (\w+)\. True or false\?$")),
    ("read", re.compile(_PASSAGE + r"Question: what is the (\w+) like\? Answer:$")),
    ("member", re.compile(r"Words: ([\w, ]+)\. Is (\w+) one of them\?$")),
    ("animal", re.compile(r"Words: ([\w, ]+)\. Claim: (\w+) is the animal among them\. True or false\?$")),
    ("distinct", re.compile(r"List: ([\w, ]+)\. Are the words all different\?$")),
    ("caps", re.compile(r"Text: ([\w ]+)\. In capitals: ([\w ]+)\. Same words\?$")),
    ("backwards", re.compile(r"Words: ([\w ]+)\. Backwards: ([\w ]+)\. Right or wrong\?$")),
    ("sum", re.compile(r"Sum: (\d+) \+ (\d+) = (-?\d+)\. Right or wrong\?$")),
)


def answer(prompt: str) -> str:
    """The right answer to one of these datasets' prompts, worked out from the prompt alone (so a model's answer
    can be scored without the file it came from); ValueError for a prompt of no kind here."""
    for kind, pattern in _KEYS:
        m = pattern.match(prompt)
        if not m:
            continue
        g = m.groups()
        if kind in ("fact", "read"):
            facts = {g[0]: g[1], g[2]: g[3]}
            return facts.get(g[4], "") if kind == "read" else _yes_no(facts.get(g[4]) == g[5], "true", "false")
        if kind == "member":
            return _yes_no(g[1] in g[0].split(", "))
        if kind == "animal":
            return _yes_no(g[1] in g[0].split(", ") and g[1] in ANIMALS, "true", "false")
        if kind == "distinct":
            words = g[0].split(", ")
            return _yes_no(len(set(words)) == len(words))
        if kind == "caps":
            return _yes_no(g[0].upper() == g[1])
        if kind == "backwards":
            return _yes_no(g[0].split()[::-1] == g[1].split(), "right", "wrong")
        return _yes_no(int(g[0]) + int(g[1]) == int(g[2]), "right", "wrong")
    raise ValueError(f"not a prompt of the world's NLP datasets: {prompt!r}")


def answer_score(prompts: list[str], texts: list[str]) -> list[float]:
    """1 where a response's first word is the prompt's answer, else 0: the datasets' accuracy (a gold judge for
    SFT's evaluation, `config.eval.gold_judge = "nlp"`)."""
    firsts = [(t.split() or [""])[0].strip(".,!?").lower() for t in texts]
    return [float(f == answer(p)) for p, f in zip(prompts, firsts)]
