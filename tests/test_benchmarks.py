"""TL;DR and HH-RLHF in their published layouts (JSONL, Parquet, `datasets` folders) -> the project's records."""

import json

import pytest

from instructgpt_jax.data import benchmarks
from instructgpt_jax.data.formats import DataError, read_ppo, read_rm, read_sft
from instructgpt_jax.tokenizer import make_tokenizer
from instructgpt_jax import stages

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
BYTE = make_tokenizer("byte")

POST = {"id": "t3_1", "subreddit": "relationships", "title": "My friend never replies",
        "post": "We met in college.\nNow she ignores my texts.\nWhat should I do?"}
SFT = [dict(POST, summary="friend ignores me, what now?"),
       {"id": "t3_2", "subreddit": "tifu", "title": "TIFU by cooking", "post": "I burnt the rice.", "summary": "burnt rice"}]
COMPARISON = {
    "info": {"id": "t3_1", "post": POST["post"], "title": POST["title"], "subreddit": POST["subreddit"], "site": None,
             "article": None},
    # The comparisons' summaries start with a space (the SFT set's do not): kept as they are.
    "summaries": [{"text": " friend is busy", "policy": "sup2", "note": None},
                  {"text": " friend ignores my texts", "policy": "ref", "note": "ok"}],
    "choice": 1, "worker": "w42", "batch": "batch7", "split": "train", "extra": {"confidence": 8}}
HH = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit\n\nAssistant: An apple.",
      "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit\n\nAssistant: No."}
SFT_QUERY_2 = "SUBREDDIT: r/tifu\n\nTITLE: TIFU by cooking\n\nPOST: I burnt the rice.\n\nTL;DR:"
QUERY = ("SUBREDDIT: r/relationships\n\nTITLE: My friend never replies\n\n"
         "POST: We met in college.\nNow she ignores my texts.\nWhat should I do?\n\nTL;DR:")


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(records), str(path))
    return str(path)


def write_datasets_folder(folder, records, shards=2):
    """The layout `Dataset.save_to_disk` writes: Arrow IPC stream shards listed in state.json."""
    folder.mkdir()
    table, files = pa.Table.from_pylist(records), []
    per = -(-len(records) // shards)
    for i in range(shards):
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(i * per, per))
        files.append({"filename": name})
    (folder / "state.json").write_text(json.dumps({"_data_files": files, "_fingerprint": "0", "_split": "train"}))
    (folder / "dataset_info.json").write_text(json.dumps({"features": {}}))
    return str(folder)


def sources(tmp_path, records):
    return [write_jsonl(tmp_path / "d.jsonl", records), write_parquet(tmp_path / "d.parquet", records),
            write_datasets_folder(tmp_path / "d_hf", records)]


# ---------------------------------------------------------------- records

def test_tldr_sft_in_every_container(tmp_path):
    for path in sources(tmp_path, SFT):
        got = list(read_sft("tldr:" + path))
        assert got[0] == {"prompt": QUERY, "response": " friend ignores me, what now?", "meta": {"id": "t3_1"}}, path
        assert got[1]["prompt"] == SFT_QUERY_2
        assert list(read_ppo("tldr:" + path)) == [QUERY, got[1]["prompt"]]
    for i, record in enumerate(SFT):  # a sharded Parquet export, read in sorted order
        write_parquet(tmp_path / f"train-{i}.parquet", [record])
    assert [r["meta"]["id"] for r in read_sft("tldr:" + str(tmp_path / "train-*.parquet"))] == ["t3_1", "t3_2"]


