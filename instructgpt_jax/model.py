"""The GPT-2 architecture in Flax NNX, its GPT-NeoX (Pythia) variant, and the scalar head used by the reward
and value models.

Token + learned position embeddings, pre-LN blocks (causal self-attention, GELU-tanh MLP), a final
LayerNorm and an unembedding tied to the token embedding through `Embed.attend` (Radford et al. 2019).
`arch="neox"` is GPT-NeoX as Pythia uses it (Black et al. 2022, Biderman et al. 2023): no position table
but rotary embeddings on the first `rotary_pct` of each head's dimensions (rotate-half form, Su et al. 2021),
exact (erf) GELU, with `parallel_residual` (attention and MLP read the same input and add to the stream
together) and `tied_embeddings=False` (a separate `lm_head`). The parameter names stay GPT-2's; hf.py maps
Hugging Face's GPTNeoX names onto them. `smear_keys` (either arch, ours alone, so not exportable) mixes into each
head's key the previous token's key by a learned weight (`smear`), as Olsson et al. (2022) did to study how
induction heads form.
The reward model of InstructGPT is this network with the unembedding replaced by a scalar head read at
the last response token (Ouyang et al. 2022, section 3.5); here the head sits beside the tied unembedding,
so one checkpoint layout serves the policy, the reward model and the value function.

Everything a stage needs is explicit: position ids (so a left-padded row gives the logits of the same row
unpadded), a key mask, a dropout key (None = deterministic) and an optional KV cache, a plain pytree
that the sampler threads through `lax.while_loop`. Parameters carry logical axis names (`vocab`, `embed`,
`heads`, `kv`, `mlp`); `sharding.py` maps them to mesh axes with rules that live in the config.
"""

from __future__ import annotations

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
from flax import nnx

# Flax >= 0.12 shards a Variable eagerly when it is created with sharding names, which needs a mesh in
# context even for a CPU unit test. We keep the names as metadata only and place parameters ourselves
# (`sharding.init_sharded`: jit(init, out_shardings) derived from eval_shape), as MaxText does.
flax.config.update("flax_always_shard_variable", False)

Cache = list  # per layer: {"k": (B, H, S, K), "v": (B, H, S, K)}, with smear_keys also "k_last": (B, 1, H, K)


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Architecture and numerics of one GPT. Built from a config dict at the stage boundary."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_inner: int | None = None  # MLP width F; None = 4 * n_embd as in GPT-2
    dropout: float = 0.0  # embedding, attention-probability and residual dropout
    layer_norm_epsilon: float = 1e-5
    dtype: str = "float32"  # compute dtype; "bfloat16" keeps fp32 master params
    param_dtype: str = "float32"
    remat: bool = False  # rematerialise each block in the backward pass
    scalar_head: bool = False  # reward / value head beside the tied unembedding
    arch: str = "gpt2"  # "gpt2": learned positions, GELU-tanh; "neox": rotary positions, exact GELU (Pythia)
    rotary_pct: float = 0.25  # neox: share of each head's dimensions that rotate (Pythia: 0.25)
    rotary_base: float = 10000.0  # neox: the rotary base (theta)
    parallel_residual: bool = False  # x + attn(ln_1(x)) + mlp(ln_2(x)) (GPT-NeoX) instead of two residual adds
    tied_embeddings: bool = True  # the unembedding is wte's transpose (GPT-2); False: its own lm_head (Pythia)
    smear_keys: bool = False  # each head's key mixes in the previous token's key by a learned weight (Olsson et al.)

    # What the parameters and the function they compute depend on (numerics such as dtype, remat or dropout aside).
    ARCHITECTURE = ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd", "n_inner", "arch", "rotary_pct",
                    "rotary_base", "parallel_residual", "tied_embeddings", "smear_keys")

    def architecture(self) -> tuple:
        """What the parameters' shapes and meaning depend on; two configs equal here can share params (numerics
        such as dtype, remat or dropout may differ)."""
        return (self.vocab_size, self.n_positions, self.n_layer, self.n_head, self.n_embd, self.mlp_dim, self.arch,
                self.rotary_dim, self.rotary_base if self.rotary_dim else None, self.parallel_residual,
                self.tied_embeddings, self.smear_keys)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_dim(self) -> int:
        return self.n_inner or 4 * self.n_embd

    @property
    def rotary_dim(self) -> int:
        """Rotated dimensions per head (0 for GPT-2), truncated as GPT-NeoX does: int(head_dim * rotary_pct)."""
        return int(self.head_dim * self.rotary_pct) if self.arch == "neox" else 0

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.arch not in ("gpt2", "neox"):
            raise ValueError(f"arch={self.arch!r}; expected 'gpt2' or 'neox'")
        if self.arch == "neox" and (self.rotary_dim % 2 or not 0 <= self.rotary_pct <= 1):
            raise ValueError(f"rotary_pct={self.rotary_pct} gives {self.rotary_dim} rotary dimensions of "
                             f"head_dim={self.head_dim}; expected an even number (rotate-half pairs)")
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"{field}={getattr(self, field)!r}; expected float32, bfloat16 or float16")


