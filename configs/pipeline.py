"""The whole InstructGPT recipe on the embedded world: one config holding every stage's config.

  instructgpt pipeline --config configs/pipeline.py:smoke --workdir runs/smoke
  instructgpt pipeline --config configs/pipeline.py:default --workdir runs/default
  instructgpt pipeline --config configs/pipeline.py --config.sft.train.epochs=4 --config.ppo_ptx.ppo.beta=0.05 ...

Stages (W = --workdir): world -> pretrain -> sft -> compare -> rm -> ppo -> ppo_ptx -> eval -> report, each
from its own config file (configs/world.py, pretrain.py, sft.py, compare.py, rm.py, ppo.py), embedded here
as config.<stage> so one file controls the run and any key of any stage can be overridden. The pipeline
fills in the paths between stages. `config.model` is the model preset of every stage and `config.tokenizer`
the tokenizer of every stage (one override changes all: --config.model=small_cpu). `config.stages` runs a
subset ("sft,compare,rm"); finished stages are skipped, an interrupted one resumes, and a finished one whose
config or any upstream stage's config changed runs again (its old folder kept as W/<stage>.replaced-<time>).
`config.rm_model` = a preset larger than `config.model` (the paper's 6B RM for its 1.3B policy) adds the
stages rm_pretrain and rm_sft (that network's own base model and SFT) before compare; the RM starts from
rm_sft and PPO's value model from the RM (configs/ablations/rm_size.py: no better at the tiny scale).

Iterated RLHF (`--config.rounds=3`, instructgpt_jax/rounds.py): after round 1 (the stages above), each round
r >= 2 has the labelers rank samples of round r-1's policy on `comparisons_per_round` fresh RM prompts,
retrains the RM on every comparison so far, and continues PPO-ptx from round r-1's policy with the KL
anchored to SFT, in W/round_<r>/{compare,rm,ppo}. `comparisons_per_round` is the labelling budget per round
(0 = config.compare.data.num_prompts), so rounds=1 at budget 3B compares with rounds=3 at budget B
(configs/ablations/rounds.py).

Args:
  smoke    nano model, every stage a few steps: a pulse, not a result (its wall time: docs/RESULTS.md).
  default  tiny-world-rope-smear model (1.1M parameters) on the world at scale 0.5, with the tuned keys below:
           pretraining on the world's web text (v5) and Shakespeare (6,000 steps), SFT, comparisons of SFT samples
           on 16,384 prompts, the RM (3 epochs at 3e-4), PPO and PPO-ptx (200 iterations at lr 1e-4, beta
           adapting from 0.3 towards 1.5 nats of KL), evaluation of the paper's five policies. Wall time per stage, the
           results table for three seeds and what the run does and does not show: docs/RESULTS.md.
  --config.seed=N reseeds every stage, the world included: an independent replicate of the whole recipe.
"""

import ml_collections

from instructgpt_jax.config_base import load_config