def test_tldr_long_post_truncation(tmp_path):
    """The reference rule: cut the post at its last newline until the query fits; then at whitespace."""
    fields = {"subreddit": "a", "title": "b", "post": "one two\nthree four\nfive six"}
    full = benchmarks.tldr_query("x", fields)
    n = len(BYTE.encode_prompt(full))
    assert benchmarks.tldr_query("x", fields, BYTE, n) == full
    fits = benchmarks.tldr_query("x", fields, BYTE, n - 1)
    assert fits == "SUBREDDIT: r/a\n\nTITLE: b\n\nPOST: one two\nthree four\n\nTL;DR:"
    assert benchmarks.tldr_query("x", fields, BYTE, n - len("\nfive six") - len("three four")) == \
        "SUBREDDIT: r/a\n\nTITLE: b\n\nPOST: one two\n\nTL;DR:"
    assert benchmarks.tldr_query("x", fields, BYTE, n - len("\nfive six") - len("\nthree four") - 4) == \
        "SUBREDDIT: r/a\n\nTITLE: b\n\nPOST: one\n\nTL;DR:"
    empty = len(BYTE.encode_prompt(benchmarks.tldr_query("x", dict(fields, post=""))))
    for budget in range(empty, n + 1):  # whatever the budget, the query fits it
        assert len(BYTE.encode_prompt(benchmarks.tldr_query("x", fields, BYTE, budget))) <= budget
    with pytest.raises(DataError, match="x: field 'title': the prompt without its post has 43 tokens, more than "
                                        "max_prompt_tokens=42"):
        benchmarks.tldr_query("x", fields, BYTE, empty - 1)
    # Through the reader: the stage's max_prompt_tokens is the budget, so no prompt is rejected for length.
    first = "SUBREDDIT: r/relationships\n\nTITLE: My friend never replies\n\nPOST: We met in college.\n\nTL;DR:"
    budget = len(BYTE.encode_prompt(first)) + len("\nNow she")  # not room for the second line
    got = list(read_sft("tldr:" + write_jsonl(tmp_path / "sft.jsonl", SFT), BYTE, max_prompt_tokens=budget))
    assert got[0]["prompt"] == first and got[1]["prompt"] == SFT_QUERY_2


def test_tldr_comparisons_keep_metadata(tmp_path):
    other = dict(COMPARISON, choice=0, worker="w7")
    for path in sources(tmp_path, [COMPARISON, other]):
        first, second = read_rm("tldr:" + path, BYTE, max_prompt_tokens=512)
        assert first["prompt"] == QUERY
        assert first["responses"] == [" friend is busy", " friend ignores my texts"]
        assert first["ranks"] == [1, 0] and second["ranks"] == [0, 1]  # choice 1: the second summary is preferred
        meta = first["meta"]
        assert (meta["worker"], meta["batch"], meta["split"], meta["extra"], meta["choice"]) == \
            ("w42", "batch7", "train", {"confidence": 8}, 1)
        assert meta["info"]["id"] == "t3_1" and [s["policy"] for s in meta["summaries"]] == ["sup2", "ref"]
        assert second["meta"]["worker"] == "w7"
        assert list(read_ppo("tldr:" + path)) == [QUERY, QUERY]


def test_hh_split(tmp_path):
    second = {"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5, surely"}
    prompt = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit\n\nAssistant:"
    for path in sources(tmp_path, [HH, second]):
        rm = list(read_rm("hh:" + path))
        assert rm[0] == {"prompt": prompt, "responses": [" An apple.", " No."], "ranks": [0, 1]}
        assert rm[1] == {"prompt": "\n\nHuman: 2+2?\n\nAssistant:", "responses": [" 4", " 5, surely"], "ranks": [0, 1]}
        assert list(read_sft("hh:" + path))[0] == {"prompt": prompt, "response": " An apple."}
        assert list(read_ppo("hh:" + path)) == [prompt, "\n\nHuman: 2+2?\n\nAssistant:"]


def test_reward_stage_reads_benchmarks(tmp_path):
    """The RM stage's reader takes a prefixed path as it takes JSONL (config.data.train='hh:...')."""
    import ml_collections


    d = ml_collections.ConfigDict({"k_max": 9, "max_prompt_tokens": 128, "max_response_tokens": 64, "overflow": "error"})
    records = stages.rm.read_comparisons("hh:" + write_parquet(tmp_path / "hh.parquet", [HH]), d, BYTE, 264)
    assert records[0]["responses"] == [" An apple.", " No."]


# ---------------------------------------------------------------- one error per malformed record

def _error(prefix, path, read=read_rm, **kw):
    with pytest.raises(DataError) as e:
        list(read(prefix + path, **kw))
    return str(e.value)


@pytest.mark.parametrize("record, message", [
    ({k: v for k, v in SFT[0].items() if k != "post"}, ":2: field 'post': missing"),
    (dict(SFT[0], summary="  "), ":2: field 'summary': empty"),
    (dict(SFT[0], title=7), ":2: field 'title': expected a string, got int"),
    (COMPARISON, ":2: field 'summary': missing: a TL;DR comparison record; SFT reads the TL;DR SFT layout"),
])
def test_tldr_sft_errors(tmp_path, record, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [SFT[1], record])
    assert _error("tldr:", path, read_sft).startswith(path + message)


