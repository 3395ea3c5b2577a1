"""Bad input, end to end through the `instructgpt` command: every case gives exactly one error line that
names what is wrong (the file and line, the field, the config key, the expected value), a non-zero exit, no
traceback, and leaves every file that existed before it (data, checkpoints, a finished run's config.json,
an HF folder) byte for byte as it was.

The command runs in this process (`cli.main`), so the 8 fake devices of conftest.py form the mesh and a
case costs what its stage's validation costs, not a new Python and JAX start. The inputs a case breaks are
derived from real ones made once per module: the smoke world's JSONL splits, a 2-step nano base model, and
its Hugging Face export.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from instructgpt_jax import cli

SMOKE_PT = ["--config", "configs/pretrain.py:smoke", "--config.train.steps=2", "--config.train.log_every=1",
            "--config.train.eval_every=100", "--config.train.eval_batches=1", "--config.train.tensorboard=False",
            "--config.optim.warmup_steps=1"]


def _main(capsys, *argv) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/ paths as a user types them
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(["instructgpt", *argv])
            raise SystemExit(0)
    finally:
        os.chdir(cwd)
    return e.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """Real inputs, made once: the smoke world, a finished 2-step nano base model, its HF export."""
    root = tmp_path_factory.mktemp("stock")
    from instructgpt_jax import config_base, hf, pretrain
    from instructgpt_jax.data import formats

    formats.write_world(config_base.load_config("configs/world.py:smoke"), str(root / "world"))
    cfg = config_base.load_config("configs/pretrain.py:smoke")
    cfg.train.update({"steps": 2, "log_every": 1, "eval_every": 100, "eval_batches": 1, "tensorboard": False})
    cfg.optim.warmup_steps = 1
    pretrain.run(cfg, str(root / "pretrain"))
    hf.export_hf(str(root / "hf"), str(root / "pretrain"))
    return root


def _snapshot(root) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha1(f.read()).hexdigest()
    return out


def _jsonl(path, *lines) -> str:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


def _hf_variant(stock, dst, edit_config=None, edit_tensors=None, drop_file=None) -> str:
    shutil.copytree(stock / "hf", dst)
    if edit_config:
        cfg = json.load(open(dst / "config.json"))
        edit_config(cfg)
        json.dump(cfg, open(dst / "config.json", "w"))
    if edit_tensors:
        tensors = load_file(str(dst / "model.safetensors"))
        edit_tensors(tensors)
        save_file(tensors, str(dst / "model.safetensors"))
    if drop_file:
        os.remove(dst / drop_file)
    return str(dst)


SFT_LINE = '{"prompt": "Reverse the words: red fox", "response": "fox red"}'
RM_LINE = '{"prompt": "What is 1 + 1?", "responses": ["2", "3", "11", "two"], "ranking": [0, 3, 1, 2]}'


def _cases(stock, tmp):
    """(id, argv, expected substring of the one error line). Files a case needs are written here."""
    pt, world = str(stock / "pretrain"), stock / "world"
    sft = ["sft", "--config", "configs/sft.py:smoke", f"--config.init_from={pt}",
           f"--config.data.train={world / 'sft.jsonl'}", "--config.train.tensorboard=False"]
    rm = ["rm", "--config", "configs/rm.py:smoke", f"--config.init_from={pt}", "--config.train.tensorboard=False"]
    ppo = ["ppo", "--config", "configs/ppo.py:smoke", f"--config.init_policy={pt}", f"--config.init_value={pt}",
           f"--config.data.prompts={world / 'ppo.jsonl'}", "--config.train.tensorboard=False"]
    bad_norm = tmp / "rm_bad_norm"
    bad_norm.mkdir()
    json.dump({"mean": 0.1, "std": 0.0}, open(bad_norm / "reward_norm.json", "w"))
    nan_norm = tmp / "rm_nan_norm"
    nan_norm.mkdir()
    (nan_norm / "reward_norm.json").write_text('{"mean": NaN, "std": 1.0}')
    empty = tmp / "empty_stage"
    empty.mkdir()
    hfv = lambda name, **kw: _hf_variant(stock, tmp / name, **kw)  # noqa: E731
    train = lambda name, *lines: "--config.data.train=" + _jsonl(tmp / name, *lines)  # noqa: E731

    def drop(key):
        return lambda t: t.pop(key)

    def reshape(key):
        return lambda t: t.__setitem__(key, np.zeros((3, 3), np.float32))

    return [
        # ---- configs
        ("unknown_key", ["pretrain", *SMOKE_PT, "--config.train.bogus=1"], "has no key 'train.bogus'"),
        ("unknown_section", ["pretrain", *SMOKE_PT, "--config.trian.steps=1"], "has no key 'trian'"),
        ("wrong_type", ["pretrain", *SMOKE_PT, "--config.train.steps=ten"], "--config.train.steps=ten"),
        ("missing_config_file", ["pretrain", "--config", "configs/pretrian.py"], "config file 'configs/pretrian.py' not found"),
        ("unknown_config_arg", ["pretrain", "--config", "configs/pretrain.py:huge"], "unknown arg 'huge'"),
        ("impossible_mesh", ["pretrain", *SMOKE_PT, "--config.mesh.shape=(3,1,1)"], "mesh shape (3, 1, 1) needs 3 devices but 8"),
        ("mesh_cannot_fill", ["pretrain", *SMOKE_PT, "--config.mesh.shape=(3,-1,1)"], "cannot fill 8 devices"),
        ("mesh_two_fills", ["pretrain", *SMOKE_PT, "--config.mesh.shape=(-1,-1,1)"], "at most one -1"),
        ("mesh_too_big", ["pretrain", *SMOKE_PT, "--config.mesh.shape=(4,4,1)"], "needs 16 devices but 8"),
        ("batch_not_divisible", ["pretrain", *SMOKE_PT, "--config.train.batch_size=12"], "config.train.batch_size=12 is not divisible by data x fsdp = 8"),
        ("unknown_preset", ["pretrain", *SMOKE_PT, "--config.model.preset=gpt5"], "unknown model preset 'gpt5'"),
        ("bad_dtype", ["pretrain", *SMOKE_PT, "--config.model.dtype=float8"], "dtype='float8'; expected float32, bfloat16"),
        ("seq_len_too_long", ["pretrain", *SMOKE_PT, "--config.train.seq_len=4096"], "train.seq_len=4096 + 1 exceeds model n_positions"),
        ("unknown_tokenizer", ["pretrain", *SMOKE_PT, "--config.data.tokenizer=sentencepiece"], "unknown tokenizer 'sentencepiece'"),
        ("ppo_minibatch_split", [*ppo, f"--config.reward_model={pt}", "--config.ppo.minibatches=3"], "config.ppo.rollout_batch=32; expected a multiple of minibatches=3"),
        ("ppo_kl_estimator", [*ppo, f"--config.reward_model={pt}", "--config.ppo.kl_estimator=k9"], "kl_estimator='k9'"),
        ("ppo_empty_reward_model", ppo, "config.reward_model is empty"),
        ("pipeline_unknown_stage", ["pipeline", "--config", "configs/pipeline.py:smoke", "--config.stages=sft,rlhf"],
         "config.stages has unknown stages ['rlhf']"),
        ("missing_workdir", ["pretrain", *SMOKE_PT], "needs --workdir"),
        ("world_unknown_family", ["world", "--config", "configs/world.py:smoke", "--config.heldout_families=('poetry',)"],
         "heldout_families ['poetry'] are not families"),
        # ---- data files
        ("sft_data_missing", [*sft[:-2], "--config.data.train=/nonexistent/sft.jsonl"], "/nonexistent/sft.jsonl"),
        ("sft_invalid_json", [*sft, train("a.jsonl", SFT_LINE, '{"prompt": ')],
         "a.jsonl:2: invalid JSON"),
        ("sft_missing_field", [*sft, train("b.jsonl", SFT_LINE, '{"prompt": "p"}')],
         "b.jsonl:2: field 'response': missing"),
        ("sft_wrong_type", [*sft, train("c.jsonl", '{"prompt": 7, "response": "r"}')],
         "c.jsonl:1: field 'prompt': expected a string, got int"),
        ("sft_too_long_prompt", [*sft, "--config.data.max_prompt_tokens=8"], "field 'prompt':"),
        ("rm_not_permutation", [*rm, train("d.jsonl", RM_LINE.replace("[0, 3, 1, 2]", "[0, 3, 3, 2]"))],
         "d.jsonl:1: field 'ranking': [0, 3, 3, 2] is not a permutation of 0..3"),
        ("rm_too_many_responses", [*rm, train("e.jsonl", json.dumps(
            {"prompt": "p", "responses": [f"r{i}" for i in range(12)], "ranking": list(range(12))}))],
         "e.jsonl:1: field 'responses': K=12 responses, need 2 <= K <= k_max=9"),
        ("rm_pair_duplicate", [*rm, train("f.jsonl", '{"prompt": "p", "chosen": "a", "rejected": "a"}')],
         "f.jsonl:1: field 'rejected': duplicate response"),
        ("ppo_empty_prompt", [*ppo[:-2], f"--config.reward_model={pt}",
                              "--config.data.prompts=" + _jsonl(tmp / "g.jsonl", '{"prompt": "ok"}', '{"prompt": ""}'),
                              "--config.train.tensorboard=False"], "g.jsonl:2: field 'prompt': empty"),
        ("non_utf8", [*sft, "--config.data.train=" + str(tmp / "h.jsonl")], "h.jsonl:1: field 'response': not valid UTF-8"),
        # ---- checkpoints
        ("init_from_empty_folder", [*sft[:3], f"--config.init_from={empty}", *sft[4:]], "no checkpoint in"),
        ("checkpoint_other_model_size", [*sft, "--config.model.preset=tiny"], "(checkpoint from another model size?)"),
        ("resume_other_model_size", ["pretrain", *SMOKE_PT, "--config.model.preset=tiny"], "the model expects"),
        ("reward_norm_std_zero", [*ppo, f"--config.reward_model={bad_norm}"], "field 'std' must be > 0, got 0.0"),
        ("reward_norm_nan", [*ppo, f"--config.reward_model={nan_norm}"], "field 'mean' must be a finite number"),
        ("reward_norm_missing", [*ppo, f"--config.reward_model={empty}"], "no reward normalisation"),
        ("sample_no_checkpoint", ["sample", "--prompt", "hi"], "no checkpoint in"),
        # ---- Hugging Face folders
        ("hf_folder_missing", ["import-hf", "--hf_dir", str(tmp / "no_such_hf")], "does not exist"),
        ("hf_missing_tensor", ["import-hf", "--hf_dir", hfv("hf_a", edit_tensors=drop("transformer.h.1.mlp.c_proj.weight"))],
         "missing tensors ['transformer.h.1.mlp.c_proj.weight']"),
        ("hf_wrong_shape", ["import-hf", "--hf_dir", hfv("hf_b", edit_tensors=reshape("transformer.h.0.attn.c_attn.bias"))],
         "h.0.attn.c_attn.bias has shape (3, 3)"),
        ("hf_not_gpt2", ["import-hf", "--hf_dir", hfv("hf_c", edit_config=lambda c: c.update(model_type="bert"))],
         "model_type 'bert' is not supported"),
        ("hf_no_weights", ["import-hf", "--hf_dir", hfv("hf_d", drop_file="model.safetensors")], "has no model.safetensors"),
        ("hf_no_config", ["import-hf", "--hf_dir", hfv("hf_e", drop_file="config.json")], "has no config.json"),
        ("import_over_checkpoint", ["import-hf", "--hf_dir", str(stock / "hf")], "already holds a checkpoint"),
        # ---- tokenizer / vocabulary
        ("tokenizer_vocab_mismatch", [*sft, "--config.data.tokenizer=gpt2"], "50257"),
    ]


# Where each case writes (its --workdir / --out); "stock" cases point at the finished base model's folder.
WORKDIR_OF = {"resume_other_model_size": "pretrain", "import_over_checkpoint": "pretrain"}


def test_bad_inputs_give_one_line_and_touch_nothing(stock, tmp_path, capsys):
    (tmp_path / "h.jsonl").write_bytes(b'{"prompt": "p", "response": "caf\xe9"}\n')
    cases = _cases(stock, tmp_path)
    assert len(cases) >= 30
    failures = []
    for name, argv, expected in cases:
        workdir = stock / WORKDIR_OF[name] if name in WORKDIR_OF else tmp_path / "runs" / name
        if name not in WORKDIR_OF:
            workdir.mkdir(parents=True)
            (workdir / "notes.txt").write_text("a file the user had here")
        before = {**_snapshot(stock), **{f"tmp/{k}": v for k, v in _snapshot(tmp_path).items()}}
        flag = [] if name == "missing_workdir" else (["--out", str(workdir / "out")] if argv[0] == "world"
                                                     else ["--workdir", str(workdir)])
        code, err = _main(capsys, *argv, *flag)
        after = {**_snapshot(stock), **{f"tmp/{k}": v for k, v in _snapshot(tmp_path).items()}}
        errors = [line for line in err.splitlines() if "error" in line.lower()]
        changed = sorted(k for k in before if after.get(k) != before[k])
        problem = []
        if code in (0, None):
            problem.append(f"exit code {code}")
        if "Traceback" in err:
            problem.append("a traceback")
        if len(errors) != 1 or expected not in errors[0]:
            problem.append(f"error lines {errors} (expected one containing {expected!r})")
        if changed:
            problem.append(f"changed or removed {changed}")
        if problem:
            failures.append(f"{name}: " + "; ".join(problem))
    assert not failures, "\n".join(failures)