LINKED = ("pretrain", "sft", "rm_nlp", "rm", "ppo", "ppo_ptx")  # stages that build a model from config.model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "default"
    if arg not in ("smoke", "default"):
        raise ValueError(f"configs/pipeline.py: unknown arg {arg!r}; expected smoke or default")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.stage = "pipeline"
    # One seed for the whole run: the world (prompts, demonstrations, labelers, its web text) and every stage's
    # data order and sampling keys are drawn from it (pipeline.stage_configs adds it to each stage's seed), so
    # --config.seed=1 is an independent replicate of the whole recipe.
    config.seed = 0
    config.stages = ""  # comma-separated subset of pipeline.stage_names(config) (e.g. "round_2/rm"); "" = all
    config.rounds = 1  # RLHF rounds; round r >= 2 goes to W/round_<r>/{compare,rm,ppo}
    config.comparisons_per_round = 0  # RM prompts labelled per round (the labelling budget); 0 = compare's num_prompts
    config.round_rm_init = "sft"  # rounds >= 2: "sft" trains the RM from SFT again, "previous" continues the last RM
    config.round_sft_mix = 0.0  # rounds >= 2: share of the compared samples drawn from SFT instead of the policy
    # The tokenizer of every stage: the world tokenizer, a 2,048-id BPE trained on the world's text
    # (tokenizer.WorldTokenizer), in which every word of the world is one token, so copying a word of the
    # prompt is one step for the model (docs/RESULTS.md, "The world tokenizer"); "byte" is the tokenizer of
    # the runs before it (then use the plain presets and --config.prompt_len=96 --config.max_new_tokens=48).
    # The default's preset: tiny-world (4 layers, d 128) with rotary positions and smeared keys (presets.py), the
    # one whose base model binds a stated fact to its thing, which context_qa's answers and their judging need
    # (docs/RESULTS.md, "Web v5 at 6,000 steps on the rotary smeared-key model"). "tiny-world" is the default
    # before 2026-12-07.
    config.model = ml_collections.FieldReference("nano-world" if smoke else "tiny-world-rope-smear")
    config.tokenizer = ml_collections.FieldReference("world")
    # Token lengths of every stage that samples, in config.tokenizer's tokens: prompts are left-padded to
    # prompt_len (the eval's to twice that, room for its few-shot prefix), responses stop at max_new_tokens.
    # The world's longest PPO / eval prompt is 43 world tokens with its markers, its longest demonstration 23.
    config.prompt_len = ml_collections.FieldReference(48)
    config.max_new_tokens = ml_collections.FieldReference(24)
    # The RM's own preset ("" = the policy's). A larger one gets its own base model and SFT (stages rm_pretrain,
    # rm_sft, with the pretrain and sft configs) and PPO's value model starts from it, as in the paper, whose
    # 6B RM and value function serve its 1.3B policy.
    config.rm_model = ""

    config.world = load_config("configs/world.py:" + ("smoke" if smoke else "default"))
    if not smoke:
        # 6,175 demonstrations instead of 1,235: the tiny model only learns to copy words from the prompt (and
        # so to answer at all) with this many (docs/RESULTS.md, "Is the RM limited by its labels?").
        config.world.scale = 0.5
    config.pretrain = load_config("configs/pretrain.py:" + ("smoke" if smoke else "tiny"))
    # The world's web text (skills without instructions, data/web.py) mixed with Shakespeare: the base model
    # has the skills SFT elicits, and held-out loss on this mix is the alignment tax (eval, PPO-ptx).
    config.pretrain.data.source = "web"
    # The version of the world's web (data/web.py's web_text) in every stage that reads it: pretraining, PPO-ptx's
    # pretraining batches and the eval's held-out loss. 5 (the default): web v4 plus documents that state things'
    # qualities and then ask and answer them, so the base model learns to look a stated fact up; 2-4 are the
    # earlier webs (docs/RESULTS.md: "Latent skills", "Web v4", "Web v5"; 2 the default before 2026-12-07 and the
    # smoke run's), 1 the web the world tokenizer was trained on.
    config.web_version = 2 if smoke else 5
    config.sft = load_config("configs/sft.py:" + ("smoke" if smoke else "tiny"))
    # Where the RM starts. "sft": the SFT model (the paper's Section 3.5). "nlp": the base model fine-tuned on the
    # world's public NLP datasets, as the paper's final RM was (Appendix C.2: a 6B GPT-3 fine-tuned on ARC, BoolQ,
    # CoQA, DROP, MultiNLI, ...): reading comprehension and claim checking about passages and lists
    # (data/nlp.py), in the stage rm_nlp before rm. "sft_nlp": SFT, then the same datasets. docs/RESULTS.md,
    # "The RM from a model fine-tuned on the world's NLP datasets", has what each gives.
    config.rm_init = "sft"
    # The rm_nlp stage (configs/rm_nlp.py): an SFT run on the world's NLP datasets, scored by their answer key.
    config.rm_nlp = load_config("configs/rm_nlp.py:" + ("smoke" if smoke else "tiny"))
    config.compare = load_config("configs/compare.py:" + ("smoke" if smoke else "default"))
    config.rm = load_config("configs/rm.py:" + ("smoke" if smoke else "default"))
    # An undertrained policy's samples can hold bytes that are not UTF-8; each decodes to U+FFFD (3 bytes), so
    # a 48-token sample can re-encode to more than 64 tokens. Cut those (logged) rather than stop the run.
    config.rm.data.overflow = "truncate"
    config.ppo = load_config("configs/ppo.py:" + ("smoke" if smoke else "ppo"))
    config.ppo.ppo.ptx_coef = 0.0  # plain PPO: the paper's gamma = 0
    config.ppo_ptx = load_config("configs/ppo.py:" + ("smoke" if smoke else "ptx"))
    config.ppo.data.corpus.source = config.ppo_ptx.data.corpus.source = "web"
    if not smoke:
        # Scaled for the tiny model; each choice is measured in docs/RESULTS.md. SFT: 5 epochs of the
        # scale-0.5 world's demonstrations (its sampled gold plateaus before that). Pretraining: 6,000 steps,
        # because the skills SFT elicits and the RM judges with form in pretraining: after 3,000 steps the base
        # model knows which listed thing is the animal, a sign's topic in capitals and the customer's thing to
        # reply about ("Pretraining 3,000 steps"), but no 3,000-step model looks up a stated fact, the skill
        # context_qa's answers and their judging need; on web v5 it forms between 3,000 and 6,000 steps, on two
        # seeds of three by 6,000 ("Web v5 at 6,000 steps on the rotary smeared-key model").
        config.sft.train.epochs = 5.0
        config.pretrain.train.steps = 6000
        # Every 1,000th pretraining checkpoint stays (~12 MB each) beside the newest three: when each latent skill
        # emerges (experiments/skill_probe.py --steps all).
        config.pretrain.train.keep_period = 1000
        # Comparisons on 16,384 prompts (nearly all the scale-0.5 world writes; compare refuses more): at 2,048 prompts
        # the tiny RM barely learns and PPO loses gold (docs/RESULTS.md, "The default at 8,192 comparisons"); its
        # agreement with the labelers still rises with every doubling up to 8,192 (configs/ablations/rm_data.py);
        # doubling again to 16,384 lifts its agreement with gold on three seeds of three and PPO-ptx's win rate on two
        # (docs/RESULTS.md, "Comparisons on 16,384 prompts"); with the stage defaults (1,024 prompts, one epoch, the
        # paper's choice at 33k prompts) it learns the labelers' length bias and little else. Three RM epochs at
        # learning rate 3e-4: held-out agreement, gold agreement and best-of-n all above two epochs at the stage's 1e-3
        # (configs/ablations/rm_optim.py; docs/RESULTS.md, "The RM's learning rate and epochs on web v2"). Each
        # evaluation scores ~10k held-out and training responses: every 500 steps, seventeen in the stage with the last.
        config.compare.data.num_prompts = 16384
        config.rm.optim.lr = 3e-4
        config.rm.train.epochs = 3.0
        config.rm.train.eval_every = config.rm.train.checkpoint_every = 500
        # 8 packed rows of 128 world tokens hold ~12 prompts' rankings, a step about as many prompts as the
        # stage default's 20 rows held in bytes (~7.5), so the RM takes about as many steps as it did then.
        config.rm.rm.packed_rows = 8
        # SFT forgets much of its pretraining text, so the pretraining gradient of PPO-ptx is large: at
        # ptx_coef 1 the policy drifts far from SFT; 0.03 keeps its KL small (configs/ablations/ptx.py and
        # docs/RESULTS.md, "The current default's PPO settings").
        config.ppo_ptx.ppo.ptx_coef = 0.03
        # The KL coefficient and learning rates of both PPO runs (the paper's beta 0.02 is for its reward scale).
        # At the stage default's 3e-5 the KL penalty never binds; at 1e-4 a small beta lets the policy exploit
        # what the RM over-generalises (beta 0.2: plain PPO answers every request with the reply family's
        # apology on seed 2) and beta 0.3 holds both runs on three seeds with more gold than 0.1 at 3e-5
        # (docs/RESULTS.md, "Beta 0.3 at learning rate 1e-4, three seeds"); configs/ablations/beta.py sweeps it.
        config.ppo.ppo.beta = config.ppo_ptx.ppo.beta = 0.3
        # From there beta adapts (Ziegler et al. 2019; instructgpt_jax/ppo.py, adaptive_beta): it steers the KL
        # per response towards 1.5 nats with a horizon of 1,000 episodes, for 200 iterations. At fixed beta
        # 0.3 for 100 iterations the policy stays under 1 nat, less than the RM's best-of-4 moves, and
        # hallucinations fell on one seed of three; with the controller for 200 they fall on all three, and
        # win rate, gold and violations move further (docs/RESULTS.md, "Adaptive KL for 200 iterations"). A target
        # of 3 nats gains PPO-ptx no gold and lets plain PPO over-optimise the RM on one seed of three
        # (docs/RESULTS.md, "A KL target of 3 nats instead of 1.5").
        # The fixed-beta ablations (configs/ablations/beta.py, overopt.py, rounds.py) turn it off.
        for stage in ("ppo", "ppo_ptx"):
            config[stage].optim.lr = config[stage].value_optim.lr = 1e-4
            config[stage].ppo.update({"adaptive_kl": True, "target_kl": 1.5, "horizon": 1000})
            config[stage].train.iterations = 200
    # The released policy is the trained weights, not their moving average (configs/ppo.py's ema_decay, the
    # paper's 0.992): on two seeds the average halves PPO-ptx's KL and lifts its gold, but lowers plain PPO's
    # win rate and held-out gold, and lifts neither to the paper's margin (docs/RESULTS.md, "The paper's moving
    # average of the policy's weights").
    for stage in ("ppo", "ppo_ptx"):
        config[stage].ppo.ema_decay = 0.0
    for stage in LINKED:
        config[stage].model.preset = config.get_ref("model")
    config.world.tokenizer = config.get_ref("tokenizer")
    for stage in ("pretrain", "sft", "rm_nlp", "rm", "ppo", "ppo_ptx"):
        config[stage].data.tokenizer = config.get_ref("tokenizer")

    config.eval = load_config("configs/eval.py:" + ("smoke" if smoke else "default"))
    for stage in ("ppo", "ppo_ptx"):
        config[stage].data.prompt_len = config.get_ref("prompt_len")
        config[stage].ppo.max_new_tokens = config.get_ref("max_new_tokens")
    config.compare.compare.max_new_tokens = config.get_ref("max_new_tokens")
    config.sft.eval.max_new_tokens = config.eval.max_new_tokens = config.get_ref("max_new_tokens")
    config.eval.prompt_len = config.get_ref("prompt_len") * 2
    return config
