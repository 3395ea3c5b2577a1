"""instructgpt_jax/skills.py: the cloze questions are the web's own lines, and their scores match a slow loop."""

import json
import os
import re
import sys

import numpy as np
import pytest
from flax import nnx

from instructgpt_jax import checkpoint, skills
from instructgpt_jax.data import web
from instructgpt_jax.data.assistant import ANIMALS, LINE_TOPICS, THINGS
from instructgpt_jax.data.tasks import WORDS
from instructgpt_jax.model import GPTConfig, abstract_model
from instructgpt_jax.tokenizer import make_tokenizer
from test_model import random_params

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
import skill_probe  # noqa: E402
from test_pipeline import smoke_workdir  # noqa: E402  the same session workdir: run once, then skipped


def test_each_answer_follows_from_its_question():
    for c in skills.questions("lookup", 50, seed=3):
        facts = dict(re.findall(r"the (\w+) is (\w+)", c.question.replace("The ", "the ", 1)))
        asked = re.search(r"How is the (\w+)\?", c.question).group(1)
        assert c.answer == facts[asked] and c.question.endswith(f"The {asked} is")
    for c in skills.questions("animal", 50, seed=3):
        listed = re.match(r"Of (.*), only the$", c.question).group(1).split(", ")
        assert [w for w in listed if w in ANIMALS] == [c.answer]
    for c in skills.questions("sign", 50, seed=3):
        topic = re.search(r"sign about (.*)\. It said:", c.question).group(1)
        assert c.answer == topic.split()[-1].upper() and topic in LINE_TOPICS
    for c in skills.questions("reply", 50, seed=3):
        assert re.match(r"Customer: my (\w+) ", c.question).group(1) == c.answer and c.answer in THINGS
    for c in skills.questions("unpack", 50, seed=3):
        listed = re.search(r"packed (.*), and unpacked", c.question).group(1).split()
        assert c.answer == listed[-1] and c.candidates == tuple(listed)
    for c in skills.questions("copy", 50, seed=3):
        posted, said = re.fullmatch(r"\w+: ([a-z ]+)\.\n\w+: \w+ said ([a-z ]+)", c.question).groups()
        assert posted == f"{said} {c.answer}" and c.answer in WORDS and len(c.candidates) == len(WORDS)
    for skill in skills.SKILLS:
        items = skills.questions(skill, 20, seed=1)
        assert all(c.answer in c.candidates and len(set(c.candidates)) == len(c.candidates) for c in items)
        assert items == skills.questions(skill, 20, seed=1) and items != skills.questions(skill, 20, seed=2)
    with pytest.raises(ValueError, match="skill 'sorting'"):
        skills.questions("sorting", 1)


def test_the_web_writes_the_questions_lines_with_their_answers():
    """Every probed form occurs in the web text with the answer the probe expects (the probe asks what the
    base model read, in its words); web v3 holds four stories for each note, description and dialogue."""
    text = web.web_text(0, 200_000, version=3)
    lookups = re.findall(r"The (\w+) is (\w+) and the (\w+) is (\w+)\. How is the (\w+)\? The \5 is (\w+)\.", text)
    assert len(lookups) > 100 and all(dict([(a, b), (c, d)])[q] == ans for a, b, c, d, q, ans in lookups)
    animals = re.findall(r"Of ([\w, ]+), only the (\w+) is an animal\.", text)
    assert len(animals) > 100 and all(a in x.split(", ") and a in ANIMALS for x, a in animals)
    assert re.search(r"made a sign about .*\. It said: [A-Z ]+", text)
    assert re.search(r"Customer: my (\w+) .*\.\nAgent: Sorry about your \1\.", text)
    assert re.search(r"packed (\w+) (\w+) (\w+), and unpacked them as \3 \2 \1\.", text)
    docs = text.split("\n\n")
    stories = sum(bool(re.search(r"How is the|is an animal\.", d)) for d in docs)
    assert 0.45 < stories / len(docs) < 0.70   # 4 / 7 of the documents
    quotes = re.findall(r"(\w+): ([a-z ]+)\.\n\w+: \1 said ([a-z ]+)\.", web.web_text(0, 200_000, version=4))
    assert len(quotes) > 50 and all(posted == said for _, posted, said in quotes)
    v2 = web.web_text(0, 200_000, version=2).split("\n\n")
    assert 0.15 < sum(bool(re.search(r"How is the|is an animal\.", d)) for d in v2) / len(v2) < 0.35


