"""The evaluation tests' shared workdir: the smoke world and random nano policies, evaluated once a session.

test_evaluate.py and test_eval_draws.py both read it (each copies it before evaluating it again), so the workdir
is built and evaluated once however many modules ask for it.
"""

import dataclasses
import json
import os
import shutil

import jax
import ml_collections
import optax

from instructgpt_jax import checkpoint, config_base, evaluate, train
from instructgpt_jax.data import formats
from instructgpt_jax.presets import get_preset

SPLITS = evaluate.SPLITS  # the prompt sets and their figures' key suffix, as the evaluation names them
_BUILT = {}


def save(stage_dir, cfg, seed):
    """A one-step 'stage' checkpoint of random params, written the way train.run writes one."""
    setup = train.make_setup(cfg, config_base.mesh_config(), optax.identity())
    with jax.set_mesh(setup.mesh):
        params = train.random_params(setup, seed)
        manager = checkpoint.make_manager(os.path.join(stage_dir, "checkpoints"))
        checkpoint.save(manager, 1, {"params": params}, {"model": dataclasses.asdict(cfg), "total_steps": 1}, force=True)
        manager.wait_until_finished()




def eval_section(**overrides):
    section = config_base.load_config("configs/eval.py:smoke")
    section.update(dict(prompts=16, heldout_prompts=8, batch_size=8, max_new_tokens=8, rm_prompts=4, rm_k=(2, 4),
                        heldout_batches=1, heldout_seq_len=32, corpus="shakespeare", **overrides))
    return section




def evaluated_workdir(tmp_path_factory):
    """(W, config, summary): world (smoke) + random nano policies: base, sft, ppo; ppo_ptx is a copy of sft; a random
    RM; evaluated by `evaluate.run`. Built in the session's base folder by the first caller, returned as is after."""
    w = tmp_path_factory.getbasetemp() / "eval_workdir"
    if w not in _BUILT:
        world = config_base.load_config("configs/world.py:smoke")
        formats.write_world(world, str(w / "world"))
        cfg = get_preset("nano")
        for name, seed in (("pretrain", 0), ("sft", 1), ("ppo", 2)):
            save(str(w / name), cfg, seed)
        shutil.copytree(w / "sft", w / "ppo_ptx")
        save(str(w / "rm"), get_preset("nano", scalar_head=True), 3)
        (w / "rm" / "reward_norm.json").write_text(json.dumps({"mean": 0.5, "std": 2.0}))
        config = ml_collections.ConfigDict({"world": world, "eval": eval_section()})
        _BUILT[w] = w, config, evaluate.run(config, str(w))
    return _BUILT[w]


def records(w, name, split):
    return [r for r in map(json.loads, (w / "eval" / f"{name}.jsonl").read_text().splitlines()) if r["split"] == split]
