"""A pulse of the benchmark path on CPU: a tiny random Pythia-shaped model (GPTNeoXForCausalLM + a tokenizer.json)
imported with import-hf, then SFT on TL;DR SFT records (JSONL), the RM on TL;DR comparisons (Parquet) and PPO
on the TL;DR prompts, every stage reading the dataset's own layout through a `tldr:` path. A pulse, not a
result: it checks the wiring (NeoX model, the folder's tokenizer, the readers, the exported RM)."""

import json
import os

import numpy as np
import pytest

from instructgpt_jax import hf
from instructgpt_jax.config_base import load_config
from instructgpt_jax import stages

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROOT = os.path.join(os.path.dirname(__file__), "..")
WORDS = "the cat dog sat ran on mat home my friend boss work late today rice burnt car broke help what do i".split()


def post(rng, n):
    return " ".join(rng.choice(WORDS, n))


def tldr_files(root, n=96):
    """TL;DR SFT records as JSONL and comparisons as Parquet, long posts with paragraphs among them."""
    rng = np.random.default_rng(0)
    sft, comparisons = [], []
    for i in range(n):
        body = "\n".join(post(rng, int(rng.integers(4, 12))) for _ in range(int(rng.integers(1, 4))))
        fields = {"subreddit": str(rng.choice(["tifu", "relationships"])), "title": post(rng, 4), "post": body}
        summary = post(rng, int(rng.integers(2, 6)))
        sft.append({"id": f"t3_{i}", **fields, "summary": summary})
        comparisons.append({"info": {"id": f"t3_{i}", **fields}, "choice": int(rng.integers(2)),
                            "summaries": [{"text": " " + summary, "policy": "ref"},
                                          {"text": " " + post(rng, 8), "policy": "sup2"}],
                            "worker": f"w{i % 5}", "batch": "batch3", "split": "train"})
    with open(root / "tldr_sft.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in sft)
    pq.write_table(pa.Table.from_pylist(comparisons), str(root / "tldr_comparisons.parquet"))
    return "tldr:" + str(root / "tldr_sft.jsonl"), "tldr:" + str(root / "tldr_comparisons.parquet")


def pythia_folder(root):
    """A random tiny GPTNeoXForCausalLM (Pythia's architecture) with a byte-level BPE tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(WORDS), "SUBREDDIT: r/ TITLE: POST: TL;DR:"] * 10, trainer)
    path = root / "pythia-tiny"
    config = transformers.GPTNeoXConfig(vocab_size=320, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=128, max_position_embeddings=256, rotary_pct=0.25,
                                        use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0,
                                        eos_token_id=0)
    torch.manual_seed(0)
    transformers.GPTNeoXForCausalLM(config).save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}))
    return str(path)


@pytest.mark.slow  # ~70 s on 2 busy cores: three stages compile
def test_tldr_pythia_pulse(tmp_path):

    sft_data, comparisons = tldr_files(tmp_path)
    pretrain = str(tmp_path / "pretrain")
    imported = hf.import_hf(pythia_folder(tmp_path), pretrain)
    assert imported["model"]["arch"] == "neox" and imported["tokenizer"] == os.path.join(pretrain, "tokenizer")

    config = load_config(os.path.join(ROOT, "configs/sft.py:smoke"))
    config.init_from, config.data.train = pretrain, sft_data
    config.data.update({"max_prompt_tokens": 80, "max_response_tokens": 16, "overflow": "truncate"})  # posts get cut
    config.eval.update({"gold_judge": "", "max_new_tokens": 8, "base": False})
    config.train.update({"steps": 6, "batch_size": 8, "log_every": 3, "eval_every": 6, "checkpoint_every": 6,
                         "tensorboard": False})
    config.mesh.shape = (8, 1, 1)
    stages.sft.run(config, str(tmp_path / "sft"))
    rows = [json.loads(line) for line in open(tmp_path / "sft" / "metrics.jsonl")]
    assert any(np.isfinite(r.get("sft/loss", np.nan)) for r in rows)

    config = load_config(os.path.join(ROOT, "configs/rm.py:smoke"))
    config.init_from, config.data.train = str(tmp_path / "sft"), comparisons
    config.data.update({"k_max": 2, "max_prompt_tokens": 80, "max_response_tokens": 16, "overflow": "truncate"})
    config.norm.data = sft_data  # the reference's normalisation: 0 on the SFT set's summaries
    config.eval.gold_judge = ""
    config.train.update({"steps": 4, "batch_size": 8, "log_every": 2, "eval_every": 4, "checkpoint_every": 4,
                         "tensorboard": False})
    config.mesh.shape = (8, 1, 1)
    stages.rm.run(config, str(tmp_path / "rm"))
    assert os.path.isfile(tmp_path / "rm" / "reward_norm.json")

    config = load_config(os.path.join(ROOT, "configs/ppo.py:smoke"))
    config.init_policy, config.init_value = str(tmp_path / "sft"), str(tmp_path / "rm")
    config.reward_model, config.data.prompts = str(tmp_path / "rm"), sft_data
    config.data.update({"prompt_len": 80, "overflow": "truncate"})
    config.ppo.update({"rollout_batch": 16, "minibatches": 2, "epochs": 1, "max_new_tokens": 8, "ptx_coef": 0.0,
                       "temperature": 0.7, "beta": 0.05})
    config.train.update({"iterations": 2, "log_every": 1, "eval_every": 2, "checkpoint_every": 2, "tensorboard": False})
    config.eval.update({"gold_judge": "", "batches": 1, "heldout_batches": 1})
    config.mesh.shape = (8, 1, 1)
    stages.ppo.run(config, str(tmp_path / "ppo"))
    rows = [json.loads(line) for line in open(tmp_path / "ppo" / "metrics.jsonl")]
    assert any(np.isfinite(r.get("ppo/score", np.nan)) for r in rows)

    # The trained RM leaves as a GPTNeoXForSequenceClassification that loads where users load it.
    out = str(tmp_path / "rm_export")
    hf.export_hf(out, str(tmp_path / "rm"))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "GPTNeoXForSequenceClassification" and model.config.num_labels == 1
    assert os.path.isfile(os.path.join(out, "tokenizer.json")) and os.path.isfile(os.path.join(out, "reward_norm.json"))
