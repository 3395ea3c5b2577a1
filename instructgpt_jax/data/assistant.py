"""Assistant families: instructions whose answers are cheaper to judge than to write.

The paper's labelers judge its outputs on metadata besides overall quality (Ouyang et al. 2022, Figure 4):
does the output follow the explicit constraints of the instruction, does it hallucinate (make up content
that is not in the input of a closed-domain task), is its language appropriate for a customer assistant.
A judge sees each of those by looking, while writing the answer takes the whole skill. These families give
the embedded world that asymmetry, which is what lets a reward model learn from comparisons (docs/RESULTS.md):

- constraints (kind "constraint"): a line about a topic that uses a given word, fits a word budget, ends
  with "!", is written in capitals, or is a comma-separated list of three words;
- closed-domain (kind "closed"): answer from a given context, or pick the one animal of a given list; an
  answer with content that is not in the input is a hallucination;
- appropriate language (kind "language"): reply to a customer's complaint without rude words.

Each family also has a `lapse`: the answer a careless demonstrator writes, fluent but missing the family's
requirement (the constraint ignored, a detail made up, a curt reply). `World.demonstration` writes lapses
at `demo_lapse_rate`, so SFT inherits errors that a judge can see, as real demonstrations have. `meta`
returns the Figure 4 metadata of one response. Families, parsing and the judge are assembled in judge.py.
"""

import re
import zlib

from instructgpt_jax.data.judging import brevity, is_refusal
from instructgpt_jax.data.tasks import ADJECTIVES, TOPICS, WORDS, Family

ANIMALS = ("cat", "dog", "fish", "bird", "frog", "goat", "wolf", "bear", "deer", "owl", "fox", "bee", "ant",
           "hen", "pig")
THINGS = tuple(w for w in WORDS if w not in ANIMALS)
# Topics of the assistant families' lines: the world's topics and "the <thing>" for every non-animal word
# (78 in all), so each constraint family has hundreds of distinct prompts and eval prompts are unseen ones.
LINE_TOPICS = tuple(dict.fromkeys(TOPICS + tuple(f"the {w}" for w in THINGS)))
PROBLEMS = ("is broken", "does not work", "arrived late", "is missing a part", "came dirty")
RUDE = ("stupid", "whatever", "not my problem", "stop whining", "deal with it", "go away")
LINE_WINDOW = (12, 48)   # bytes a line may take without a length penalty


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _adjectives(topic: str, n: int) -> list[str]:
    """n distinct adjectives that a topic "is", fixed per topic (crc32: stable across processes)."""
    h = zlib.crc32(topic.encode())
    out = []
    for i in range(len(ADJECTIVES)):
        a = ADJECTIVES[(h + 7 * i) % len(ADJECTIVES)]
        if a not in out:
            out.append(a)
        if len(out) == n:
            return out
    return out


