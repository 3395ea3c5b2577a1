"""The whole InstructGPT recipe as one resumable command: world -> pretrain -> SFT -> comparisons -> RM ->
PPO -> PPO-ptx -> evaluation -> report, each stage into its own folder of one workdir W.

  instructgpt pipeline --config configs/pipeline.py:smoke --workdir W

The pipeline config embeds every stage's config (config.pretrain, config.sft, ...); this module only wires
them together through files, as the stages connect in docs/ARCHITECTURE.md: it fills in each stage's input
paths (init_from, data files) from W and calls the stage's `run(config, workdir)`, the same function its
`instructgpt <stage>` command calls. A stage that finishes writes W/<stage>/pipeline_stage.json with its
config fingerprint, its lineage (the fingerprints of the stages it reads, found as W/<stage> paths in its
config, and theirs, hashed) and wall time; a rerun skips it when both are unchanged. A finished stage whose
config or any upstream stage's config changed runs again from scratch, its old folder moved aside to
W/<stage>.replaced-<time> (nothing is deleted): changing `--config.sft.train.epochs` on a finished workdir
retrains SFT and redoes compare, RM, PPO and eval, not world or pretrain (a key new to a stage's config, at
the value that keeps the old behaviour, does not count: `ADDED_KEYS`). A stage that was interrupted has no
marker and runs again: training stages resume from their newest checkpoint and repeat the uninterrupted run
exactly (batches and keys depend only on the step), the others are deterministic and cheap and start over.
`config.stages` = "sft,rm" runs only those stages (their inputs must exist). After one progress line per
stage the pipeline ends with the results table of report.md and the paths of summary.json and report.md.
A W/pretrain holding a finished checkpoint but no marker (`instructgpt import-hf --workdir W/pretrain`: GPT-2
weights as the base model) counts as done, whatever the pretrain config says.
A sweep passes `reuse_from` (an earlier run's W): a stage whose config is identical there, and whose inputs
were all reused too, is linked instead of retrained (a beta sweep retrains only PPO).
`config.rounds` = R > 1 adds iterated RLHF before eval (rounds.py): stages round_<r>/compare, round_<r>/rm,
round_<r>/ppo for r = 2..R, in W/round_<r>/, with their own markers; eval then also measures each round's
policy and summary.json gets a `rounds` list (one entry per round, also for R = 1).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import time

import jax
import ml_collections

from instructgpt_jax import evaluate, report, rounds, stages, tables, train
from instructgpt_jax.config_base import rm_start, separate_rm
from instructgpt_jax.data import corpus as corpus_lib, formats, web
from instructgpt_jax.folders import move_aside

log = logging.getLogger(__name__)

STAGES = ("world", "pretrain", "sft", "compare", "rm", "ppo", "ppo_ptx", "eval", "report")
RM_CHAIN = ("rm_pretrain", "rm_sft")  # with config.rm_model: the larger RM's own base model and SFT, before compare
DERIVED = ("eval", "report")  # recomputed whenever a stage before them ran; never linked from another run
MARKER = "pipeline_stage.json"
FOUND = "found a finished checkpoint"  # the marker note of a W/pretrain the pipeline did not train (import-hf)


def stage_names(config) -> list[str]:
    """STAGES, with the stages of rounds 2..config.rounds before eval."""
    if config.rounds < 1:
        raise ValueError(f"config.rounds={config.rounds}; expected >= 1")
    first = list(STAGES[:-len(DERIVED)])
    if separate_rm(config):
        first[first.index("compare"):first.index("compare")] = RM_CHAIN
    if rm_start(config) == "rm_nlp":
        first.insert(first.index("rm"), "rm_nlp")
    return [*first, *rounds.stage_names(config.rounds), *DERIVED]


def stage_configs(config, workdir: str) -> dict:
    """Each stage's config with its input paths under `workdir` filled in (copies; `config` is untouched)."""
    w = lambda *p: os.path.join(workdir, *p)  # noqa: E731
    out = {}
    for stage in ("world", "pretrain", "sft", "compare", "rm", "ppo", "ppo_ptx"):
        cfg = copy.deepcopy(config[stage])
        cfg.unlock()
        out[stage] = cfg
    out["sft"].init_from = w("pretrain")
    out["sft"].data.train = w("world", "sft.jsonl")
    out["compare"].policy = w("sft")
    if config.comparisons_per_round:  # the labelling budget of every round, round 1 included
        out["compare"].data.num_prompts = config.comparisons_per_round
    out["compare"].data.prompts = w("world", "rm_prompts.jsonl")
    out["rm"].init_from = w(rm_start(config))  # sft, rm_sft or rm_nlp: config_base.rm_start
    out["rm"].data.train = w("compare", "rm.jsonl")
    if separate_rm(config):  # the paper's RM is larger than its small policies (6B for 1.3B): its own base and SFT
        for stage, source in zip(RM_CHAIN, ("pretrain", "sft")):
            out[stage] = copy.deepcopy(config[source])
            out[stage].unlock()
            out[stage].model.preset = config.rm_model
        out["rm_sft"].init_from, out["rm_sft"].data.train = w("rm_pretrain"), w("world", "sft.jsonl")
        out["rm"].model.preset = config.rm_model
    if rm_start(config) == "rm_nlp":  # the paper's RM started from a model fine-tuned on public NLP datasets
        cfg = out["rm_nlp"] = copy.deepcopy(config.rm_nlp)
        cfg.unlock()
        base, sft = ("rm_pretrain", "rm_sft") if separate_rm(config) else ("pretrain", "sft")
        cfg.init_from = w(base if config.rm_init == "nlp" else sft)
        cfg.data.train, cfg.data.val = w("rm_nlp", "data", "train.jsonl"), w("rm_nlp", "data", "val.jsonl")
    for stage in ("ppo", "ppo_ptx"):
        cfg = out[stage]
        cfg.init_policy, cfg.init_value, cfg.reward_model = w("sft"), w("rm"), w("rm")
        cfg.data.prompts, cfg.data.eval_prompts = w("world", "ppo.jsonl"), w("world", "eval.jsonl")
    out.update(rounds.stage_configs(config, workdir))
    out["eval"] = config
    if config.rounds > 1:  # each later round's policy is evaluated too
        out["eval"] = copy.deepcopy(config)
        out["eval"].eval.policies = (*config.eval.policies,
                                     *(f"round_{r}:{rounds.policy_folder(r)}" for r in range(2, config.rounds + 1)))
    out["report"] = None
    version = config.get("web_version", web.VERSION)
    if version != web.VERSION:
        set_web_version(out, version)
    if config.get("seed", 0):
        reseed(out, config.seed)
    return out