@pytest.mark.parametrize("tokenizer", ["byte", "world"])
def test_candidate_logprobs_match_one_forward_per_candidate(tokenizer):
    tok = make_tokenizer(tokenizer)
    cfg = GPTConfig(vocab_size=2048 if tokenizer == "world" else 261, n_positions=128, n_layer=2, n_head=2, n_embd=32)
    graphdef = abstract_model(cfg)[0]
    model = nnx.merge(graphdef, random_params(cfg, seed=4))
    item = skills.questions("unpack", 1, seed=5)[0]
    got = skills.candidate_logprobs(model, tok, item, width=96)
    for i, c in enumerate(item.candidates):   # unpadded, one candidate at a time, log-softmax in NumPy
        ids = tok.encode(f"{item.question} {c}")
        start = len(tok.encode(item.question))
        h, _ = model.trunk(np.asarray([ids], np.int32))
        logits = np.asarray(model.logits(h)[0], np.float64)
        top = logits.max(-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        want = sum(logp[t - 1, ids[t]] for t in range(start, len(ids)))
        assert got[i] == pytest.approx(want, abs=1e-4)
    hit = int(np.argmax(got)) == item.candidates.index(item.answer)
    assert skills.accuracy(model, tok, [item], width=96) == float(hit)
    assert skills.chance([item]) == pytest.approx(1 / len(item.candidates))


def test_in_context_share_is_the_probability_on_the_stated_candidates():
    """read()'s in_context: the candidates' probability (normalised over them) on those the question states,
    here the two adjectives of a lookup; its uniform level is 2 of the 22 adjectives."""
    tok = make_tokenizer("world")
    cfg = GPTConfig(vocab_size=2048, n_positions=128, n_layer=2, n_head=2, n_embd=32)
    model = nnx.merge(abstract_model(cfg)[0], random_params(cfg, seed=4))
    items = skills.questions("lookup", 3, seed=5)
    shares, hits = [], []
    for item in items:
        stated_adjectives = set(re.findall(r"is (\w+)", item.question)[:2])
        inside = np.array([c in stated_adjectives for c in item.candidates])
        assert inside.sum() == 2 and (skills.stated(item) == inside).all()
        p = np.exp(skills.candidate_logprobs(model, tok, item, width=64).astype(np.float64))
        shares.append(p[inside].sum() / p.sum())
        hits.append(int(np.argmax(p)) == item.candidates.index(item.answer))
    got = skills.read(model, tok, items, width=64)
    assert got["in_context"] == pytest.approx(np.mean(shares), rel=1e-5)
    assert got["in_context_uniform"] == pytest.approx(2 / len(items[0].candidates))
    assert got["accuracy"] == np.mean(hits)


def test_skill_probe_runs_on_a_pipeline_workdir(tmp_path_factory, tmp_path, capsys):
    workdir, _, _ = smoke_workdir(tmp_path_factory)
    out = tmp_path / "skills.json"
    figures = skill_probe.main(["--workdir", str(workdir), "--stages", "pretrain,sft", "--n", "3", "--json", str(out)])
    assert json.loads(out.read_text())["stages"] == figures and set(figures) == {"pretrain", "sft"}
    for stage in figures.values():
        assert set(stage) == set(skills.SKILLS)
        assert all(f["n"] == 3 and f["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0) for f in stage.values())
        assert all(0.0 <= f["in_context"] <= 1.0 for f in stage.values())
    printed = capsys.readouterr().out
    assert "lookup" in printed and "on those the question states" in printed
    # Every kept checkpoint, a column each; the newest is the default column's model.
    kept = checkpoint.all_steps(str(workdir / "pretrain" / "checkpoints"))
    assert len(kept) >= 2
    over_steps = skill_probe.main(["--workdir", str(workdir), "--stages", "pretrain", "--n", "3", "--steps", "all"])
    assert list(over_steps) == [f"pretrain@{step}" for step in kept]
    assert over_steps[f"pretrain@{kept[-1]}"] == figures["pretrain"]
    assert skill_probe.main(["--workdir", str(workdir), "--stages", "pretrain", "--n", "3", "--steps",
                             str(kept[0])]) == {f"pretrain@{kept[0]}": over_steps[f"pretrain@{kept[0]}"]}
    with pytest.raises(SystemExit, match=rf"keeps checkpoints at steps \[{kept[0]}, .*not at \[{kept[0] + 1}\]"):
        skill_probe.main(["--workdir", str(workdir), "--stages", "pretrain", "--steps", str(kept[0] + 1)])
    with pytest.raises(SystemExit, match="expected '', 'all' or comma-separated steps"):
        skill_probe.main(["--workdir", str(workdir), "--stages", "pretrain", "--steps", "last"])
    with pytest.raises(SystemExit, match="no checkpoints in nope"):
        skill_probe.main(["--workdir", str(workdir), "--stages", "pretrain,nope"])
    with pytest.raises(SystemExit, match="name at least one stage"):
        skill_probe.main(["--workdir", str(workdir), "--stages", ","])
