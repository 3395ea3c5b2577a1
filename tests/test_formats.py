"""JSONL / TFDS readers: round trips, write_world determinism, and one specific error per bad-input kind."""

import dataclasses
import json
import logging
import os

import pytest
import tensorflow_datasets as tfds

from instructgpt_jax import config_base
from instructgpt_jax.data import formats, world as world_lib
from instructgpt_jax.data.formats import DataError, read_ppo, read_rm, read_sft, read_text
from instructgpt_jax.tokenizer import make_tokenizer

SMOKE = config_base.from_config(world_lib.WorldConfig, config_base.load_config("configs/world.py:smoke"), "config.world")
BYTE = make_tokenizer("byte")


def _write(tmp_path, lines, name="data.jsonl") -> str:
    """Write raw lines (str or bytes) and return the path."""
    path = tmp_path / name
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines))
    return str(path)


def _rm_line(**overrides) -> str:
    record = {"prompt": "What is 1 + 1?", "responses": ["2", "3", "11", "two"], "ranking": [0, [3, 1], 2]}
    record.update(overrides)
    return json.dumps(record)


# ---------------------------------------------------------------- round trips

def test_write_world_round_trip_and_determinism(tmp_path):
    paths = formats.write_world(SMOKE, str(tmp_path / "a"))
    assert set(paths) == {"sft", "rm_prompts", "rm", "ppo", "eval", "eval_heldout"}
    world = world_lib.World(SMOKE)
    sft = list(read_sft(paths["sft"], BYTE, max_prompt_tokens=128, max_response_tokens=64, model_vocab_size=264))
    assert [r["prompt"] for r in sft] == world.prompts("sft")
    assert list(read_ppo(paths["ppo"], BYTE, max_prompt_tokens=128)) == world.prompts("ppo")
    assert list(read_ppo(paths["rm_prompts"])) == world.prompts("rm")
    assert list(read_ppo(paths["eval_heldout"])) == world.prompts("eval_heldout")
    rm = list(read_rm(paths["rm"], BYTE, k_max=9, max_response_tokens=64))
    assert len(rm) == len(world.prompts("rm")) and all(4 <= len(r["responses"]) <= 9 for r in rm)
    # Ranks read back are what the labelers gave: the best-ranked responses have higher gold on average.
    best = [r["responses"][r["ranks"].index(0)] for r in rm]
    worst = [r["responses"][r["ranks"].index(max(r["ranks"]))] for r in rm]
    prompts = [r["prompt"] for r in rm]
    assert world.gold_score(prompts, best).mean() > world.gold_score(prompts, worst).mean() + 0.3
    # Same config, same bytes; another seed, other bytes.
    again = formats.write_world(SMOKE, str(tmp_path / "b"))
    for split in paths:
        assert open(paths[split], "rb").read() == open(again[split], "rb").read(), split
    other = formats.write_world(dataclasses.replace(SMOKE, seed=1), str(tmp_path / "c"))
    assert open(other["sft"], "rb").read() != open(paths["sft"], "rb").read()
    meta = json.load(open(tmp_path / "a" / "world.json"))
    assert meta["config"]["seed"] == 0 and meta["files"]["sft"] == "sft.jsonl"


def test_rm_pairwise_ties_and_ranking_helpers(tmp_path):
    path = _write(tmp_path, [_rm_line(), json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "extra": 1})])
    kwise, pair = list(read_rm(path))
    assert kwise["ranks"] == [0, 1, 2, 1] and pair == {"prompt": "p", "responses": ["a", "b"], "ranks": [0, 1]}
    assert formats.ranks_to_ranking([0, 1, 2, 1]) == [0, [1, 3], 2]
    assert formats.ranking_to_ranks([0, [1, 3], 2], 4) == [0, 1, 2, 1]


# ---------------------------------------------------------------- one error per bad-input kind

BAD = [  # (reader, lines, expected message after "path:line: ")
    (read_sft, ['{"prompt": "p", "response": "r"}', '{"prompt": "p", "response": '],
     r":2: invalid JSON \(Expecting value at column 29\)"),
    (read_sft, ['["prompt", "response"]'], r":1: expected a JSON object, got list"),
    (read_sft, ['{"prompt": "p"}'], r":1: field 'response': missing"),
    (read_sft, ['{"prompt": "p", "response": "  "}'], r":1: field 'response': empty"),
    (read_sft, ['{"prompt": "p", "response": 3}'], r":1: field 'response': expected a string, got int"),
    (read_ppo, ['{"prompt": ""}'], r":1: field 'prompt': empty"),
    (read_sft, [b'{"prompt": "p", "response": "caf\xe9"}'], r":1: field 'response': not valid UTF-8"),
    (read_rm, [_rm_line(responses=["2"], ranking=[0])], r":1: field 'responses': K=1 responses, need 2 <= K <= k_max=9"),
    (read_rm, [_rm_line(responses=[str(i) for i in range(10)], ranking=list(range(10)))],
     r":1: field 'responses': K=10 responses, need 2 <= K <= k_max=9"),
    (read_rm, [_rm_line(ranking=[0, 1, 1, 2])], r":1: field 'ranking': \[0, 1, 1, 2\] is not a permutation of 0..3"),
    (read_rm, [_rm_line(ranking=[0, 1, 2, 7])], r":1: field 'ranking': entry 7 is not a response index in 0..3"),
    (read_rm, [_rm_line(ranking=[0, 1, 2])], r":1: field 'ranking': \[0, 1, 2\] is not a permutation of 0..3"),
    (read_rm, [_rm_line(responses=["2", "3", "2", "4"])], r":1: field 'responses\[2\]': duplicate response: same text as responses\[0\]"),
    (read_rm, ['{"prompt": "p", "chosen": "a", "rejected": "a"}'], r":1: field 'rejected': duplicate response"),
    (read_rm, ['{"prompt": "p", "responses": ["a", "b"]}'], r":1: field 'ranking': missing"),
    (read_rm, ['{"prompt": "p"}'], r":1: field 'responses': missing"),
    (read_rm, [_rm_line(responses=["2", ""], ranking=[0, 1])], r":1: field 'responses\[1\]': empty"),
]


