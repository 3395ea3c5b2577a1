"""Bad input, end to end through the `instructgpt` command: every case gives exactly one error line that
names what is wrong (the file and line, the field, the config key, the expected value), a non-zero exit, no
traceback, and leaves every file and folder that existed before it (data, checkpoints, a finished run's
config.json, an HF folder) byte for byte as it was, adding none (a read-only command never creates its
workdir; a stage that stops on bad input leaves no half-made one).

The command runs in this process (`cli.main`), so the 8 fake devices of conftest.py form the mesh and a
case costs what its stage's validation costs, not a new Python and JAX start. The inputs a case breaks are
derived from real ones made once per module: the smoke world's JSONL splits, a 2-step nano base model, and
its Hugging Face export.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import types

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from instructgpt_jax import cli, folders
from instructgpt_jax import stages

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
    """Real inputs, made once: the smoke world, a finished 2-step nano base model, its HF export, and a
    reward-model folder (nano with a scalar head, untrained: only what a stage reads before loading counts)."""
    root = tmp_path_factory.mktemp("stock")
    import dataclasses

    from flax import nnx

    from instructgpt_jax import checkpoint, config_base, hf
    from instructgpt_jax.data import formats
    from instructgpt_jax.model import make_model
    from instructgpt_jax.presets import get_preset

    formats.write_world(config_base.load_config("configs/world.py:smoke"), str(root / "world"))
    cfg = config_base.load_config("configs/pretrain.py:smoke")
    cfg.train.update({"steps": 2, "log_every": 1, "eval_every": 100, "eval_batches": 1, "tensorboard": False})
    cfg.optim.warmup_steps = 1
    stages.pretrain.run(cfg, str(root / "pretrain"))
    hf.export_hf(str(root / "hf"), str(root / "pretrain"))
    rm_cfg = get_preset("nano", scalar_head=True)
    manager = checkpoint.make_manager(str(root / "rm" / "checkpoints"))
    checkpoint.save(manager, 1, {"params": nnx.to_pure_dict(nnx.split(make_model(rm_cfg))[1])},
                    {"stage": "rm", "model": dataclasses.asdict(rm_cfg), "tokenizer": "byte", "total_steps": 1}, force=True)
    manager.wait_until_finished()
    return root


def _snapshot(root) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        out[os.path.relpath(dirpath, root) + "/"] = "folder"
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
        # ---- counts (0 steps keeps its meaning: from epochs)
        ("negative_steps", ["pretrain", *SMOKE_PT, "--config.train.steps=-5"], "config.train.steps=-5; expected >= 0"),
        ("sft_negative_steps", [*sft, "--config.train.steps=-3"],
         "config.train.steps=-3; expected >= 0 (0 = from config.train.epochs)"),
        ("zero_cadence", ["pretrain", *SMOKE_PT, "--config.train.log_every=0"], "config.train.log_every=0; expected >= 1"),
        # ---- folders: checked before anything loads
        ("workdir_is_file", ["pretrain", *SMOKE_PT], "workdir_is_file is a file, not a folder"),
        ("read_only_filesystem", ["pretrain", *SMOKE_PT], "is on a read-only filesystem"),
        ("workdir_locked", ["pretrain", *SMOKE_PT],
         "is in use: locked by pid 4242 on host labhost since 2026-12-03 10:00:00 (instructgpt pretrain)"),
        ("rerun_other_config", ["pretrain", *SMOKE_PT, "--config.train.seed=1"],
         "holds a finished pretrain run with another config or data (train.seed: 0 there, 1 here); use a new "
         "--workdir, or add --restart"),
        ("init_from_reward_model", [*sft[:3], f"--config.init_from={stock / 'rm'}", *sft[4:]],
         "holds a reward model (stage 'rm', with a scalar head); expected a language model"),
        ("init_from_missing", [*sft[:3], f"--config.init_from={tmp / 'no_such_stage'}", *sft[4:]],
         "no_such_stage: no such folder"),
        ("sample_missing_workdir", ["sample", "--prompt", "hi"], "sample_missing_workdir: no such folder"),
        ("eval_missing_workdir", ["eval", "--config", "configs/pipeline.py:smoke"], "eval_missing_workdir: no such folder"),
        ("report_missing_workdir", ["report"], "report_missing_workdir: no such folder"),
        ("sample_empty_prompt", ["sample", "--prompt", ""], "--prompt '' is empty"),
        ("ppo_few_prompts", [*ppo[:-2], f"--config.reward_model={pt}", "--config.data.prompts="
                             + _jsonl(tmp / "few.jsonl", '{"prompt": "a"}', '{"prompt": "b"}', '{"prompt": "c"}')],
         "few.jsonl has 3 prompts, fewer than config.ppo.rollout_batch=32"),
        ("sft_json_array", [*sft, train("i.jsonl", "[", '  {"prompt": "p", "response": "r"}', "]")],
         "i.jsonl:1: invalid JSON (Expecting value at column 2); a JSONL file must hold one JSON object per line"),
    ]


# Where each case writes (its --workdir / --out); "stock" cases point at a finished folder of the fixture.
WORKDIR_OF = {"resume_other_model_size": "pretrain", "import_over_checkpoint": "pretrain",
              "rerun_other_config": "pretrain", "sample_empty_prompt": "pretrain"}
FRESH = {"sample_missing_workdir", "eval_missing_workdir", "report_missing_workdir", "ppo_few_prompts",
         "read_only_filesystem"}  # a workdir that does not exist: nothing may create it


def _hold_lock(workdir) -> int:
    """The lock of `workdir`, held as another live run would hold it."""
    fd = os.open(workdir / folders.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": 4242, "host": "labhost", "started": "2026-12-03 10:00:00",
                             "command": "instructgpt pretrain"}).encode())
    return fd


def test_bad_inputs_give_one_line_and_touch_nothing(stock, tmp_path, capsys, monkeypatch):
    (tmp_path / "h.jsonl").write_bytes(b'{"prompt": "p", "response": "caf\xe9"}\n')
    (tmp_path / "runs").mkdir()
    cases = _cases(stock, tmp_path)
    assert len(cases) >= 30
    failures = []
    for name, argv, expected in cases:
        workdir = stock / WORKDIR_OF[name] if name in WORKDIR_OF else tmp_path / "runs" / name
        if name == "workdir_is_file":
            workdir.write_text("a file where the user meant a folder")
        elif name not in WORKDIR_OF and name not in FRESH:
            workdir.mkdir(parents=True)
            (workdir / "notes.txt").write_text("a file the user had here")
        held = _hold_lock(workdir) if name == "workdir_locked" else None
        before = {**_snapshot(stock), **{f"tmp/{k}": v for k, v in _snapshot(tmp_path).items()}}
        flag = [] if name == "missing_workdir" else (["--out", str(workdir / "out")] if argv[0] == "world"
                                                     else ["--workdir", str(workdir)])
        with monkeypatch.context() as patch:
            if name == "read_only_filesystem":  # statvfs of anything under tmp_path says read-only
                real = os.statvfs
                patch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_flag=os.ST_RDONLY)
                              if str(p).startswith(str(tmp_path)) else real(p))
            code, err = _main(capsys, *argv, *flag)
        if held is not None:
            os.close(held)
        after = {**_snapshot(stock), **{f"tmp/{k}": v for k, v in _snapshot(tmp_path).items()}}
        errors = [line for line in err.splitlines() if "error" in line.lower()]
        changed = sorted(k for k in {*before, *after} if after.get(k) != before.get(k))
        problem = []
        if code in (0, None):
            problem.append(f"exit code {code}")
        if "Traceback" in err:
            problem.append("a traceback")
        if len(errors) != 1 or expected not in errors[0]:
            problem.append(f"error lines {errors} (expected one containing {expected!r})")
        if changed:
            problem.append(f"changed, added or removed {changed}")
        if problem:
            failures.append(f"{name}: " + "; ".join(problem))
    assert not failures, "\n".join(failures)


def _text_jsonl(path, n: int = 60) -> str:
    lines = [json.dumps({"text": f"Document {i}: to be, or not to be, that is the question number {i}. " * 4})
             for i in range(n)]
    return _jsonl(path, *lines)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_finished_run_with_other_data_is_an_error_until_restart(tmp_path, capsys, caplog):
    """A finished stage rerun on changed input files stops (one line, nothing touched); --restart moves it aside
    and trains again, taking over the lock a killed run left behind, with a warning."""
    text, workdir = _text_jsonl(tmp_path / "text.jsonl"), tmp_path / "pt"
    argv = ["pretrain", *SMOKE_PT, f"--config.data.source={text}", "--config.data.heldout_fraction=0.3",
            "--workdir", str(workdir)]
    assert _main(capsys, *argv)[0] == 0
    _text_jsonl(tmp_path / "text.jsonl", n=61)  # the same path, other data
    before = _snapshot(tmp_path)
    code, err = _main(capsys, *argv)
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert code == 1 and "Traceback" not in err and len(errors) == 1, err
    assert (f"{workdir} holds a finished pretrain run with another config or data (the file config.data.source names "
            "has changed since); use a new --workdir, or add --restart") in errors[0]
    assert _snapshot(tmp_path) == before

    pid = _dead_pid()
    (workdir / folders.LOCK).write_text(json.dumps({"pid": pid, "host": "labhost", "started": "2026-12-03 10:00:00",
                                                    "command": "instructgpt pretrain"}))
    code, err = _main(capsys, *argv, "--restart")
    assert code == 0, err
    assert f"taking over the lock left by pid {pid} on host labhost" in caplog.text
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("pt.replaced-")]
    assert len(moved) == 1 and (moved[0] / "checkpoints" / "2").is_dir() and not (moved[0] / folders.LOCK).exists()
    assert (workdir / "checkpoints" / "2").is_dir() and not (workdir / folders.LOCK).exists()


def test_ctrl_c_ends_with_one_line_saying_where_the_run_resumes(tmp_path, capsys, monkeypatch):
    from instructgpt_jax import metrics

    write = metrics.MetricWriter.write

    def interrupted(self, step, row):
        if step == 3:
            raise KeyboardInterrupt
        return write(self, step, row)

    monkeypatch.setattr(metrics.MetricWriter, "write", interrupted)
    workdir = tmp_path / "pt"
    code, err = _main(capsys, "pretrain", *SMOKE_PT, "--config.train.steps=4", "--config.train.checkpoint_every=2",
                      "--workdir", str(workdir))
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"instructgpt pretrain: interrupted; the same command resumes from step 2 "
                                            f"({workdir / 'checkpoints' / '2'})")
    assert not (workdir / folders.LOCK).exists()


def test_stage_takes_model_size_and_tokenizer_from_init_from(stock, tmp_path, capsys):
    """configs/sft.py names the tiny preset; against a nano base model SFT trains a nano model. Its TensorBoard
    events hold every metrics.jsonl scalar, the base model's step 0 included."""
    from instructgpt_jax import metrics

    workdir = tmp_path / "sft"
    code, err = _main(capsys, "sft", "--config", "configs/sft.py", f"--config.init_from={stock / 'pretrain'}",
                      f"--config.data.train={stock / 'world' / 'sft.jsonl'}", "--config.train.steps=1",
                      "--config.train.batch_size=8", "--config.eval.gold_judge=", "--config.eval.val_batches=1",
                      "--workdir", str(workdir))
    assert code == 0, err
    config = json.load(open(workdir / "config.json"))
    assert config["model"]["preset"] == "nano" and config["data"]["tokenizer"] == "byte"
    logged = {(row["step"], k) for row in metrics.read_metrics(str(workdir)) for k in row if k not in ("step", "time")}
    assert (0, "sft/val_loss") in logged and (1, "sft/loss") in logged
    assert {(step, tag) for step, tag, _ in metrics.read_tensorboard(str(workdir))} == logged