def map_corpus_sources(configs: dict, change) -> None:
    """Every stage's corpus source (pretraining's data.source, PPO's data.corpus.source, the eval's eval.corpus)
    replaced by change(source), in place; the eval stage's config, the pipeline's own, is copied first."""
    for stage, cfg in configs.items():
        if cfg is None:
            continue
        if stage == "eval":
            cfg = configs[stage] = copy.deepcopy(cfg)
            cfg.unlock()
            cfg.eval.corpus = change(cfg.eval.corpus)
            continue
        if "data" in cfg and "source" in cfg.data:
            cfg.data.source = change(cfg.data.source)
        if "data" in cfg and "corpus" in cfg.data:
            cfg.data.corpus.source = change(cfg.data.corpus.source)


def set_web_version(configs: dict, version: int) -> None:
    """Every stage's web corpus source ("web[-v<N>][:<s>]": pretraining, PPO-ptx, the eval's held-out loss) made
    version `version` of web.web_text, in place."""
    if version not in web.VERSIONS:
        raise ValueError(f"config.web_version={version!r}; expected one of {web.VERSIONS}")

    def versioned(source: str) -> str:
        if corpus_lib.parse_web_source(source) is None:
            return source
        return f"web-v{version}" + source.partition(":")[1] + source.partition(":")[2]

    map_corpus_sources(configs, versioned)


