"""folders.input_digests: a finished run's input files are digested so a rerun on changed data is caught; a
benchmark path (tldr:PATH, hh:PATH) is digested through the JSONL / Parquet file, `datasets` folder or glob
behind its prefix, a stage folder not at all."""

import json

import ml_collections
import pytest

from instructgpt_jax import folders


def _config(**data):
    return ml_collections.ConfigDict({"init_from": data.pop("init_from", ""), "data": data})


def test_input_digests_follow_benchmark_prefixes(tmp_path):
    sft = tmp_path / "tldr_sft.jsonl"
    sft.write_text('{"subreddit": "a", "title": "t", "post": "p", "summary": "s"}\n')
    hh = tmp_path / "hh" / "train"  # a `datasets` save_to_disk folder: Arrow files listed in state.json
    hh.mkdir(parents=True)
    (hh / "data-00000-of-00001.arrow").write_bytes(b"arrow rows")
    (hh / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    parts = tmp_path / "parquet"
    parts.mkdir()
    for i in range(2):
        (parts / f"train-{i}.parquet").write_bytes(b"rows %d" % i)
    stage = tmp_path / "sft"  # a stage folder (init_from): never digested
    (stage / "checkpoints").mkdir(parents=True)
    config = _config(train=f"tldr:{sft}", val=str(sft), prompts=f"hh:{hh}",
                     eval_prompts=f"tldr:{parts}/train-*.parquet", missing=f"hh:{tmp_path / 'absent'}",
                     remote="tldr:gs://bucket/tldr", init_from=str(stage))
    before = folders.input_digests(config)
    assert set(before) == {"data.train", "data.val", "data.prompts", "data.eval_prompts"}
    assert before["data.train"] == before["data.val"]  # the file behind the prefix, digested as a plain one is

    sft.write_text('{"subreddit": "a", "title": "t", "post": "p", "summary": "other"}\n')
    (hh / "data-00000-of-00001.arrow").write_bytes(b"arrow rows, changed")
    (parts / "train-2.parquet").write_bytes(b"rows 2")  # one more file the glob matches
    after = folders.input_digests(config)
    assert all(after[k] != before[k] for k in before), (before, after)

    (hh / "data-00000-of-00001.arrow").rename(hh / "data-renamed.arrow")  # same bytes, other file name
    assert folders.input_digests(config)["data.prompts"] != after["data.prompts"]
    assert folders.input_digests(config)["data.train"] == after["data.train"]  # unchanged: the same digest


def test_finished_run_on_changed_benchmark_data_is_an_error(tmp_path, monkeypatch):
    """check_rerun compares the digests a finished run's checkpoint meta holds with the files' digests now."""
    hh = tmp_path / "hh.jsonl"
    hh.write_text(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                              "rejected": "\n\nHuman: hi\n\nAssistant: no"}))
    config, workdir = _config(train=f"hh:{hh}"), tmp_path / "rm"
    workdir.mkdir()
    (workdir / "config.json").write_text(config.to_json_best_effort())
    meta = {"step": 4, "total_steps": 4, "inputs": folders.input_digests(config)}
    monkeypatch.setattr(folders.checkpoint, "latest_step", lambda d: 4)
    monkeypatch.setattr(folders.checkpoint, "read_meta", lambda d, step=None: (4, meta))
    folders.check_rerun(str(workdir), config, "rm")  # the same data: a rerun is fine
    hh.write_text(hh.read_text().replace("hello", "hello there"))
    with pytest.raises(FileExistsError, match="the file config.data.train names has changed since"):
        folders.check_rerun(str(workdir), config, "rm")
