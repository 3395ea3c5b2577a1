"""Pretraining corpus: Shakespeare located in the installed package, cleaned, split by play; JSONL sources."""

import json
import re
import zlib

import numpy as np
import pytest

from instructgpt_jax.data import batching, corpus
from instructgpt_jax.tokenizer import make_tokenizer


def test_clean_markdown():
    md = ("# Macbeth\n\n## ACT I\n\n### SCENE II. A camp.\n\n_Alarum within. Enter DUNCAN,\nwith Attendants_\n\n"
          "**DUNCAN**  \nWhat bloody man is that?  \nAs two spent *swimmers*\\--\n\n\n\n__\\[Aside]_  \nAnon.\n")
    assert corpus.clean_markdown(md) == ("Macbeth\n\nACT I\n\nSCENE II. A camp.\n\nAlarum within. Enter DUNCAN,\n"
                                         "with Attendants\n\nDUNCAN:\nWhat bloody man is that?\nAs two spent swimmers--\n\n"
                                         "[Aside]\nAnon.\n")


def test_shakespeare_split_by_play():
    plays = corpus.shakespeare_plays()
    assert len(plays) == 38 and "macbeth" in plays and all(p.endswith(".md") for p in plays.values())
    text = corpus.shakespeare(heldout_fraction=0.05)
    total = len(text.train) + len(text.heldout)
    assert 4_500_000 < total < 5_500_000
    assert 0.05 <= len(text.heldout) / total < 0.15
    # Whole plays: the first plays in crc32 order are held out, and none of their speeches leak into train.
    first = min(plays, key=lambda n: zlib.crc32(n.encode()))
    title = open(plays[first], encoding="utf-8").readline().lstrip("# ").strip()
    assert text.heldout.count(title + "\n") >= 1 and (title + "\n\nACT I") not in text.train
    assert "MACBETH:\n" in text.train + text.heldout
    assert not any(c in text.train for c in "*_#\\")
    assert corpus.shakespeare(0.05) == text                       # deterministic
    assert len(corpus.shakespeare(0.2).heldout) > len(text.heldout)