@pytest.mark.parametrize("change, message", [
    (dict(summaries=COMPARISON["summaries"] * 2), "field 'summaries': expected a list of 2 summaries, got 4 entries"),
    (dict(choice=2), "field 'choice': expected 0 or 1 (the index of the preferred summary), got 2"),
    (dict(choice=None), "field 'choice': expected 0 or 1"),
    (dict(info=dict(COMPARISON["info"], post=None, article="Some news.", site="dailymail")),
     "field 'info.post': null: a CNN/DM article (site 'dailymail'), not a Reddit post"),
    (dict(info={"id": "x", "title": "t", "post": "p"}), "field 'info.subreddit': missing"),
    (dict(summaries=[{"text": "a"}, {"policy": "ref"}]), "field 'summaries[1].text': missing"),
    (dict(summaries=[{"text": "same"}, {"text": "same"}]), "field 'responses[1]': duplicate response"),
    (SFT[0], "field 'summaries': missing: a TL;DR SFT record; the reward model reads TL;DR comparisons"),
])
def test_tldr_comparison_errors(tmp_path, change, message):
    record = change if "summary" in change else dict(COMPARISON, **change)
    path = write_jsonl(tmp_path / "bad.jsonl", [COMPARISON, record])
    assert _error("tldr:", path).startswith(f"{path}:2: {message}")
    # Parquet and datasets folders name the row, as dataset[row] reads it.
    if not {"summary", "summaries", "info"} & set(change):  # (one schema per Parquet file: same fields)
        pq_path = write_parquet(tmp_path / "bad.parquet", [COMPARISON, record])
        assert _error("tldr:", pq_path).startswith(f"{pq_path}[1]: {message}")


@pytest.mark.parametrize("record, message", [
    (dict(HH, rejected="\n\nHuman: Hello\n\nAssistant: Hello!\n\nHuman: Name a fruit\n\nAssistant: No."),
     "field 'rejected': does not share 'chosen''s prompt (the dialogue through the last '\\n\\nAssistant:'): "
     "they differ at character 10 ('i\\n\\nAssistant: Hello!\\n\\nHuman: N' vs 'ello\\n\\nAssistant: Hello!\\n\\nHuman')"),
    (dict(HH, chosen="Hi there"), "field 'chosen': no '\\n\\nAssistant:' turn"),
    (dict(HH, rejected="\n\nAssistant: hm"), "field 'rejected': no '\\n\\nHuman:' turn before the last '\\n\\nAssistant:'"),
    (dict(HH, chosen=HH["chosen"].rsplit(" ", 1)[0].rsplit(" An", 1)[0] + " "),
     "field 'chosen': empty final response after the last '\\n\\nAssistant:'"),
    (dict(HH, rejected=HH["chosen"]), "field 'rejected': duplicate response: same text as 'chosen'"),
    ({"chosen": HH["chosen"]}, "field 'rejected': missing"),
])
def test_hh_errors(tmp_path, record, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [HH, record])
    assert _error("hh:", path).startswith(f"{path}:2: {message}")
    folder = write_datasets_folder(tmp_path / "bad_hf", [HH, HH, record], shards=2)
    # Columnar files hold an absent field as null.
    message = message.replace("missing", "expected a string, got NoneType")
    assert _error("hh:", folder).startswith(f"{folder}[2]: {message}")


def test_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl: no such file or folder"):
        list(read_sft("tldr:" + str(tmp_path / "nowhere.jsonl")))
    with pytest.raises(FileNotFoundError, match=r"no file matches"):
        list(read_sft("tldr:" + str(tmp_path / "train-*.parquet")))
    dd = tmp_path / "dd"
    dd.mkdir()
    write_datasets_folder(dd / "train", SFT)
    (dd / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(ValueError, match=r"is a DatasetDict with splits \['train', 'test'\]; name one split's folder"):
        list(read_sft("tldr:" + str(dd)))
    assert len(list(read_sft("tldr:" + str(dd / "train")))) == 2
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="not a `datasets` save_to_disk folder"):
        list(read_sft("hh:" + str(tmp_path / "plain")))
    path = write_jsonl(tmp_path / "list.jsonl", ["[1, 2]"])
    assert _error("hh:", path) == f"{path}:1: expected a JSON object, got list"
