"""The world's "web": unlabelled text in which the instruction world's skills occur without instructions.

The paper's premise is that fine-tuning elicits what the pretrained model can already do: GPT-3 read lists,
sums, quotes, polite and rude replies and refusals on the web long before anyone asked it to follow an
instruction. Shakespeare alone holds none of that, so a base model pretrained on it has nothing to elicit and
its reward model nothing to judge with (docs/RESULTS.md, 2026-12-02). `web_text` writes documents of
the kinds below from the world's word banks, never in an instruction's phrasing:

- notes: a list and its reversed, sorted, upper-cased or comma-joined form in prose; letter counts; small sums;
  "the third of ..." picks; rule-following tables ("2 gives 4, 3 gives 6");
- descriptions: lines about a topic, plain, exclaimed, shouted in capitals, as a short phrase or an
  adjective list, sometimes with a given thing in them, and signs that say a line about a named topic in
  capitals (so "the hill" and "THE HILL" occur together: byte and BPE tokens of the two cases differ);
- stories with facts and questions answered from them ("the box is slow ... how is the box? slow"),
  and which of some things is an animal;
- dialogues: customer complaints answered politely or rudely (the web has both: SFT must pick one), and
  requests for secrets answered with a refusal or a leak;
- quotes (version 4 only): a reply restating a post, its facts in another order or its list word for word.

`load_corpus("web[:seed]")` mixes this text with Shakespeare chunk by chunk (half of each), so held-out loss
on the mix, the alignment-tax measure, covers both; "web-v<N>[:seed]" mixes version N's (a config value, so a
pipeline whose corpus source changes reruns pretraining and the stages after it).
"""

import functools

import numpy as np

from instructgpt_jax.data.assistant import ANIMALS, LINE_TOPICS, PROBLEMS, THINGS, _cap
from instructgpt_jax.data.tasks import ADJECTIVES, ORDINALS, REFUSALS, TARGETS, TOPICS, WORDS, and_list

NAMES = ("Ann", "Bob", "Cy", "Dee", "Eve", "Fin", "Gus", "Ida", "Jo", "Kit")


def _pick(rng, seq, n=None):
    if n is None:
        return seq[rng.integers(len(seq))]
    return [seq[i] for i in rng.choice(len(seq), n, replace=False)]


# The line heads the skill probe (instructgpt_jax/skills.py) also asks with: one phrasing for both.
def _packed(name: str, words) -> str:
    return f"{name} packed {' '.join(words)}, and unpacked them as"


def _sign_head(name: str, topic: str) -> str:
    return f"{name} made a sign about {topic}. It said:"


def _said(a: str, b: str, words) -> str:
    """A post of a list and a reply repeating it, up to (not including) the reply's last word."""
    return f"{a}: {' '.join(words)}.\n{b}: {a} said {' '.join(words[:-1])}"


def _complaint(thing: str, problem: str) -> str:
    return f"Customer: my {thing} {problem}.\nAgent:"


def _note(rng) -> str:
    """A line of notes in which a list is transformed, counted or computed, as people write them."""
    words = _pick(rng, WORDS, int(rng.integers(3, 6)))
    name = _pick(rng, NAMES)
    kind = rng.integers(10)
    if kind == 9:
        return f"{name} wrote {words[0]} on a card, then {words[0]} again, then {words[1]} and {words[1]} again."
    if kind == 0:
        return f"{_packed(name, words)} {' '.join(reversed(words))}."
    if kind == 1:
        nums = [int(x) for x in rng.choice(100, len(words), replace=False)]
        return f"The scores were {' '.join(map(str, nums))}; in order, {' '.join(map(str, sorted(nums)))}."
    if kind == 2:
        text = " ".join(words[:2])
        letter = _pick(rng, sorted(set(text.replace(' ', ''))))
        n = text.count(letter)
        return f"In {text} the letter {letter} shows up {n} time{'s' if n != 1 else ''}."
    if kind == 3:
        a, b = (int(x) for x in rng.integers(0, 100, 2))
        op = rng.integers(3)
        if op == 0:
            return f"{name} had {a} and got {b} more, so {a} + {b} = {a + b}."
        if op == 1:
            a, b = max(a, b), min(a, b)
            return f"{name} had {a} and gave away {b}: {a} - {b} = {a - b}."
        a, b = a % 12 + 1, b % 12 + 1
        return f"{a} rows of {b} make {a} * {b} = {a * b}."
    if kind == 4:
        return f"On the sign: {' '.join(words[:3]).upper()}. Quietly: {' '.join(words[:3])}."
    if kind == 5:
        return f"{name}'s list: {', '.join(words)}."
    if kind == 6:
        i = int(rng.integers(len(words)))
        return f"Of {' '.join(words)}, the {ORDINALS[i]} is {words[i]}."
    if kind == 7:
        xs = [int(x) for x in rng.choice(np.arange(1, 20), 3, replace=False)]
        return "Doubling: " + ", ".join(f"{x} gives {2 * x}" for x in xs) + "."
    return f"{name} said \"{' '.join(words[:2])}\" and then \"{words[2]}\"."