def test_load_corpus_jsonl_and_lm_windows(tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = [f"document number {i} of the corpus" for i in range(200)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    text = corpus.load_corpus(str(path), heldout_fraction=0.1)
    train, heldout = text.train.split("\n\n"), text.heldout.split("\n\n")
    assert sorted(train + heldout) == sorted(docs) and 5 < len(heldout) < 40
    assert corpus.load_corpus(str(path), heldout_fraction=0.1) == text
    with pytest.raises(ValueError, match="heldout_fraction"):
        corpus.load_corpus(str(path), heldout_fraction=1.0)
    # Byte ids of the corpus become LM windows that are substrings of the text.
    tokenizer = make_tokenizer("byte")
    ids = np.asarray(tokenizer.encode(text.train), np.int32)
    batch = batching.lm_windows(ids, 0, 4, 33, seed=0)
    assert batch.shape == (4, 33)
    assert all(tokenizer.decode(row) in text.train for row in batch)


def test_web_text_holds_the_skills_without_instructions():
    """The world's web (data/web.py) shows each skill in prose, never in an instruction's phrasing."""
    from instructgpt_jax.data import judge, web

    text = web.web_text(0, 60_000)
    assert text == web.web_text(0, 60_000) and text != web.web_text(1, 60_000)
    assert web.web_text(0, 60_000, web.HELDOUT_STREAM) != text
    lines = [line for line in text.splitlines() if line]
    for marker in ("unpacked them as", "in order,", "the letter", " = ", "On the sign:", "'s list:", "the first",
                   "Doubling:", "is an animal", "How is the", "Customer:", "Agent: Sorry about", "Not my problem",
                   "Bot: The code is", "can't", "made a sign about"):
        assert any(marker in line for line in lines), marker
    assert any(line.endswith("!") for line in lines) and any(line.isupper() for line in lines)
    # Every topic the assistant families ask about is described, and named in capitals beside its lower case.
    from instructgpt_jax.data.assistant import LINE_TOPICS
    signs = [line for line in web.web_text(0, 600_000).splitlines() if "made a sign about" in line]
    for topic in LINE_TOPICS:
        assert any(f"about {topic}. It said: {topic.upper()} IS " in line for line in signs), topic
    # No line is a world prompt: the base model meets skills, not instructions.
    assert not any(judge.parse(line) for line in lines)
    # The arithmetic in the prose is right (what the base model learns from it is true).
    for line in lines:
        for a, op, b, c in re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", line):
            assert eval(f"{a} {op} {b}") == int(c), line


def test_web_v4_quotes_restate_their_post_and_leave_v2_as_it_was():
    """Web v4 adds replies that restate a post: the same facts (each thing keeps its adjective) in another
    order, or the same list word for word; no quote is a world prompt, and versions 1-3 do not change."""
    import hashlib

    from instructgpt_jax.data import judge, web

    # web_text(0, 100_000) of versions 1, 2 and 3 as written before version 4 existed.
    for version, md5 in ((1, "70f91a2293b8df04235490d571485651"), (2, "2d455fb7a9f2e560a7baff61d7708f44"),
                         (3, "4735817bbad45c94efe5d367adf4cec4")):
        assert hashlib.md5(web.web_text(0, 100_000, version=version).encode()).hexdigest() == md5, version
    assert web.web_text(0, 100_000) == web.web_text(0, 100_000, version=2)
    lines = web.web_text(0, 200_000, version=4).splitlines()
    facts = lists = 0
    for post, reply in zip(lines, lines[1:]):
        if m := re.fullmatch(r"(\w+): so (.*)\.", reply):
            said = re.findall(r"the (\w+) is (\w+)", post)
            again = re.findall(r"the (\w+) is (\w+)", m[2])
            assert post.startswith(post.split(":")[0] + ": the ") and sorted(said) == sorted(again), (post, reply)
            assert len(said) == len(dict(said)) >= 2, post
            facts += 1
        elif m := re.fullmatch(r"(\w+): (\w+) said ([a-z ]+)\.", reply):
            assert post == f"{m[2]}: {m[3]}.", (post, reply)
            lists += 1
    assert facts > 50 and lists > 50
    assert not any(judge.parse(line) for line in lines)
    with pytest.raises(ValueError, match=r"version must be one of \(1, 2, 3, 4, 5\), got 6"):
        web.web_text(0, 100, version=6)


def test_web_v5_answers_each_question_from_its_own_line():
    """Version 5's facts documents: every "How is the X? The X is Y." answers with the quality its own line gave
    X (never another line's), and version 4's text is what it was before version 5 existed."""
    import hashlib

    from instructgpt_jax.data import judge, web

    assert hashlib.md5(web.web_text(0, 100_000, version=4).encode()).hexdigest() == "da55e63f7ad03f5b11a5380ff7354433"
    text = web.web_text(0, 200_000, version=5)
    asked = 0
    for line in text.splitlines():
        if not (m := re.fullmatch(r"The (.*?)\. (How is the .*)", line)):
            continue
        stated = dict(re.findall(r"(?:^|, | and )the (\w+) is (\w+)", "the " + m[1]))
        assert len(stated) >= 2, line
        for thing, again, quality in re.findall(r"How is the (\w+)\? The (\w+) is (\w+)\.", m[2]):
            assert thing == again and stated[thing] == quality, line
            asked += 1
    assert asked > 1000
    assert asked > 3 * web.web_text(0, 200_000, version=4).count("How is the")
    assert not any(judge.parse(line) for line in text.splitlines())


def test_web_corpus_mixes_half_shakespeare_in_both_splits():
    from instructgpt_jax.data import web

    mixed = corpus.load_corpus("web:3")
    plays = corpus.shakespeare()
    assert 1.9 < len(mixed.train) / len(plays.train) < 2.1
    for split in (mixed.train, mixed.heldout[:70_000]):   # the eval stage reads the first held-out windows
        assert "Customer:" in split and "KING" in split
    assert web.interleave("a\n" * 5000, "b\n" * 100, chunk=100).count("b") == 100
    with pytest.raises(ValueError, match="integer seed"):
        corpus.load_corpus("web:x")


def test_web_sources_name_a_version():
    from instructgpt_jax.data import web

    assert corpus.parse_web_source("web") == (0, web.VERSION) and corpus.parse_web_source("web:3") == (3, web.VERSION)
    assert corpus.parse_web_source("web-v4") == (0, 4) and corpus.parse_web_source("web-v1:7") == (7, 1)
    assert corpus.parse_web_source("shakespeare") is None and corpus.parse_web_source("webtext.jsonl") is None
    for bad in ("web-v6", "web-v4:x", "web:"):
        with pytest.raises(ValueError, match=r"web\[-v<version>\]\[:<seed>\]"):
            corpus.parse_web_source(bad)
    v4 = corpus.load_corpus("web-v4:3")
    plays = corpus.shakespeare()
    assert v4.train == web.interleave(web.web_text(3, len(plays.train), version=4), plays.train)
    assert v4.heldout == web.interleave(web.web_text(3, len(plays.heldout), web.HELDOUT_STREAM, 4), plays.heldout)
    assert corpus.parse_web_source("web-v2:3") == corpus.parse_web_source("web:3")  # one text, two names