@pytest.mark.parametrize("reader,lines,message", BAD, ids=[f"{r.__name__}-{i}" for i, (r, _, _) in enumerate(BAD)])
def test_bad_records_name_file_line_field(tmp_path, reader, lines, message):
    path = _write(tmp_path, lines)
    with pytest.raises(DataError, match="^" + str(path).replace(".", r"\.") + message):
        list(reader(path))


def test_long_prompts_rejected_or_truncated(tmp_path, caplog):
    prompt = "Reverse the words: " + " ".join(["cat"] * 20)           # 98 bytes, 101 tokens with specials
    path = _write(tmp_path, ['{"prompt": "ok", "response": "r"}', json.dumps({"prompt": prompt, "response": "r"})])
    with pytest.raises(DataError, match=r":2: field 'prompt': 101 tokens, more than max_prompt_tokens=64"):
        list(read_sft(path, BYTE, max_prompt_tokens=64))
    with caplog.at_level(logging.WARNING):
        records = list(read_sft(path, BYTE, max_prompt_tokens=64, overflow="truncate"))
    assert len(BYTE.encode_prompt(records[1]["prompt"])) == 64 and prompt.endswith(records[1]["prompt"])
    assert ":2: field 'prompt': truncated from 101 to 64 tokens" in caplog.text
    long_response = _write(tmp_path, [json.dumps({"prompt": "p", "response": "x" * 100})], "long.jsonl")
    with pytest.raises(DataError, match=r":1: field 'response': 101 tokens, more than max_response_tokens=64"):
        list(read_sft(long_response, BYTE, max_response_tokens=64))
    cut = list(read_sft(long_response, BYTE, max_response_tokens=64, overflow="truncate"))[0]["response"]
    assert cut == "x" * 63 and "field 'response': truncated from 101 to 64 tokens" in caplog.text
    # The BPE tokenizer truncates on token boundaries and still fits exactly.
    gpt2 = make_tokenizer("gpt2")
    cut = list(read_ppo(path, gpt2, max_prompt_tokens=20, overflow="truncate"))[1]
    assert len(gpt2.encode_prompt(cut)) <= 20 and prompt.endswith(cut)


def test_tokenizer_vocab_mismatch(tmp_path):
    path = _write(tmp_path, ['{"prompt": "p", "response": "r"}'])
    with pytest.raises(DataError, match=r"data\.jsonl: field 'tokenizer': tokenizer 'gpt2' has 50257 ids but the model vocab is 264"):
        list(read_sft(path, make_tokenizer("gpt2"), model_vocab_size=264))
    with pytest.raises(ValueError, match="need a tokenizer"):
        list(read_sft(path, max_prompt_tokens=10))


# ---------------------------------------------------------------- pretraining text

class TinyText(tfds.core.GeneratorBasedBuilder):
    """A four-document text dataset the test prepares locally (array_record, no TensorFlow needed)."""
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="plain")]

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(4)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"text": f"document {i}: ünïcode verse"}


def test_read_text_jsonl_and_tfds(tmp_path):
    path = _write(tmp_path, ['{"text": "to be"}', '{"text": "or not"}'])
    assert list(read_text(path)) == ["to be", "or not"]
    bad = _write(tmp_path, ['{"text": "a"}', '{"body": "b"}'], "bad.jsonl")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'text': missing \(record has \['body'\]\)"):
        list(read_text(bad))
    TinyText(data_dir=str(tmp_path / "tfds"), file_format="array_record").download_and_prepare()
    texts = list(read_text("tfds:tiny_text/plain:train", data_dir=str(tmp_path / "tfds")))
    assert sorted(texts) == [f"document {i}: ünïcode verse" for i in range(4)]
    with pytest.raises(DataError, match=r"tfds:tiny_text/plain:train\[0\]: field 'body': missing"):
        list(read_text("tfds:tiny_text/plain:train", data_dir=str(tmp_path / "tfds"), field="body"))
    with pytest.raises(ValueError, match="expected 'tfds:name"):
        list(read_text("tfds:tiny_text"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(read_text(str(tmp_path / "missing.jsonl")))
    assert not os.path.exists(tmp_path / "missing.jsonl")