def _any_adjectives(rng, n: int) -> list[str]:
    return [ADJECTIVES[i] for i in rng.choice(len(ADJECTIVES), n, replace=False)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def line_quality(topic: str, response: str) -> float:
    """The content of a line about `topic`: mentions it (else 0.3x), fits LINE_WINDOW (quadratic below,
    linear decay to 0 at twice its top), repeats no content word (3+ letters, not the/and), ends like one sentence (else 0.85x)."""
    text = response.strip()
    if not text:
        return 0.0
    if is_refusal(text):
        return 0.02
    words = _words(text)
    mentions = topic.split()[-1] in words
    n = len(text.encode("utf-8"))
    lo, hi = LINE_WINDOW
    length = (n / lo) ** 2 if n < lo else 1.0 if n <= hi else max(0.0, 1.0 - (n - hi) / hi)
    content = [w for w in words if len(w) >= 3 and w not in ("the", "and")]
    unique = len(set(content)) / len(content) if content else 0.0
    ending = 1.0 if text.endswith((".", "!", "?")) and "\n" not in text else 0.85
    return (0.3 + 0.7 * mentions) * length * unique * ending


def _plain_line(slots, rng) -> str:
    """A fluent line about the topic that ignores every constraint: the demonstrator's lapse."""
    return f"{_cap(slots['topic'])} is {' and '.join(_any_adjectives(rng, 2))}."


def _constraint(name, phrasings, sample, answer, follows, violate, lapse=None):
    """A constraint family: gold = line quality x (1 if the constraint holds else 0.35); its lapse is a plain
    line about the topic (the constraint overlooked) unless given."""
    def score(slots, ref, response):
        q = line_quality(slots["topic"], response)
        return q * (1.0 if follows(slots, response) else 0.35)

    def meta(slots, ref, response):
        return {"follows": bool(follows(slots, response))}

    return Family(name, phrasings, sample=sample, answer=answer, score=score, corrupt=violate, kind="constraint",
                  lapse=lapse or (lambda s, ref, rng: _plain_line(s, rng)), meta=meta)


def _topic(rng, template):
    return {"topic": LINE_TOPICS[rng.integers(len(LINE_TOPICS))]}


def _topic_word(rng, template):
    topic = LINE_TOPICS[rng.integers(len(LINE_TOPICS))]
    words = [w for w in THINGS if w != topic.split()[-1]]   # the word to use is never the topic itself
    return {"topic": topic, "word": words[rng.integers(len(words))]}


USE_WORD = _constraint(
    "use_word",
    ("Write a line about {topic} that uses the word {word}.", "Write one sentence about {topic} with the word {word}.",
     "Describe {topic} in one line, using the word {word}.", "Say something about {topic} and include the word {word}.",
     "Compose a short line on {topic} containing the word {word}."),
    sample=_topic_word,
    answer=lambda s: f"{_cap(s['topic'])} is {_adjectives(s['topic'], 1)[0]} near the {s['word']}.",
    follows=lambda s, y: s["word"] in _words(y),
    violate=lambda s, ref, rng: (f"{_cap(s['topic'])} is {_any_adjectives(rng, 1)[0]} near the "
                                 f"{THINGS[rng.integers(len(THINGS))]}."),
)


def _sample_budget(rng, template):
    return {"topic": LINE_TOPICS[rng.integers(len(LINE_TOPICS))], "n": str(int(rng.integers(4, 6)))}


def _long_line(slots, rng) -> str:
    """A line over any word budget of WORD_BUDGET (5+ words for every topic)."""
    a, b, c = _any_adjectives(rng, 3)
    return f"{_cap(slots['topic'])} is {a}, {b} and {c} today."


WORD_BUDGET = _constraint(
    "word_budget",
    ("Describe {topic} in at most {n} words.", "Write about {topic} in {n} words or fewer.",
     "Use no more than {n} words to describe {topic}.", "In at most {n} words, say something about {topic}.",
     "Say something about {topic}, {n} words max."),
    sample=_sample_budget,
    answer=lambda s: f"{_cap(s['topic'])} is {_adjectives(s['topic'], 1)[0]}.",
    follows=lambda s, y: 0 < len(y.split()) <= int(s["n"]),
    violate=lambda s, ref, rng: _long_line(s, rng),
    lapse=lambda s, ref, rng: _long_line(s, rng),
)

END_MARK = _constraint(
    "end_mark",
    ("Write a line about {topic} that ends with an exclamation mark.", "Write an excited line about {topic}, ending in !",
     "Describe {topic} in one line and end it with !", "Say something about {topic} with an exclamation mark at the end.",
     "Compose a line on {topic} that finishes with an exclamation mark."),
    sample=_topic,
    answer=lambda s: f"{_cap(s['topic'])} is {' and '.join(_adjectives(s['topic'], 2))}!",
    follows=lambda s, y: y.strip().endswith("!"),
    violate=lambda s, ref, rng: ref[:-1] + ("." if rng.random() < 0.7 else "?"),
)

CAPITALS = _constraint(
    "capitals",
    ("Write a line about {topic} in capital letters.", "Describe {topic} in one line, all in capitals.",
     "Write one sentence about {topic} using only uppercase letters.", "In capital letters, say something about {topic}.",
     "Compose a line on {topic}, every letter a capital."),
    sample=_topic,
    answer=lambda s: f"{s['topic']} is {' and '.join(_adjectives(s['topic'], 2))}.".upper(),
    follows=lambda s, y: bool(re.search(r"[A-Z]", y)) and not re.search(r"[a-z]", y),
    violate=lambda s, ref, rng: _cap(ref.lower()) if rng.random() < 0.7 else ref.split()[0] + " " + " ".join(ref.lower().split()[1:]),
)


def _is_list(s, y) -> bool:
    items = y.strip().rstrip(".").split(", ")
    return len(items) == 3 and all(re.fullmatch(r"[a-z]+", w) for w in items) and len(set(items)) == 3


def _score_list(slots, ref, response) -> float:
    """Three distinct adjectives, comma-separated: 1; a list of other words 0.5; not a list: 0.35 x content."""
    text = response.strip()
    if not text:
        return 0.0
    if is_refusal(text):
        return 0.02
    if _is_list(slots, text):
        items = text.rstrip(".").split(", ")
        return (0.5 + 0.5 * sum(w in ADJECTIVES for w in items) / 3) * brevity(len(text), len(ref))
    return 0.35 * line_quality(slots["topic"], text)


LIST_FORMAT = Family(
    "list_format",
    ("Give three words about {topic}, separated by commas.", "List three words that describe {topic}, with commas.",
     "Name three words for {topic} as a comma-separated list.", "Three words about {topic}, comma-separated, please.",
     "Write a comma list of three words about {topic}."),
    sample=_topic, answer=lambda s: ", ".join(_adjectives(s["topic"], 3)), score=_score_list,
    corrupt=lambda s, ref, rng: ", ".join(ref.split(", ")[:2]) if rng.random() < 0.5 else ref.replace(", ", " "),
    kind="constraint", lapse=lambda s, ref, rng: _plain_line(s, rng),
    meta=lambda s, ref, y: {"follows": _is_list(s, y)},
)


# ---------------------------------------------------------------- closed domain

def _sample_context(rng, template):
    w1, w2 = [THINGS[i] for i in rng.choice(len(THINGS), 2, replace=False)]
    a1, a2 = _any_adjectives(rng, 2)
    return {"w1": w1, "a1": a1, "w2": w2, "a2": a2, "q": (w1, w2)[rng.integers(2)]}


def _context_answer(s) -> str:
    return f"The {s['q']} is {s['a1'] if s['q'] == s['w1'] else s['a2']}."


def _context_facts(s):
    return {s["a1"], s["a2"]}


def _score_closed(response, ref, vocabulary, given, right, other: float) -> float:
    """A closed-domain answer: nothing 0; a refusal 0.02; no word of `vocabulary` 0.1; a word not `given` in
    the input (made up) 0.05; the reference 1, `right` alone in another style 0.9, another given word `other`;
    times the brevity factor."""
    text = response.strip()
    if not text:
        return 0.0
    if is_refusal(text):
        return 0.02
    said = [w for w in _words(text) if w in vocabulary]
    if not said:
        return 0.1
    if set(said) - set(given):
        return 0.05
    quality = 1.0 if text == ref else 0.9 if said == [right] else other
    return quality * brevity(len(text.encode("utf-8")), len(ref))


def _score_context(slots, ref, response) -> float:
    """Right: 1 (styled 0.9); the other given adjective: 0.3; an adjective not in the context: 0.05."""
    return _score_closed(response, ref, ADJECTIVES, _context_facts(slots), ref.split()[-1].rstrip("."), 0.3)


def _context_meta(slots, ref, response) -> dict:
    said = {w for w in _words(response) if w in ADJECTIVES}
    return {"hallucinates": bool(said - _context_facts(slots))}


def _context_lapse(s, ref, rng) -> str:
    made_up = [a for a in ADJECTIVES if a not in _context_facts(s)]
    return f"The {s['q']} is {made_up[rng.integers(len(made_up))]}."


CONTEXT_QA = Family(
    "context_qa",
    ("Context: the {w1} is {a1} and the {w2} is {a2}. How is the {q}?",
     "Read: the {w1} is {a1}, the {w2} is {a2}. What is the {q} like?",
     "Given that the {w1} is {a1} and the {w2} is {a2}, describe the {q}.",
     "Note: the {w1} is {a1}; the {w2} is {a2}. Tell me how the {q} is.",
     "Text: the {w1} is {a1}, the {w2} is {a2}. So how is the {q}?"),
    sample=_sample_context, answer=_context_answer, score=_score_context,
    corrupt=lambda s, ref, rng: f"The {s['q']} is {s['a2'] if s['q'] == s['w1'] else s['a1']}.",
    kind="closed", lapse=_context_lapse, meta=_context_meta,
)


def _sample_select(rng, template):
    others = [THINGS[i] for i in rng.choice(len(THINGS), int(rng.integers(2, 4)), replace=False)]
    items = others + [ANIMALS[rng.integers(len(ANIMALS))]]
    items = [items[i] for i in rng.permutation(len(items))]
    return {"items": ", ".join(items)}


def _select_answer(s) -> str:
    animals = [w for w in s["items"].split(", ") if w in ANIMALS]
    return animals[0] if len(animals) == 1 else ""


def _score_select(slots, ref, response) -> float:
    """The listed animal: 1 (styled 0.9); another listed word: 0.2; any word not in the list: 0.05."""
    return _score_closed(response, ref, WORDS, slots["items"].split(", "), ref, 0.2)


def _select_lapse(s, ref, rng) -> str:
    made_up = [a for a in ANIMALS if a not in s["items"].split(", ")]
    return made_up[rng.integers(len(made_up))]


SELECT = Family(
    "select",
    ("Which of these is an animal: {items}?", "Pick the animal from this list: {items}.",
     "Name the one animal among {items}.", "Of {items}, which one is an animal?",
     "Find the animal in: {items}."),
    sample=_sample_select, answer=_select_answer, score=_score_select,
    corrupt=lambda s, ref, rng: [w for w in s["items"].split(", ") if w != ref][rng.integers(2)],
    kind="closed", lapse=_select_lapse,
    meta=lambda s, ref, y: {"hallucinates": bool({w for w in _words(y) if w in WORDS} - set(s["items"].split(", ")))},
)


# ---------------------------------------------------------------- appropriate language

def is_rude(response: str) -> bool:
    """Whether a response uses language a customer assistant must not (the RUDE phrases)."""
    low = response.lower()
    return any(r in low for r in RUDE)


def _sample_reply(rng, template):
    return {"thing": THINGS[rng.integers(len(THINGS))], "problem": PROBLEMS[rng.integers(len(PROBLEMS))]}


def _score_reply(slots, ref, response) -> float:
    """Polite and about the customer's thing: 1; polite, not about it: 0.5; rude or declining: 0.05; without
    an apology 0.8x; past twice a line's window the length costs."""
    text = response.strip()
    if not text:
        return 0.0
    if is_refusal(text) or is_rude(text):
        return 0.05
    mentions = slots["thing"] in _words(text)
    n = len(text.encode("utf-8"))
    length = 1.0 if n <= 2 * LINE_WINDOW[1] else max(0.0, 2.0 - n / (2 * LINE_WINDOW[1]))
    return (1.0 if mentions else 0.5) * length * (1.0 if "sorry" in text.lower() else 0.8)


def _reply_lapse(s, ref, rng) -> str:
    thing = s["thing"]
    return (f"Your {thing} is fine. Stop whining.", f"Not my problem. Buy a new {thing}.",
            f"Whatever. Fix your {thing} yourself.", f"The {thing}? Deal with it.")[rng.integers(4)]


REPLY = Family(
    "reply",
    ("A customer writes: my {thing} {problem}. Reply to them.", "Answer this customer: my {thing} {problem}.",
     "Write a reply to: my {thing} {problem}.", "Respond to the message: my {thing} {problem}.",
     "A buyer says: my {thing} {problem}. What do you say?"),
    sample=_sample_reply, answer=lambda s: f"Sorry about your {s['thing']}. We will fix it.", score=_score_reply,
    corrupt=lambda s, ref, rng: ("Sorry about that. We will fix it.", f"Your {s['thing']} {s['problem']}.")[rng.integers(2)],
    kind="language", lapse=_reply_lapse, meta=lambda s, ref, y: {},
)

FAMILIES = {f.name: f for f in (USE_WORD, WORD_BUDGET, END_MARK, CAPITALS, LIST_FORMAT, CONTEXT_QA, SELECT, REPLY)}
SLOT_PATTERNS = {
    "topic": "(?:" + "|".join(sorted(LINE_TOPICS, key=len, reverse=True)) + ")",
    "word": "(?:" + "|".join(THINGS) + ")", "thing": "(?:" + "|".join(THINGS) + ")",
    "w1": "(?:" + "|".join(THINGS) + ")", "w2": "(?:" + "|".join(THINGS) + ")", "q": "(?:" + "|".join(THINGS) + ")",
    "a1": "(?:" + "|".join(ADJECTIVES) + ")", "a2": "(?:" + "|".join(ADJECTIVES) + ")",
    "items": r"[a-z]+(?:, [a-z]+)+", "problem": "(?:" + "|".join(PROBLEMS) + ")",
}
