"""NumPy batches for every stage: LM windows, SFT sequences, K-wise RM groups and PPO prompts.

Each `*_batches` builder returns a `Batches`: `batches[step]` (or `batches(step)`) is this host's share of
global batch `step`, a pure function of (seed, step). Example order is a fresh seeded permutation each
epoch, and global example i of the run is example `perm(seed, i // n)[i % n]`, so a run resumed at step s
sees exactly the batches it would have seen, without replaying the first s. A multi-host run slices rows
[p * B/P, (p+1) * B/P) of every global batch on process p (jax.process_index()).

Layout traps this module owns: sequences are LEFT-padded, so the last real token is always at T-1 and a
prompt ends where generation starts; masks are explicit (pad id may equal EOS, as in GPT-2), and
positions = cumsum(attention_mask) - 1, so a padded sequence gets the same positions as an unpadded one.
The SFT loss_mask marks response tokens (including EOS); the step reads it at [:, 1:] against logits[:, :-1].
"""

import dataclasses
import functools

import numpy as np


def left_pad(seqs, pad_id: int, length: int | None = None, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (N, L) int32, mask (N, L) bool): sequences right-aligned, pad_id and False before them; the
    layout `sampling.make_generate` takes. L = `length`, or the longest sequence. An empty sequence is an
    error unless `allow_empty` (an RM batch's missing responses)."""
    length = length or max(len(s) for s in seqs)
    tokens = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), bool)
    for i, seq in enumerate(seqs):
        if len(seq) > length or not (seq or allow_empty):
            raise ValueError(f"sequence {i} has {len(seq)} tokens; expected {0 if allow_empty else 1} to {length}")
        if seq:
            tokens[i, length - len(seq):] = seq
            mask[i, length - len(seq):] = True
    return tokens, mask


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """cumsum(mask) - 1 clipped at 0: the first real token is position 0 however much padding precedes it."""
    return np.maximum(np.cumsum(mask, axis=-1, dtype=np.int32) - 1, 0)


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded permutation of n examples used in `epoch` (cached: consecutive steps share an epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def global_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Example indices of global batch `step`; a batch that straddles an epoch end takes the next epoch's."""
    i = step * batch_size + np.arange(batch_size)
    epochs, pos = i // n, i % n
    return np.array([epoch_order(n, seed, int(e))[p] for e, p in zip(epochs, pos)], np.int64)


def process_slice(rows, process_index: int | None = None, process_count: int | None = None):
    """This host's rows of a global batch (array or list); defaults to jax.process_index()/process_count()."""
    if process_index is None or process_count is None:
        import jax   # only for the process ids: data code runs on the host and needs no device

        process_index, process_count = jax.process_index(), jax.process_count()
    if len(rows) % process_count:
        raise ValueError(f"global batch of {len(rows)} does not split over {process_count} processes")
    per_host = len(rows) // process_count
    return rows[process_index * per_host:(process_index + 1) * per_host]


def _windows(ids: np.ndarray, window_indices, seq_len: int) -> np.ndarray:
    """Stack the non-overlapping windows ids[w*seq_len:(w+1)*seq_len] for each index w."""
    return np.stack([ids[w * seq_len:(w + 1) * seq_len] for w in window_indices]).astype(np.int32)


def _n_windows(ids: np.ndarray, seq_len: int) -> int:
    if len(ids) < seq_len:
        raise ValueError(f"corpus of {len(ids)} tokens is shorter than one window of {seq_len}")
    return len(ids) // seq_len


def lm_windows(ids: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int) -> np.ndarray:
    """Global LM batch `step`: (batch_size, seq_len) non-overlapping corpus windows, shuffled per epoch."""
    return _windows(ids, global_indices(_n_windows(ids, seq_len), batch_size, step, seed), seq_len)


def eval_windows(ids: np.ndarray, i: int, batch_size: int, seq_len: int) -> np.ndarray:
    """Held-out batch i: windows i*B .. (i+1)*B - 1 in corpus order (wrapping), identical in every run."""
    return _windows(ids, (i * batch_size + np.arange(batch_size)) % _n_windows(ids, seq_len), seq_len)


@dataclasses.dataclass(frozen=True)
class Batches:
    """Random-access batches over n examples; `collate(indices)` builds one batch from example indices."""
    n: int
    batch_size: int
    seed: int
    collate: object
    process_index: int | None = None
    process_count: int | None = None

    def __post_init__(self):
        if self.n == 0:
            raise ValueError("no examples to batch")

    def indices(self, step: int) -> np.ndarray:
        """This host's example indices for global batch `step`."""
        return process_slice(global_indices(self.n, self.batch_size, step, self.seed),
                             self.process_index, self.process_count)

    def __getitem__(self, step: int):
        return self.collate(self.indices(step))

    __call__ = __getitem__   # train.run takes `batches(step)`


# ---------------------------------------------------------------- SFT

def sft_batch(examples, tokenizer, seq_len: int) -> dict:
    """{'tokens','positions','attention_mask','loss_mask'} (B, T) from {"prompt","response"} dicts."""
    prompts = [tokenizer.encode_prompt(ex["prompt"]) for ex in examples]
    responses = [tokenizer.encode_response(ex["response"]) for ex in examples]
    tokens, mask = left_pad([p + r for p, r in zip(prompts, responses)], tokenizer.pad_id, seq_len)
    loss_mask = np.zeros_like(mask)
    for b, r in enumerate(responses):
        loss_mask[b, seq_len - len(r):] = True   # left padding: the response is the last len(r) tokens
    return {"tokens": tokens, "positions": positions_from_mask(mask), "attention_mask": mask, "loss_mask": loss_mask}


def check_lengths(lengths, limit: int, what: str):
    """Raise naming how many `what` exceed `limit` tokens and the first one; checked up front, not mid-run."""
    too_long = [i for i, n in enumerate(lengths) if n > limit]
    if too_long:
        i = too_long[0]
        raise ValueError(f"{len(too_long)} {what} do not fit in {limit} tokens (first: example {i}, {lengths[i]} "
                         "tokens); raise seq_len or read the data with max_prompt_tokens/max_response_tokens")


def sft_batches(examples, tokenizer, batch_size: int, seq_len: int, seed: int, process_index=None,
                process_count=None) -> Batches:
    """Shuffled SFT batches; every example is checked to fit in seq_len up front, not at some later step."""
    examples = list(examples)
    check_lengths([len(tokenizer.encode_prompt(ex["prompt"])) + len(tokenizer.encode_response(ex["response"]))
                    for ex in examples], seq_len, "SFT examples")
    return Batches(len(examples), batch_size, seed,
                   lambda idx: sft_batch([examples[i] for i in idx], tokenizer, seq_len), process_index, process_count)


# ---------------------------------------------------------------- RM

def rm_batch(examples, tokenizer, seq_len: int, k_max: int) -> dict:
    """K-wise RM batch from {"prompt","responses","ranks"} dicts; each prompt's K responses stay in one row.

    tokens/positions/attention_mask are (B, k_max, T) and each response is forwarded once. Slots beyond a
    prompt's K are copies of its first response with k_mask False and rank -1: copying (not all-pad rows)
    keeps every attention row non-empty, so padded slots cannot produce NaNs that a mask would then multiply.
    """
    B = len(examples)
    tokens = np.zeros((B, k_max, seq_len), np.int32)
    mask = np.zeros((B, k_max, seq_len), bool)
    k_mask = np.zeros((B, k_max), bool)
    ranks = np.full((B, k_max), -1, np.int32)
    for b, ex in enumerate(examples):
        k = len(ex["responses"])
        if not 2 <= k <= k_max:
            raise ValueError(f"example {b} has K={k} responses; need 2 <= K <= k_max={k_max}")
        prompt = tokenizer.encode_prompt(ex["prompt"])
        seqs = [prompt + tokenizer.encode_response(r) for r in ex["responses"]]
        seqs += [seqs[0]] * (k_max - k)
        tokens[b], mask[b] = left_pad(seqs, tokenizer.pad_id, seq_len, allow_empty=True)
        k_mask[b, :k] = True
        ranks[b, :k] = ex["ranks"]
    return {"tokens": tokens, "positions": positions_from_mask(mask), "attention_mask": mask,
            "last_index": np.full((B, k_max), seq_len - 1, np.int32), "k_mask": k_mask, "ranks": ranks}


def rm_batches(examples, tokenizer, batch_size: int, seq_len: int, k_max: int, seed: int, process_index=None,
                process_count=None) -> Batches:
    """Shuffled K-wise RM batches (one prompt per row); every response is checked to fit up front."""
    examples = list(examples)
    check_lengths([len(tokenizer.encode_prompt(ex["prompt"])) + max(len(tokenizer.encode_response(r))
                                                                      for r in ex["responses"])
                    for ex in examples], seq_len, "RM examples")
    return Batches(len(examples), batch_size, seed,
                   lambda idx: rm_batch([examples[i] for i in idx], tokenizer, seq_len, k_max), process_index, process_count)


# ---------------------------------------------------------------- PPO

def bucket_width(length: int, bucket: int, prompt_len: int) -> int:
    """The padded width of prompts of `length` tokens: `length` rounded up to a multiple of `bucket`, at most
    `prompt_len`; `bucket` 0 = always `prompt_len` (one compiled shape)."""
    return min(prompt_len, -(-length // bucket) * bucket) if bucket else prompt_len


def ppo_batch(prompts, tokenizer, prompt_len: int) -> tuple[dict, list[str]]:
    """({'prompt_tokens','prompt_mask'} (B, P) left-padded, the prompt strings kept on the host)."""
    tokens, mask = left_pad([tokenizer.encode_prompt(p) for p in prompts], tokenizer.pad_id, prompt_len)
    return {"prompt_tokens": tokens, "prompt_mask": mask}, list(prompts)


def prompt_width(prompts, tokenizer, prompt_len: int, bucket: int) -> int:
    """The width a batch of `prompts` (the global batch: every host's rows) is left-padded to: its longest
    prompt rounded up to a multiple of `bucket`, at most prompt_len (bucket 0: prompt_len)."""
    return bucket_width(max(len(tokenizer.encode_prompt(p)) for p in prompts), bucket, prompt_len)


@dataclasses.dataclass(frozen=True)
class PromptBatches(Batches):
    """PPO prompt batches, `batches[step]` = (arrays, this host's prompt strings), each left-padded to the width
    of its global batch (`prompt_width`), so every host pads one batch alike. With `bucket` > 0 a PPO iteration's
    programs run W + N slots per row instead of prompt_len + N and compile once per width W."""
    lengths: np.ndarray | None = None  # tokens of each prompt
    bucket: int = 0
    prompt_len: int = 0

    def width(self, step: int) -> int:
        longest = int(self.lengths[global_indices(self.n, self.batch_size, step, self.seed)].max())
        return bucket_width(longest, self.bucket, self.prompt_len)

    def __getitem__(self, step: int):
        return self.collate(self.indices(step), self.width(step))

    __call__ = __getitem__


def ppo_batches(prompts, tokenizer, batch_size: int, prompt_len: int, seed: int, process_index=None,
                process_count=None, bucket: int = 0) -> PromptBatches:
    """Shuffled PPO prompt batches (PromptBatches); bucket 0 pads every batch to prompt_len."""
    prompts = list(prompts)
    lengths = np.asarray([len(tokenizer.encode_prompt(p)) for p in prompts])
    check_lengths(lengths.tolist(), prompt_len, "PPO prompts")
    return PromptBatches(len(prompts), batch_size, seed,
                         lambda idx, width: ppo_batch([prompts[i] for i in idx], tokenizer, width),
                         process_index, process_count, lengths, bucket, prompt_len)


# Salt of the order split_val holds examples out in (with the run's seed).
VAL_STREAM = 17


def split_val(examples: list, val_fraction: float, seed: int, what: str) -> tuple[list, list]:
    """(train, val): a seeded `val_fraction` of the examples held out, at least one of each."""
    n_val = max(1, round(len(examples) * val_fraction))
    if len(examples) - n_val < 1:
        raise ValueError(f"{what}: {len(examples)} examples cannot give both a training and a validation split")
    order = np.random.default_rng([seed, VAL_STREAM]).permutation(len(examples))
    return [examples[i] for i in order[n_val:]], [examples[i] for i in order[:n_val]]