def reseed(configs: dict, seed: int) -> None:
    """Add the pipeline's `seed` to every stage's own seed, in place: world (so its prompts, demonstrations,
    labelers and web text), pretraining, SFT, comparison sampling, RM, PPO and evaluation keys."""
    map_corpus_sources(configs, lambda source: with_seed(source, seed))  # copies the eval stage's config
    for stage, cfg in configs.items():
        if cfg is None:
            continue
        if stage == "eval":
            cfg.world.seed += seed
            cfg.eval.seed += seed
            continue
        if stage == "world":
            cfg.seed += seed
        for section in ("train", "compare", "nlp"):
            if section in cfg and "seed" in cfg[section]:
                cfg[section].seed += seed


def with_seed(source: str, seed: int) -> str:
    """A corpus source with the pipeline seed: the world's web ("web[-v<N>]", "web[-v<N>]:<s>") is reseeded,
    its version kept; other sources are kept."""
    web_source = corpus_lib.parse_web_source(source)
    if web_source is None:
        return source
    return f"{source.partition(':')[0]}:{web_source[0] + seed}"


# Keys added to stage configs after workdirs existed, with the value that does what the code did before the key
# (the stages read them with .get(key, that value)): at that value a key is left out of the fingerprint, at any
# depth (the eval config holds SFT's), so a finished stage does not run again only because its config gained a
# key that changes nothing.
ADDED_KEYS = {("train", "pack_window"): 0, ("ppo", "ema_decay"): 0.0, ("eval", "baseline_samples"): 1,
              ("eval", "policy_samples"): 1, ("web_version",): web.VERSION, ("train", "keep_period"): 0}


def _drop_added_keys(node, path=()) -> None:
    for key in list(node.keys()):
        value = node[key]
        if isinstance(value, ml_collections.ConfigDict):
            _drop_added_keys(value, path + (key,))
        elif path[-1:] + (key,) in ADDED_KEYS and value == ADDED_KEYS[path[-1:] + (key,)]:
            with node.unlocked():  # a copy: the command line's config is locked
                del node[key]


def fingerprint(cfg, workdir: str) -> str:
    """The stage config as JSON with the workdir written as $W, so the same stage of two runs compares equal;
    keys of `ADDED_KEYS` at their old behaviour's value are left out."""
    if cfg is None:
        return ""
    cfg = cfg.copy_and_resolve_references()
    _drop_added_keys(cfg)
    text = cfg.to_json_best_effort(sort_keys=True)
    for path in dict.fromkeys((os.path.abspath(workdir), workdir.rstrip("/") or "/")):
        # a whole path in a JSON string: the workdir itself or a path under it ("/w" must not match "/world")
        text = re.sub(r'(?<=")' + re.escape(path) + r'(?=[/"])', "$W", text)
    return text


def stage_inputs(fp: str, names) -> list[str]:
    """The stages among `names` whose folders a stage's fingerprint (`fingerprint`) points at as $W/<stage>."""
    found = set()
    for path in re.findall(r"\$W/([A-Za-z0-9_./-]+)", fp):
        owners = [n for n in names if path == n or path.startswith(n + "/")]
        if owners:
            found.add(max(owners, key=len))  # round_2/rm, not a stage named round_2
    return sorted(found)


def lineages(fingerprints: dict, names) -> dict:
    """{stage: hash of its fingerprint and its input stages' lineages}, for the stages of `names` in order."""
    out = {}
    for stage in names:
        fp = fingerprints[stage]
        inputs = [out[d] for d in stage_inputs(fp, names) if d in out and d != stage]
        out[stage] = hashlib.sha256("\n".join([fp, *inputs]).encode()).hexdigest()[:16]
    return out


def _move_aside(workdir: str, stage: str) -> str | None:
    """Move a finished stage's folder out of the way of a fresh run (a linked one is only unlinked)."""
    path = os.path.join(workdir, stage)
    if os.path.islink(path):
        os.unlink(path)
        return None
    return move_aside(path)


