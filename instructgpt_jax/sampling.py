"""Jitted sampling with a KV cache: one prefill over the left-padded prompts, then a `lax.while_loop` that
feeds one token per row per step until `max_new_tokens` or until every row has emitted EOS.

Prompts are left-padded so that the last prompt slot holds every row's last real token: the prefill's last
position gives each row's first next-token distribution, and all rows then advance in lockstep, writing
step t's token at cache slot P + t. Position ids come from the prompt mask (`positions_from_mask`) and
continue per row (a row with n real prompt tokens feeds its t-th new token at position n + t), so a padded
row samples exactly what it would unpadded. Padding slots are hidden from attention by the key mask.

Decoding is greedy at temperature 0; otherwise it samples from softmax(logits / temperature) after the
top-k, then the top-p (nucleus) filter, by inverting the cumulative distribution with one uniform number per
row (`inverse_cdf`). `logprobs` are the log-probabilities of the sampled tokens under
the temperature-scaled but *unfiltered* distribution, log_softmax(logits / temperature): the quantity PPO
recomputes from a forward pass over the same tokens (at temperature 0 they are under the plain softmax).
After a row's EOS the remaining response tokens are `pad_id`; `response_mask` is True up to and including
the EOS. The generate function is jitted once per (batch, prompt length) shape: reuse it across PPO
iterations and pad prompt lengths to a few buckets to avoid recompiling.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instructgpt_jax import checkpoint, metrics, sharding
from instructgpt_jax.data.batching import bucket_width, left_pad
from instructgpt_jax.model import GPT, init_cache, positions_from_mask
from instructgpt_jax.tokenizer import make_tokenizer

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleConfig:
    max_new_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1 = no nucleus filter
    eos_id: int
    pad_id: int

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}; expected >= 1")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature}; expected >= 0 (0 = greedy)")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k}; expected >= 0 (0 = off)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p}; expected 0 < top_p <= 1 (1 = off)")


def prefill(model: GPT, prompt_tokens: jax.Array, prompt_mask: jax.Array, cache_len: int):
    """Run the left-padded prompts once, filling a KV cache of `cache_len` slots.

    Returns (logits (B, V) float32 for the first new token, cache, key_mask (B, cache_len), n_real (B,)).
    Slots after the prompt are marked real in the key mask up front: causality (a query sees slots up to its
    own) hides the ones not yet written, so the mask never changes while decoding.
    """
    B, P = prompt_tokens.shape
    cache = init_cache(model.cfg, B, cache_len)
    key_mask = jnp.concatenate([prompt_mask, jnp.ones((B, cache_len - P), bool)], axis=1)
    h, cache = model.trunk(prompt_tokens, positions_from_mask(prompt_mask), key_mask, cache=cache, cache_index=0)
    logits = model.logits(h[:, -1:])[:, 0].astype(jnp.float32)  # last slot = every row's last real token
    return logits, cache, key_mask, prompt_mask.sum(-1).astype(jnp.int32)


def decode_step(model: GPT, token: jax.Array, position: jax.Array, slot, cache, key_mask: jax.Array,
                unembedding: jax.Array | None = None):
    """Feed one token per row (B,) at position (B,) into cache slot `slot`; logits (B, V) float32 of the next.
    `unembedding`: model.unembedding(), computed once before the loop."""
    h, cache = model.trunk(token[:, None], position[:, None], key_mask, cache=cache, cache_index=slot)
    return model.logits(h, unembedding)[:, 0].astype(jnp.float32), cache


def filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """Set logits outside the top-k, then outside the top-p nucleus, to -inf. logits (B, V) float32."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        desc = -jnp.sort(-logits, axis=-1)
        probs = jax.nn.softmax(desc, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p: a token stays if the mass strictly before it is
        # below top_p, so the most likely token always stays.
        keep = jnp.cumsum(probs, axis=-1) - probs < top_p
        cutoff = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


def inverse_cdf(rng: jax.Array, probs: jax.Array, rows: tuple | None = None) -> jax.Array:
    """One index per row of `probs` (B, V), drawn with probability probs / probs.sum() by inverting the CDF.

    One uniform number per row instead of a Gumbel number per vocabulary entry (jax.random.categorical): on
    a CPU the V random draws cost more than the rest of the pick (docs/RESULTS.md, "Speed"). The cumulative
    sum runs in two levels, over blocks of about sqrt(V) entries and then inside the chosen block, so the
    work is O(V) and each float32 partial sum adds up at most about sqrt(V) terms. A zero-probability entry is never
    picked: it does not move the cumulative sum, and the pick is the first entry whose sum exceeds u.
    `rows` (offset, total): these B rows are rows offset .. offset + B of a batch of `total`, and draw that
    batch's uniform numbers (a shard of the batch samples what the whole batch samples in its rows).
    """
    B, V = probs.shape
    bs = 1 << (max(1, int(np.sqrt(V))).bit_length() - 1)  # a power of two near sqrt(V): divides most vocabularies
    nb = -(-V // bs)
    blocks = (probs if nb * bs == V else jnp.pad(probs, ((0, 0), (0, nb * bs - V)))).reshape(B, nb, bs)
    block_mass = blocks.sum(-1)
    block_cdf = jnp.cumsum(block_mass, axis=-1)
    offset, total = rows if rows is not None else (0, B)
    u = jax.lax.dynamic_slice_in_dim(jax.random.uniform(rng, (total, 1), jnp.float32), offset, B)
    u = u * block_cdf[:, -1:]
    # Rounding can leave u at or above the last partial sum: the pick is then the last entry with mass.
    block = jnp.minimum((block_cdf <= u).sum(-1), _last_nonzero(block_mass))
    # The mass before the chosen block is the previous partial sum itself (not block_cdf - block_mass, which
    # rounds differently), so u >= before and a zero-mass entry at the block's start is never the pick.
    exclusive = jnp.pad(block_cdf[:, :-1], ((0, 0), (1, 0)))
    before = jnp.take_along_axis(exclusive, block[:, None], axis=-1)
    inner = jnp.take_along_axis(blocks, block[:, None, None], axis=1)[:, 0]
    index = jnp.minimum((before + jnp.cumsum(inner, axis=-1) <= u).sum(-1), _last_nonzero(inner))
    return (block * bs + index).astype(jnp.int32)


def _last_nonzero(x: jax.Array) -> jax.Array:
    """Index of the last entry > 0 of each row of x (B, n)."""
    return x.shape[-1] - 1 - jnp.argmax(x[:, ::-1] > 0, axis=-1)


def sample_token(rng: jax.Array, logits: jax.Array, cfg: SampleConfig, rows: tuple | None = None):
    """(token (B,) int32, logprob (B,) float32 and entropy (B,) float32 of the temperature-scaled, unfiltered
    distribution). `rows`: inverse_cdf's."""
    scaled = logits if cfg.temperature == 0.0 else logits / cfg.temperature
    logprobs = jax.nn.log_softmax(scaled, axis=-1)
    probs = jnp.exp(logprobs)
    if cfg.temperature == 0.0:
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    elif cfg.top_k or cfg.top_p < 1.0:
        token = inverse_cdf(rng, jax.nn.softmax(filter_logits(scaled, cfg.top_k, cfg.top_p), axis=-1), rows)
    else:
        token = inverse_cdf(rng, probs, rows)
    entropy = -jnp.sum(probs * logprobs, axis=-1)
    return token, jnp.take_along_axis(logprobs, token[:, None], axis=-1)[:, 0], entropy


def make_generate(graphdef, sample_cfg: SampleConfig, mesh: jax.sharding.Mesh | None = None):
    """fn(params, prompt_tokens (B, P) int32, prompt_mask (B, P) bool, rng, salt=None) -> dict, jitted once.

    Returns {tokens (B, P + N): prompts (padding set to pad_id) then responses, response (B, N),
    logprobs (B, N) float32, entropy (B, N) float32 (of each step's temperature-scaled distribution),
    response_mask (B, N) bool, lengths (B,) int32}. Every row needs at least one
    real prompt token, and P + N - 1 <= n_positions (the last sampled token is never fed back). With `salt`
    (an int) the samples use fold_in(rng, salt), folded inside the program: an eager fold_in would wait for
    the device's queue and stall a host loop that dispatches the next batch before fetching the last.

    With a `mesh` that splits only the batch (data > 1, fsdp = tensor = 1: the CPU default), each device
    decodes its own rows in its own loop (shard_map) and stops when they have all ended: no collective per
    token step, where one program over the mesh would agree on "every row ended" across devices at each
    step and each device would wait for the slowest. Every row samples what it samples without the mesh (the
    same uniform numbers, `inverse_cdf`'s rows). Other meshes (sharded params) run one program over the mesh.
    On a CPU the program is compiled without XLA's YNNPACK fusions, which slow the loop's products of a few
    rows (docs/RESULTS.md, "The decode loop per device"); the samples are the same to float rounding.
    """
    N, cfg = sample_cfg.max_new_tokens, sample_cfg
    per_shard = (mesh is not None and mesh.size > 1 and mesh.shape["fsdp"] == 1 and mesh.shape["tensor"] == 1)

    def generate(params, prompt_tokens, prompt_mask, rng, salt=None):
        rng = rng if salt is None else jax.random.fold_in(rng, salt)
        if not per_shard:
            return decode(params, prompt_tokens, prompt_mask, rng, None)
        total = prompt_tokens.shape[0]
        sharding.check_divisible(total, mesh, "the number of prompts in a sampling batch")

        def local(params, prompt_tokens, prompt_mask, rng):
            offset = jax.lax.axis_index(sharding.BATCH_AXES) * prompt_tokens.shape[0]
            return decode(params, prompt_tokens, prompt_mask, rng, (offset, total))

        whole, by_row = jax.sharding.PartitionSpec(), jax.sharding.PartitionSpec(sharding.BATCH_AXES)
        # check_vma off: the loop's carry starts the same on every device (t, finished) and becomes per-device.
        return jax.shard_map(local, mesh=mesh, in_specs=(whole, by_row, by_row, whole), out_specs=by_row,
                             check_vma=False)(params, prompt_tokens, prompt_mask, rng)

    def decode(params, prompt_tokens, prompt_mask, rng, rows):
        """The rows' prefill and token loop; `rows` (offset, total) places them in the whole batch."""
        model = nnx.merge(graphdef, params)
        B, P = prompt_tokens.shape
        if P + N - 1 > model.cfg.n_positions:
            raise ValueError(f"prompt length {P} + max_new_tokens {N} - 1 exceeds n_positions={model.cfg.n_positions}")
        prompt_mask = prompt_mask.astype(bool)
        prompt_tokens = prompt_tokens.astype(jnp.int32)
        logits, cache, key_mask, n_real = prefill(model, prompt_tokens, prompt_mask, P + N - 1)

        def emit(state, logits):
            """Sample step t's token from `logits` and record it; rows already finished record padding."""
            t, finished = state["t"], state["finished"]
            token, logprob, entropy = sample_token(jax.random.fold_in(rng, t), logits, cfg, rows)
            token = jnp.where(finished, cfg.pad_id, token)
            put = lambda a, x: jax.lax.dynamic_update_index_in_dim(a, x, t, axis=1)  # noqa: E731
            return {
                **state,
                "t": t + 1,
                "token": token,
                "response": put(state["response"], token),
                "logprobs": put(state["logprobs"], jnp.where(finished, 0.0, logprob)),
                "entropy": put(state["entropy"], jnp.where(finished, 0.0, entropy)),
                "response_mask": put(state["response_mask"], ~finished),
                "finished": finished | (token == cfg.eos_id),
            }

        state = {
            "t": jnp.int32(0),
            "token": jnp.zeros((B,), jnp.int32),
            "finished": jnp.zeros((B,), bool),
            "response": jnp.full((B, N), cfg.pad_id, jnp.int32),
            "logprobs": jnp.zeros((B, N), jnp.float32),
            "entropy": jnp.zeros((B, N), jnp.float32),
            "response_mask": jnp.zeros((B, N), bool),
            "cache": cache,
        }
        state = emit(state, logits)
        unembedding = model.unembedding()

        def cond(state):
            return (state["t"] < N) & ~jnp.all(state["finished"])

        def body(state):
            # Feed the token sampled at step t - 1: slot P + t - 1, position n_real + t - 1.
            t = state["t"]
            logits, cache = decode_step(model, state["token"], n_real + t - 1, P + t - 1, state["cache"], key_mask,
                                        unembedding)
            return emit({**state, "cache": cache}, logits)

        state = jax.lax.while_loop(cond, body, state)
        prompt = jnp.where(prompt_mask, prompt_tokens, cfg.pad_id)
        return {
            "tokens": jnp.concatenate([prompt, state["response"]], axis=1),
            "response": state["response"],
            "logprobs": state["logprobs"],
            "entropy": state["entropy"],
            "response_mask": state["response_mask"],
            "lengths": state["response_mask"].sum(-1).astype(jnp.int32),
        }

    cpu = (mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()) == "cpu"
    return jax.jit(generate, compiler_options={"xla_cpu_experimental_ynn_fusion_type": ""} if cpu else None)


def sample_cli(workdir: str, prompts: list[str], max_new_tokens: int = 64, temperature: float = 0.0,
               seed: int = 0) -> dict:
    """`instructgpt sample --workdir W/sft --prompt ...`: responses of a stage's newest params."""
    if not prompts:
        raise ValueError("give at least one --prompt")
    if not all(p.strip() for p in prompts):
        raise ValueError(f"--prompt {next(p for p in prompts if not p.strip())!r} is empty; give the text the model "
                         "should answer or continue")
    _, graphdef, params, meta = checkpoint.load_model(workdir)
    step = meta["step"]
    tokenizer = make_tokenizer(meta.get("tokenizer", "byte"))
    tokens, mask = left_pad([tokenizer.encode_prompt(p) for p in prompts], tokenizer.pad_id)
    sample_cfg = SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    out = jax.device_get(make_generate(graphdef, sample_cfg)(params, tokens, mask, jax.random.key(seed)))
    samples = [
        {"prompt": p, "response": tokenizer.decode(out["response"][i][out["response_mask"][i]]),
         "length": int(out["lengths"][i])}
        for i, p in enumerate(prompts)
    ]
    return {"workdir": workdir, "step": step, "samples": samples}


def generate_texts(generate, params, tokenizer, prompts: list[str], prompt_len: int, batch_size: int, rng,
                   mesh=None, desc: str = "", bucket: int = 0) -> tuple[list[str], np.ndarray]:
    """(response texts, response lengths in tokens) of `generate` (sampling.make_generate) for each prompt.

    Prompts go in fixed batches of `batch_size` rows left-padded to `prompt_len` (one compiled shape), or with
    `bucket` > 0 each batch of prompts of one length bucket (the length rounded up to a multiple of `bucket`,
    at most `prompt_len`) left-padded to it: a prefill and KV cache no longer than the batch needs, at one
    compile per bucket (worth it for the compare stage's ~70k samples, not for a few hundred). A bucket's last
    batch is filled with copies of its first prompt, whose samples are discarded. The batch that starts at
    position s of the bucket-sorted order samples with fold_in(rng, s). With `desc`, a progress bar counts
    the samples.
    """
    bar = metrics.progress(len(prompts), 0, desc) if desc else None
    encoded = [tokenizer.encode_prompt(p) for p in prompts]
    fit = lambda n: bucket_width(n, bucket, prompt_len)  # noqa: E731
    order = sorted(range(len(prompts)), key=lambda i: (fit(len(encoded[i])), i))
    texts, lengths = [None] * len(prompts), np.zeros(len(prompts), np.int64)

    def collect(chunk, out):
        out = sharding.to_host(out)
        for row, i in enumerate(chunk):
            texts[i] = tokenizer.decode(out["response"][row][out["response_mask"][row]])
            lengths[i] = int(out["lengths"][row])
        if bar is not None:
            bar.update(len(chunk))

    # Batch s + 1 is dispatched before batch s is fetched and decoded, so the host's work overlaps the device's.
    start, pending = 0, None
    while start < len(order):
        width = fit(len(encoded[order[start]]))
        chunk = [i for i in order[start:start + batch_size] if fit(len(encoded[i])) == width]
        rows = [encoded[i] for i in chunk] + [encoded[chunk[0]]] * (batch_size - len(chunk))
        tokens, mask = left_pad(rows, tokenizer.pad_id, width)
        inputs = {"prompt_tokens": tokens, "prompt_mask": mask}
        if mesh is not None:
            inputs = sharding.put_global(inputs, mesh)
        out = generate(params, inputs["prompt_tokens"], inputs["prompt_mask"], rng, start)
        if pending is not None:
            collect(*pending)
        pending, start = (chunk, out), start + len(chunk)
    if pending is not None:
        collect(*pending)
    if bar is not None:
        bar.close()
    return texts, lengths


def pick_distinct(texts: list[str], k: int) -> list[str]:
    """The first k distinct non-blank texts, in sampling order (read_rm rejects duplicates and blanks)."""
    out = []
    for text in texts:
        if text.strip() and text not in out:
            out.append(text)
            if len(out) == k:
                break
    return out
