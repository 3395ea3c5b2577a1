"""The world's public NLP datasets (data/nlp.py): labels by construction that the answer key, read back from the
prompt alone, agrees with; balanced labels; no instruction family's phrasing; deterministic splits."""

import collections

import pytest

from instructgpt_jax.data import nlp
from instructgpt_jax.data.judge import parse
from instructgpt_jax.data.world import gold_judge


def test_every_label_is_the_answer_key_of_its_prompt():
    for split in ("train", "val"):
        records = list(nlp.nlp_records(5, 4000, split))
        assert [r["response"] for r in records] == [nlp.answer(r["prompt"]) for r in records]


def test_each_kind_appears_equally_and_its_two_labels_half_each():
    records = list(nlp.nlp_records(0, 1600))
    kinds = collections.Counter(r["kind"] for r in records)
    assert set(kinds) == set(nlp.KINDS) and set(kinds.values()) == {200}
    for kind in set(nlp.KINDS) - {"read"}:
        labels = collections.Counter(r["response"] for r in records if r["kind"] == kind)
        assert len(labels) == 2 and set(labels.values()) == {100}, (kind, labels)
    # the wrong claims are wrong for more than one reason (another given fact, or one not given at all)
    facts = [r["prompt"] for r in records if r["kind"] == "fact" and r["response"] == "false"]
    given = sum(p.split("Claim: the ")[1].split(" is ")[1].split(".")[0] in p.split("Claim:")[0] for p in facts)
    assert 0 < given < len(facts)


def test_the_same_seed_and_split_give_the_same_records_and_the_splits_differ():
    assert list(nlp.nlp_records(3, 200)) == list(nlp.nlp_records(3, 200))
    train = {r["prompt"] for r in nlp.nlp_records(3, 2000, "train")}
    val = [r["prompt"] for r in nlp.nlp_records(3, 200, "val")]
    assert val != [r["prompt"] for r in nlp.nlp_records(3, 200, "train")]
    assert sum(p in train for p in val) < 60   # short yes/no items may repeat by chance; most do not
    with pytest.raises(ValueError, match="split 'test'"):
        next(nlp.nlp_records(0, 1, "test"))


def test_no_record_is_an_instruction_of_the_world():
    for r in nlp.nlp_records(0, 400):
        assert parse(r["prompt"]) is None, r["prompt"]   # the gold judge knows none of them


def test_the_answer_key_scores_first_words_and_rejects_other_prompts():
    records = list(nlp.nlp_records(1, 16))
    prompts = [r["prompt"] for r in records]
    texts = [f"{r['response'].capitalize()}." for r in records]
    assert gold_judge("nlp")(prompts, texts) == [1.0] * 16
    wrong = {"true": "false", "false": "true", "yes": "no", "no": "yes", "right": "wrong", "wrong": "right"}
    flipped = [wrong.get(r["response"], "nothing") for r in records]
    assert nlp.answer_score(prompts, flipped) == [0.0] * 16
    assert nlp.answer_score(prompts[:1], [""]) == [0.0]
    assert nlp.answer("Sum: 2 + 2 = 5. Right or wrong?") == "wrong"
    assert nlp.answer("Text: the hat is old. In capitals: THE HAT IS OLD. Same words?") == "yes"
    with pytest.raises(ValueError, match="not a prompt of the world's NLP datasets"):
        nlp.answer("Of ink, cup, frog, which one is an animal?")