_normal = jax.nn.initializers.normal  # GPT-2 initialises every weight matrix with N(0, 0.02)
_zeros = jax.nn.initializers.zeros
_ones = jax.nn.initializers.ones


def _param(rngs: nnx.Rngs, init, shape, names, cfg: GPTConfig) -> nnx.Param:
    # Draw a key only for random initialisers. Under a trace (eval_shape, jit(init)) every `rngs.params()`
    # updates a traced counter, and flax 0.12.8 / jax 0.10 then inspects the tracer's `.sharding`, which
    # builds an error message by scanning the whole trace so far: quadratic in the number of draws
    # (count_params of the 175B preset took ~10 s with a draw per parameter, ~2 s like this).
    key = None if init in (_zeros, _ones) else rngs.params()
    return nnx.Param(init(key, shape, jnp.dtype(cfg.param_dtype)), out_sharding=names)


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout with an explicit key; `rng=None` (evaluation, sampling) is the identity.

    Each entry draws 16 random bits, two entries per 32-bit word of the generator, and is dropped when they
    fall below round(rate * 2^16): half the generator's work of one 32-bit draw per entry and much less than
    jax.random.bernoulli's float per entry (what that bought: docs/RESULTS.md, "Speed"). The rate is thus a
    multiple of 2^-16 (0.1 -> 0.100006) and kept entries are scaled by 1 / (1 - that rate), so
    E[dropout(x)] = x exactly.
    """
    if rng is None or rate == 0.0:
        return x
    threshold = min(max(round(rate * 65536), 1), 65535)
    n = x.size
    words = jax.random.bits(rng, ((n + 1) // 2,), jnp.uint32)
    halves = jnp.concatenate([words & 0xFFFF, words >> 16])[:n].reshape(x.shape)
    keep = halves >= threshold
    return jnp.where(keep, x * jnp.asarray(65536 / (65536 - threshold), x.dtype), jnp.zeros_like(x))


# fold_in salt of the embedding dropout's key, apart from the blocks' keys 0 .. n_layer - 1.
EMBED_DROPOUT_STREAM = 10_000


def _fold(rng: jax.Array | None, *data: int) -> jax.Array | None:
    if rng is None:
        return None
    for d in data:
        rng = jax.random.fold_in(rng, d)
    return rng


@jax.custom_vjp
def materialise_grad(x: jax.Array) -> jax.Array:
    """Identity whose gradient is written to memory once instead of being recomputed by every consumer.

    The residual stream's gradient is a chain of adds across all sublayers. XLA:CPU fuses cheap
    elementwise producers into each consumer (the dots of every weight gradient, the LayerNorm
    reductions), so without a cut each sublayer recomputes the whole chain above it: O(n_layer^2) work,
    a third of a trl_tiny training step. A divide is "expensive" to XLA and is never duplicated, so
    `g / (x * 0 + 1)`, exact for finite x, materialises the gradient once per sublayer. The forward
    pass and decoding are untouched. (optimization_barrier does not help: XLA:CPU removes barriers
    before fusion.)
    """
    return x


def _materialise_fwd(x):
    return x, x


def _materialise_bwd(x, g):
    return (g / (x * 0 + 1).astype(g.dtype),)


materialise_grad.defvjp(_materialise_fwd, _materialise_bwd)


class LayerNorm(nnx.Module):
    """LayerNorm computed in float32 whatever the compute dtype, then cast back."""

    def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
        self.scale = _param(rngs, _ones, (cfg.n_embd,), ("embed",), cfg)
        self.bias = _param(rngs, _zeros, (cfg.n_embd,), ("embed",), cfg)
        self.eps = cfg.layer_norm_epsilon

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class Embed(nnx.Module):
    """Token embedding whose transpose is the unembedding (`attend`), as in GPT-2."""

    def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
        self.embedding = _param(rngs, _normal(0.02), (cfg.vocab_size, cfg.n_embd), ("vocab", "embed"), cfg)
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], tokens, axis=0).astype(self.dtype)

    def attend(self, h: jax.Array) -> jax.Array:
        """Logits (B, T, V) in the compute dtype; losses upcast to float32."""
        return jnp.einsum("btd,vd->btv", h, self.embedding[...].astype(self.dtype))


def rotary(positions: jax.Array, dim: int, base: float) -> tuple[jax.Array, jax.Array]:
    """(cos, sin), each (B, T, dim) in float32: angle position * base^(-2i/dim), the halves repeated as
    GPT-NeoX lays them out (rotate-half: dimension i pairs with i + dim/2, not with its neighbour)."""
    inv_freq = 1.0 / (base ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # (B, T, dim/2)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jax.Array, rope: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Rotate the first dim dimensions of each head of x (B, T, H, K); the rest pass through."""
    cos, sin = (r[:, :, None, :] for r in rope)  # (B, T, 1, R)
    R = cos.shape[-1]
    rot, rest = x[..., :R].astype(jnp.float32), x[..., R:]
    half = jnp.concatenate([-rot[..., R // 2:], rot[..., :R // 2]], axis=-1)
    return jnp.concatenate([(rot * cos + half * sin).astype(x.dtype), rest], axis=-1)


def smear(k: jax.Array, key_mask: jax.Array, logit: jax.Array, cache_index=None, last=None) -> jax.Array:
    """Smeared keys (Olsson et al. 2022, "In-context Learning and Induction Heads"): k'_s = k_s + w_h (k_p - k_s)
    with w_h = sigmoid(logit_h) learned per head and p the slot of the token before s in its own sequence.

    k is (B, T, H, K). p is s - 1 when a (B, S) key mask admits it (a dense or left-padded row, a KV cache), and
    with a packed row's (B, T, S) mask the last slot before s that s may see (its segment, or a response's shared
    prompt). A token with none (position 0) keeps its own key, so a padded or packed row smears as the row alone
    does. Decoding passes the segment's first slot `cache_index` and `last`, the raw key (B, 1, H, K) at slot
    cache_index - 1: the cache keeps smeared keys, so a decode step smears its own token only.
    With a previous-token head in the layer below, a smeared key at "slow" in "the box is slow" carries "box
    is", which the query at a later "box is" can match: the induction of an in-context lookup in one layer.
    """
    T = k.shape[1]
    if cache_index is not None and key_mask.ndim != 2:
        raise ValueError(f"smear_keys with a {key_mask.shape} key mask over a KV cache; a cache takes a (B, S) mask")
    if key_mask.ndim == 2:  # a dense row is a segment at slot 0, whose first token has no predecessor
        first = k[:, :1] if last is None else last.astype(k.dtype)
        prev = jnp.concatenate([first, k[:, :-1]], axis=1)
        # Slot s's predecessor s - 1 sits at index s of the mask shifted right by one (slot -1: none).
        shifted = jnp.concatenate([jnp.zeros_like(key_mask[:, :1]), key_mask], axis=1)
        has_prev = jax.lax.dynamic_slice_in_dim(shifted, 0 if cache_index is None else cache_index, T, axis=1)
    elif key_mask.shape[1:] == (T, T):
        slots = jnp.arange(T)
        seen = jnp.where(key_mask & (slots[None, :] < slots[:, None])[None], slots, -1)  # (B, T, T)
        p = seen.max(axis=-1)  # (B, T): the last slot before t in t's own sequence, -1 for none
        prev = jnp.take_along_axis(k, jnp.maximum(p, 0)[:, :, None, None], axis=1)
        has_prev = p >= 0
    else:
        raise ValueError(f"smear_keys with a {key_mask.shape} key mask over {T} keys; expected (B, {T}) or "
                         f"(B, {T}, {T})")
    w = jax.nn.sigmoid(logit.astype(jnp.float32)).astype(k.dtype)[None, None, :, None]
    return k + w * jnp.where(has_prev[:, :, None, None], prev - k, jnp.zeros_like(k))


class CausalSelfAttention(nnx.Module):
    def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
        D, H, K = cfg.n_embd, cfg.n_head, cfg.head_dim
        # c_attn is GPT-2's (D, 3D) Conv1D kept as (D, 3, H, K) so that heads shard over 'tensor'.
        self.c_attn_kernel = _param(rngs, _normal(0.02), (D, 3, H, K), ("embed", None, "heads", "kv"), cfg)
        self.c_attn_bias = _param(rngs, _zeros, (3, H, K), (None, "heads", "kv"), cfg)
        # GPT-2 scales residual projections by 1/sqrt(2 * n_layer) at init.
        proj_std = 0.02 / (2 * cfg.n_layer) ** 0.5
        self.c_proj_kernel = _param(rngs, _normal(proj_std), (H, K, D), ("heads", "kv", "embed"), cfg)
        self.c_proj_bias = _param(rngs, _zeros, (D,), ("embed",), cfg)
        if cfg.smear_keys:  # sigmoid(0) = 0.5: every head starts half on the previous token and learns its share
            self.smear = _param(rngs, _zeros, (H,), ("heads",), cfg)
        self.cfg = cfg

    def __call__(self, x, key_mask, query_slots, layer_cache, cache_index, rope, rng):
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        # (B, T, 3, H, K): x times the kernel as stored, so no step transposes a weight (the "sbthk" output
        # order made XLA:CPU copy a transposed kernel in every decode step).
        qkv = jnp.einsum("btd,dshk->btshk", x, self.c_attn_kernel[...].astype(dt)) + self.c_attn_bias[...].astype(dt)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (B, T, H, K)
        if rope is not None:  # rotate before caching: cached keys already carry their positions
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        scale = jnp.sqrt(cfg.head_dim).astype(jnp.float32)
        new_cache = None
        if layer_cache is None:
            S = k.shape[1]
            if cfg.smear_keys:
                k = smear(k, key_mask, self.smear[...])
            att = jnp.einsum("bthk,bshk->bhts", q, k).astype(jnp.float32) / scale
        else:
            # Decoding: write this segment's keys/values at cache_index and attend to the whole cache. The cache
            # is (B, H, S, K): each head's keys are contiguous, so the one-query attention of a decode step is
            # a batched (1, K) x (K, S) product instead of a strided gather (docs/RESULTS.md, "Speed").
            put = lambda c, x: jax.lax.dynamic_update_slice_in_dim(c, x.transpose(0, 2, 1, 3).astype(c.dtype),  # noqa: E731
                                                                   cache_index, 2)
            raw = k
            if cfg.smear_keys:  # the cache keeps smeared keys, and the raw one the next token smears with
                k = smear(k, key_mask, self.smear[...], cache_index, layer_cache["k_last"])
            new_cache = {"k": put(layer_cache["k"], k), "v": put(layer_cache["v"], v)}
            if cfg.smear_keys:
                new_cache["k_last"] = raw[:, -1:].astype(layer_cache["k_last"].dtype)
            k, v = new_cache["k"].astype(dt), new_cache["v"].astype(dt)
            S = k.shape[2]
            att = jnp.einsum("bthk,bhsk->bhts", q, k).astype(jnp.float32) / scale
        # Causality is by slot (index in the padded sequence / cache), padding by the key mask.
        causal = query_slots[:, None] >= jnp.arange(S)[None, :]  # (T, S)
        # A (B, T, S) key mask gives each query its own keys: packed sequences attend within their segment.
        keys = key_mask[:, None, None, :] if key_mask.ndim == 2 else key_mask[:, None]
        allowed = causal[None, None] & keys  # (B, 1, T, S)
        att = jnp.where(allowed, att, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(att, axis=-1).astype(dt)
        probs = dropout(probs, cfg.dropout, _fold(rng, 0))
        y = jnp.einsum("bhts,bshk->bthk" if layer_cache is None else "bhts,bhsk->bthk", probs, v)
        y = jnp.einsum("bthk,hkd->btd", y, self.c_proj_kernel[...].astype(dt)) + self.c_proj_bias[...].astype(dt)
        return dropout(y, cfg.dropout, _fold(rng, 1)), new_cache


class MLP(nnx.Module):
    def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
        D, F = cfg.n_embd, cfg.mlp_dim
        self.c_fc_kernel = _param(rngs, _normal(0.02), (D, F), ("embed", "mlp"), cfg)
        self.c_fc_bias = _param(rngs, _zeros, (F,), ("mlp",), cfg)
        self.c_proj_kernel = _param(rngs, _normal(0.02 / (2 * cfg.n_layer) ** 0.5), (F, D), ("mlp", "embed"), cfg)
        self.c_proj_bias = _param(rngs, _zeros, (D,), ("embed",), cfg)
        self.cfg = cfg

    def __call__(self, x, rng):
        dt = jnp.dtype(self.cfg.dtype)
        h = x @ self.c_fc_kernel[...].astype(dt) + self.c_fc_bias[...].astype(dt)
        # GPT-2's "gelu_new" is the tanh approximation; GPT-NeoX's "gelu" is the exact (erf) one.
        h = jax.nn.gelu(h, approximate=self.cfg.arch == "gpt2")
        y = h @ self.c_proj_kernel[...].astype(dt) + self.c_proj_bias[...].astype(dt)
        return dropout(y, self.cfg.dropout, rng)


class Block(nnx.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); with parallel_residual
    x + attn(ln_1(x)) + mlp(ln_2(x)) (GPT-NeoX: both sublayers read the block's input).

    GPT-1 used post-LN (LayerNorm after each residual add, no final ln_f); the parameter count is the
    same, the numerics are not. Every preset here, GPT-1 included, runs the GPT-2 pre-LN block.
    """

    def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
        self.ln_1 = LayerNorm(cfg, rngs)
        self.attn = CausalSelfAttention(cfg, rngs)
        self.ln_2 = LayerNorm(cfg, rngs)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, key_mask, query_slots, layer_cache, cache_index, rope, rng):
        x = materialise_grad(x)
        a, new_cache = self.attn(self.ln_1(x), key_mask, query_slots, layer_cache, cache_index, rope, _fold(rng, 0))
        if self.mlp.cfg.parallel_residual:
            return x + a + self.mlp(self.ln_2(x), _fold(rng, 1)), new_cache
        x = materialise_grad(x + a)
        x = x + self.mlp(self.ln_2(x), _fold(rng, 1))
        return x, new_cache


class GPT(nnx.Module):
    def __init__(self, cfg: GPTConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.wte = Embed(cfg, rngs)
        if cfg.arch == "gpt2":  # GPT-NeoX has no position table: rotary embeddings carry positions
            self.wpe = _param(rngs, _normal(0.01), (cfg.n_positions, cfg.n_embd), (None, "embed"), cfg)
        self.h = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layer)])
        self.ln_f = LayerNorm(cfg, rngs)
        if not cfg.tied_embeddings:
            self.lm_head = _param(rngs, _normal(0.02), (cfg.n_embd, cfg.vocab_size), ("embed", "vocab"), cfg)
        if cfg.scalar_head:
            # Reward / value head; N(0, 1/sqrt(d+1)) as in Stiennon et al. 2020 and lm-human-preferences.
            self.score_kernel = _param(rngs, _normal(1.0 / (cfg.n_embd + 1) ** 0.5), (cfg.n_embd,), ("embed",), cfg)
            self.score_bias = _param(rngs, _zeros, (), (), cfg)

    def trunk(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        key_mask: jax.Array | None = None,
        *,
        cache: Cache | None = None,
        cache_index: jax.Array | int = 0,
        dropout_rng: jax.Array | None = None,
    ) -> tuple[jax.Array, Cache | None]:
        """Final hidden states (B, T, D) after ln_f, and the updated cache.

        tokens, positions: (B, T). key_mask: (B, T) without a cache, (B, S) over the whole cache with one,
        or (B, T, S) per query (packed sequences);
        True marks real tokens. Query t sits at slot cache_index + t and sees key slots <= its own.
        """
        B, T = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(T) + cache_index, (B, T))
        if key_mask is None:
            S = T if cache is None else cache[0]["k"].shape[2]
            key_mask = jnp.ones((B, S), bool)
        query_slots = jnp.arange(T) + cache_index
        x = self.wte(tokens)
        rope = None
        if self.cfg.arch == "gpt2":
            x = x + self.wpe[...][positions].astype(jnp.dtype(self.cfg.dtype))
        elif self.cfg.rotary_dim:
            rope = rotary(positions, self.cfg.rotary_dim, self.cfg.rotary_base)
        x = dropout(x, self.cfg.dropout, _fold(dropout_rng, EMBED_DROPOUT_STREAM))
        new_cache = [] if cache is not None else None
        for i, block in enumerate(self.h):
            call = _remat_block if self.cfg.remat else _call_block
            layer_cache = None if cache is None else cache[i]
            x, c = call(block, x, key_mask, query_slots, layer_cache, cache_index, rope, _fold(dropout_rng, i))
            if cache is not None:
                new_cache.append(c)
        return self.ln_f(x), new_cache

    def logits(self, h: jax.Array, unembedding: jax.Array | None = None) -> jax.Array:
        """Logits (B, T, V) in the compute dtype. `unembedding` = self.unembedding() computed once outside a
        decode loop, so the tied (V, D) table is not transposed again at every step."""
        if unembedding is not None:
            return jnp.einsum("btd,dv->btv", h, unembedding)
        if self.cfg.tied_embeddings:
            return self.wte.attend(h)
        return jnp.einsum("btd,dv->btv", h, self.lm_head[...].astype(jnp.dtype(self.cfg.dtype)))

    def unembedding(self) -> jax.Array:
        """The (D, V) unembedding matrix in the compute dtype (wte's transpose when tied)."""
        dt = jnp.dtype(self.cfg.dtype)
        return self.wte.embedding[...].astype(dt).T if self.cfg.tied_embeddings else self.lm_head[...].astype(dt)

    def score(self, h: jax.Array, index: jax.Array | None = None) -> jax.Array:
        """Scalar head. h (..., T, D); index (...) picks one position per row -> (...); None scores every position -> (..., T)."""
        if index is not None:
            h = jnp.take_along_axis(h, index[..., None, None], axis=-2)[..., 0, :]
        h32 = h.astype(jnp.float32)
        return h32 @ self.score_kernel[...].astype(jnp.float32) + self.score_bias[...].astype(jnp.float32)

    def __call__(self, tokens, positions=None, key_mask=None, *, dropout_rng=None) -> jax.Array:
        """Logits (B, T, V) of a full forward pass (no cache)."""
        h, _ = self.trunk(tokens, positions, key_mask, dropout_rng=dropout_rng)
        return self.logits(h)


def _call_block(block, x, key_mask, query_slots, layer_cache, cache_index, rope, rng):
    return block(x, key_mask, query_slots, layer_cache, cache_index, rope, rng)


# Recompute each block's activations in the backward pass: memory O(layers * B * T * D) instead of
# keeping attention probabilities and MLP activations of every layer.
_remat_block = nnx.remat(_call_block)


def init_cache(cfg: GPTConfig, batch: int, max_len: int, dtype: str | None = None) -> Cache:
    """Zero KV cache for `max_len` slots; dtype defaults to the compute dtype."""
    dt = jnp.dtype(dtype or cfg.dtype)
    shape = (batch, cfg.n_head, max_len, cfg.head_dim)
    # smear_keys: the raw key of the newest slot, which the next token's smeared key mixes in (smear).
    last = {"k_last": jnp.zeros((batch, 1, cfg.n_head, cfg.head_dim), dt)} if cfg.smear_keys else {}
    return [{"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt), **last} for _ in range(cfg.n_layer)]


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Position ids for a left-padded batch: 0 at the first real token of each row, 0 on padding."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def make_model(cfg: GPTConfig, seed: int = 0) -> GPT:
    return GPT(cfg, nnx.Rngs(params=seed))


def abstract_model(cfg: GPTConfig):
    """(graphdef, abstract params) without allocating: shapes, dtypes and logical sharding names."""
    return nnx.split(nnx.eval_shape(functools.partial(make_model, cfg)))


def count_params(cfg: GPTConfig) -> int:
    _, state = abstract_model(cfg)
    return sum(int(x.size) for x in jax.tree.leaves(state))


def packed_key_mask(segment_ids: jax.Array, branch_ids: jax.Array | None = None) -> jax.Array:
    """(B, T, T) block-diagonal key mask of packed rows: a token sees only its own segment (0 = padding).
    With `branch_ids` (a shared prompt: 0, then 1, 2, ... for the responses that follow it in the segment),
    a token sees its segment's prompt and its own branch only (data/packing.lay_row)."""
    seg = segment_ids
    mask = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)
    if branch_ids is not None:
        br = branch_ids
        mask &= (br[:, None, :] == 0) | (br[:, :, None] == br[:, None, :])
    return mask