def run_stage(stage: str, cfg, workdir: str):
    """Run one stage; returns what its `run` returns."""
    stage_dir = os.path.join(workdir, stage)
    if stage.startswith("round_"):
        return rounds.run_stage(stage, cfg, workdir)
    if stage == "world":
        return formats.write_world(cfg, stage_dir)
    if stage in ("pretrain", "rm_pretrain"):
        return stages.pretrain.run(cfg, stage_dir)
    if stage in ("sft", "rm_sft"):
        return stages.sft.run(cfg, stage_dir)
    if stage == "rm_nlp":
        return stages.sft.run_nlp(cfg, stage_dir)
    if stage == "compare":
        return stages.compare.run(cfg, stage_dir)
    if stage == "rm":
        return stages.rm.run(cfg, stage_dir)
    if stage in ("ppo", "ppo_ptx"):
        return stages.ppo.run(cfg, stage_dir)
    if stage == "eval":
        summary = evaluate.run(cfg, workdir)
        summary["rounds"] = rounds.round_figures(workdir, cfg.rounds, summary)
        if jax.process_index() == 0:
            evaluate.write_summary(workdir, {"rounds": summary["rounds"]})
        return summary
    return report.run(workdir)


def read_marker(workdir: str, stage: str) -> dict | None:
    path = os.path.join(workdir, stage, MARKER)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_marker(workdir: str, stage: str, marker: dict) -> None:
    formats.write_json(os.path.join(workdir, stage, MARKER), marker)


def _link(src_run: str, workdir: str, stage: str) -> None:
    """W/<stage> -> <src_run>/<stage> (relative, so the pair of runs can move together)."""
    dst = os.path.join(workdir, stage)
    if os.path.islink(dst) or os.path.exists(dst):
        raise FileExistsError(f"{dst} exists; cannot link it to {src_run}/{stage}")
    os.makedirs(os.path.dirname(dst), exist_ok=True)  # W/round_<r> for a round's stage
    os.symlink(os.path.relpath(os.path.join(src_run, stage), os.path.dirname(dst)), dst)