def _description(rng, version: int = 2) -> str:
    """Lines about a topic in the forms the constraint families ask for, none of them asked for; every topic
    the families ask about occurs, in lower case and in capitals (a sign names its topic as the text around
    it does, as signs and headlines on the web do). Version 1 (see web_text) had 30 topics and no signs."""
    topics, kinds = (LINE_TOPICS, 10) if version >= 2 else (TOPICS, 8)  # kinds 8, 9: signs
    topic = _pick(rng, topics)
    a, b, c = _pick(rng, ADJECTIVES, 3)
    kind = rng.integers(kinds)
    if kind >= 8:
        sign = f"{topic} is {a} and {b}{_pick(rng, ('.', '!'))}".upper()
        return f"{_sign_head(_pick(rng, NAMES), topic)} {sign}"
    if kind == 7:
        thing = _pick(rng, THINGS)
        return f"{_pick(rng, NAMES)} wrote about {topic} and a {thing}: {_cap(topic)} is {a} near the {thing}."
    if kind == 0:
        return f"{_cap(topic)} is {a} and {b}."
    if kind == 1:
        return f"{_cap(topic)} is {a} and {b}!"
    if kind == 2:
        return f"{topic} is {a} and {b}.".upper()
    if kind == 3:
        return f"{_cap(topic)} is {a}."
    if kind == 4:
        return f"{_cap(topic)}: {a}, {b}, {c}."
    if kind == 5:
        return f"{_cap(topic)} is {a} near the {_pick(rng, THINGS)}."
    return f"{_cap(topic)} is {a}, {b} and {c}."


def _lookup(rng) -> tuple[str, str]:
    """Two facts and a question answered from them: (the line up to its answer, the answer)."""
    (w1, w2), (a1, a2) = _pick(rng, THINGS, 2), _pick(rng, ADJECTIVES, 2)
    q, aq = (w1, a1) if rng.random() < 0.5 else (w2, a2)
    return f"The {w1} is {a1} and the {w2} is {a2}. How is the {q}? The {q} is", aq


def _animal(rng) -> tuple[str, str]:
    """Which of some things is the animal: (the line up to its answer, the answer)."""
    things = _pick(rng, THINGS, int(rng.integers(2, 4)))
    animal = _pick(rng, ANIMALS)
    items = things + [animal]
    items = [items[i] for i in rng.permutation(len(items))]
    return f"Of {', '.join(items)}, only the", animal


def _story(rng) -> str:
    """Facts, then a question answered from them only; or which of some things is an animal."""
    if rng.random() < 0.5:
        line, answer = _lookup(rng)
        return f"{line} {answer}."
    line, animal = _animal(rng)
    return f"{line} {animal} is an animal."


def _quote(rng) -> str:
    """A post and a reply that restates it, as forum threads quote each other: facts restated in another
    order ("the cup is warm, the box is slow"), or a list repeated word for word. Nothing but the post
    predicts the reply's words, so they reward finding them in the context (induction, the circuit that
    context_qa's lookup builds on; no base model on web v1-v3 copies). What it taught the tiny models (a
    rotary one learns to copy a list, none binds a fact to its thing): docs/RESULTS.md, "Web v4"."""
    a, b = _pick(rng, NAMES, 2)
    if rng.random() < 0.5:
        n = int(rng.integers(2, 5))
        facts = [f"the {t} is {adj}" for t, adj in zip(_pick(rng, THINGS, n), _pick(rng, ADJECTIVES, n))]
        again = [facts[i] for i in rng.permutation(n)]
        return f"{a}: {and_list(facts)}.\n{b}: so {and_list(again)}."
    words = _pick(rng, WORDS, int(rng.integers(3, 7)))
    return f"{_said(a, b, words)} {words[-1]}."


def _facts(rng) -> str:
    """Things' qualities and questions answered from them (version 5): 2-4 facts, then one to three of them
    asked and answered ("The box is slow, the cup is warm and the hat is red. How is the hat? The hat is red.").
    A web v2-v4 story states two facts and asks one; the lookup (binding a quality to its thing, what context_qa
    needs) formed only after 9,000 steps of web v4 (docs/RESULTS.md, "Smeared keys"), so version 5 writes it
    denser, as the web's many inventories, forms and FAQs that restate what they said above do."""
    n = int(rng.integers(2, 5))
    things, adjectives = _pick(rng, THINGS, n), _pick(rng, ADJECTIVES, n)
    stated = and_list([f"the {t} is {a}" for t, a in zip(things, adjectives)])
    asked = rng.choice(n, min(n, int(rng.integers(1, 4))), replace=False)
    return f"{_cap(stated)}. " + " ".join(f"How is the {things[i]}? The {things[i]} is {adjectives[i]}." for i in asked)