def run(config, workdir: str, reuse_from: str | None = None) -> dict:
    """Run every stage of `config.stages` (all when empty) into `workdir`; returns the summary."""
    names = stage_names(config)
    only = [s.strip() for s in config.get("stages", "").split(",") if s.strip()]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ValueError(f"config.stages has unknown stages {unknown}; expected some of {names}")
    stages = [s for s in names if not only or s in only]
    configs = stage_configs(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    t_start, ran, reusing = time.time(), False, reuse_from is not None
    devices = _devices()
    _progress(f"[pipeline] {len(stages)} stage(s) into {workdir} on {devices}")
    fps = {stage: fingerprint(configs[stage], workdir) for stage in names}
    lineage = lineages(fps, names)

    def same(m: dict | None, stage: str, fp: str) -> bool:
        if m is not None and m.get("note") == FOUND:  # a base model put there by hand stays, whatever the config
            return True
        return (m is not None and m["fingerprint"] == fp  # markers written before lineages: the config alone
                and m.get("lineage", lineage[stage]) == lineage[stage])

    for i, stage in enumerate(stages, 1):
        fp = fps[stage]
        marker = read_marker(workdir, stage)
        head = f"[pipeline {i}/{len(stages)}] {stage}"
        if same(marker, stage, fp) and not (ran and stage in DERIVED):
            _progress(f"{head}: complete ({marker['seconds']:.0f} s when it ran), skipped")
            continue
        if marker is None and stage == "pretrain" and _finished_elsewhere(os.path.join(workdir, stage)):
            # A base model put there by hand (`instructgpt import-hf --workdir W/pretrain`, or a pretrain run).
            if jax.process_index() == 0:
                _write_marker(workdir, stage, {"stage": stage, "fingerprint": fp, "lineage": lineage[stage],
                                               "seconds": 0.0, "finished": time.time(),
                                               "note": FOUND})
            _progress(f"{head}: found a finished checkpoint (e.g. import-hf), skipped")
            continue
        if marker is not None and stage not in DERIVED:
            # Finished, but with another config or other inputs: resuming would return the old result.
            moved = _move_aside(workdir, stage) if jax.process_index() == 0 else None
            _sync(f"pipeline:{stage}:moved")
            what = "its config" if marker["fingerprint"] != fp else "an input stage"
            _progress(f"{head}: {what} changed since it finished; "
                      + (f"old folder moved to {moved}, " if moved else "") + "running it from scratch")
            marker = None
        reused = read_marker(reuse_from, stage) if reusing and stage not in DERIVED else None
        if (same(reused, stage, fp) and marker is None
                and not os.path.lexists(os.path.join(workdir, stage))):
            if jax.process_index() == 0:
                _link(reuse_from, workdir, stage)
            _sync(f"pipeline:{stage}:linked")
            _progress(f"{head}: identical to {reuse_from}/{stage}, linked")
            continue
        reusing = False
        _progress(f"{head}: running")
        if stage == "report":  # the report shows the wall time of every stage before it
            _add_wall_times(workdir, names)
        t0 = time.time()
        result = run_stage(stage, configs[stage], workdir)
        seconds = time.time() - t0
        ran = True
        if jax.process_index() == 0:
            _write_marker(workdir, stage, {"stage": stage, "fingerprint": fp, "lineage": lineage[stage],
                                           "seconds": seconds, "finished": time.time(), "devices": devices})
        _sync(f"pipeline:{stage}:done")  # process 0's files (marker, summary) are there before anyone reads them
        _progress(f"{head}: done in {seconds:.0f} s{_headline(stage, result)}")
    summary = _add_wall_times(workdir, names)
    _progress(f"[pipeline] finished in {time.time() - t_start:.0f} s\n{closing(workdir, summary)}")
    return summary


def closing(workdir: str, summary: dict) -> str:
    """What the pipeline ends with: the results table of report.md (policies x metrics; after a smoke run's
    pulse line) and where summary.json and report.md are. The whole summary is in summary.json, not here."""
    lines = []
    if summary.get("policies"):
        lines += [tables.pulse_line(workdir), tables.results_table(summary)]
    for what, path in (("summary", os.path.join(workdir, "summary.json")),
                       ("report", os.path.join(workdir, "report", "report.md"))):
        if os.path.exists(path):
            lines.append(f"{what}: {path}\n")
    return "".join(line for line in lines if line).rstrip("\n")


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _finished_elsewhere(stage_dir: str) -> bool:
    return os.path.isdir(os.path.join(stage_dir, "checkpoints")) and train.is_complete(stage_dir)


def _devices() -> str:
    """What the stages run on, as wall times should be read: "2 x cpu" (host.py sets a CPU host's count)."""
    return f"{jax.device_count()} x {jax.default_backend()}"


def _add_wall_times(workdir: str, names: list[str]) -> dict:
    """Merge each stage's wall time (from its marker, also for skipped stages) into W/summary.json."""
    markers = {s: m for s in names if (m := read_marker(workdir, s)) is not None}
    times = {"wall_time_s": {s: m["seconds"] for s, m in markers.items()},
             # what each stage ran on ("2 x cpu"); None for a stage that ran before markers recorded it
             "wall_time_devices": {s: m.get("devices") for s, m in markers.items()}}
    if not os.path.exists(os.path.join(workdir, "summary.json")):
        return times
    if jax.process_index() == 0:
        evaluate.write_summary(workdir, times)
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


# The figures a stage's progress line shows where the first three of its result would mislead: the RM's result
# starts with its last train batch's figures (a batch of a few pairs), its held-out ones come later.
HEADLINE_KEYS = {"rm": ("rm/accuracy", "rm/gold_accuracy", "rm/val_loss")}


def _headline(stage: str, result) -> str:
    """A few figures for the progress line."""
    if stage == "eval" and isinstance(result, dict):
        parts = [f"{n} win {f['win_rate']:.2f} gold {f['gold']:.2f}" for n, f in result.get("policies", {}).items()]
        return ": " + "; ".join(parts)
    if isinstance(result, dict):
        chosen = [(k, result[k]) for k in HEADLINE_KEYS.get(stage, ()) if isinstance(result.get(k), float)]
        scalars = chosen or [(k, v) for k, v in result.items() if isinstance(v, float)][:3]
        return (": " + ", ".join(f"{k} {v:.3f}" for k, v in scalars)) if scalars else ""
    return ""


def _progress(line: str) -> None:
    if jax.process_index() == 0:
        print(line, flush=True)