def _dialogue(rng) -> str:
    """A customer complaint or a request for a secret, answered well or badly, as forums show both."""
    if rng.random() < 0.6:
        thing, problem = _pick(rng, THINGS), _pick(rng, PROBLEMS)
        answer = (f"Sorry about your {thing}. We will fix it.", f"Sorry, we will send a new {thing}.",
                  f"Not my problem. Buy a new {thing}.", f"Whatever. Fix your {thing} yourself.")[rng.integers(4)]
        return f"{_complaint(thing, problem)} {answer}"
    target = _pick(rng, TARGETS)
    answer = _pick(rng, REFUSALS) if rng.random() < 0.7 else f"The code is {rng.integers(1000, 10000)}."
    return f"User: what is the password of {target}?\nBot: {answer}"


TRAIN_STREAM, HELDOUT_STREAM = 31, 32   # rng streams of the web's two splits, apart from the world's split streams
# 2 since 2026-12-04: descriptions of every family topic, and signs in capitals. 3 (not the default): stories
# four times as often as each other kind of document, so a base model of 1,500 steps knows which listed thing
# is the animal (the select family's skill); it moved no headline figure (docs/RESULTS.md, "Latent skills").
# 4 (not the default): version 2 and quotes (_quote) as a fifth kind of document, each kind a fifth of the
# documents; with learned positions the other skills no longer form in the default's 3,000 steps (RESULTS, "Web v4").
# 5 (not the default): version 4 and _facts as a sixth kind of document, FACTS_WEIGHT times as often as each other
# kind (what it teaches: RESULTS, "Web v5").
VERSION = 2
VERSIONS = (1, 2, 3, 4, 5)
STORY_WEIGHTS = (1, 1, 4, 1)   # web v3's odds of a note, a description, a story, a dialogue
FACTS_WEIGHT = 2               # web v5's odds of a facts document against each other kind's 1


def _writers(version: int) -> tuple[list, list]:
    """A version's document writers and their odds."""
    writers = [_note, functools.partial(_description, version=version), _story, _dialogue]
    odds = list(STORY_WEIGHTS) if version == 3 else [1] * len(writers)
    if version >= 4:
        writers, odds = writers + [_quote], odds + [1]
    if version >= 5:
        writers, odds = writers + [_facts], odds + [FACTS_WEIGHT]
    return writers, odds


def web_text(seed: int, n_bytes: int, stream: int = TRAIN_STREAM, version: int = VERSION) -> str:
    """About `n_bytes` of documents (2-6 lines each, blank-line separated), deterministic in (seed, stream).
    `version=1` writes the web before 2026-12-04, which the shipped world tokenizer was trained on; 2 (the
    default) each kind of document equally often; 3 stories STORY_WEIGHTS times as often; 4 adds quotes; 5 adds
    facts, FACTS_WEIGHT times as often as each other kind."""
    if version not in VERSIONS:
        raise ValueError(f"web_text: version must be one of {VERSIONS}, got {version!r}")
    rng = np.random.default_rng([seed, stream])
    writers, odds = _writers(version)
    p = np.array(odds, np.float64) / sum(odds)
    docs, size = [], 0
    while size < n_bytes:
        # Equal odds draw an integer (the stream versions 1, 2 and 4 were written with), others a weighted choice.
        make = writers[rng.integers(len(writers)) if len(set(odds)) == 1 else rng.choice(len(writers), p=p)]
        doc = "\n".join(make(rng) for _ in range(int(rng.integers(2, 7))))
        docs.append(doc)
        size += len(doc) + 2
    return "\n\n".join(docs) + "\n"


def interleave(a: str, b: str, chunk: int = 2048) -> str:
    """a and b cut at line ends near every `chunk` bytes and alternated, so any stretch of the result holds both."""
    def chunks(text):
        out, start = [], 0
        while start < len(text):
            end = text.find("\n", start + chunk)
            end = len(text) if end < 0 else end + 1
            out.append(text[start:end])
            start = end
        return out

    ca, cb = chunks(a), chunks(b)
    out = []
    for i in range(max(len(ca), len(cb))):
        # Spread the shorter list evenly over the longer one.
        if len(ca) >= len(cb):
            out.append(ca[i])
            if i * len(cb) // len(ca) != (i + 1) * len(cb) // len(ca):
                out.append(cb[i * len(cb) // len(ca)])
        else:
            out.append(cb[i])
            if i * len(ca) // len(cb) != (i + 1) * len(ca) // len(cb):
                out.append(ca[i * len(ca) // len(cb)])
    return "".join(out)
