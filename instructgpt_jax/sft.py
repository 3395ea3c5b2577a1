"""Stage 1 of InstructGPT, its math: supervised fine-tuning (SFT) on labeler demonstrations.

The loss is the next-token loss of pretrain.lm_loss on the response tokens only: prompt tokens condition
but are not trained (loss_mask marks the response, EOS included; lm_loss reads it at [:, 1:] against
logits[:, :-1]). The paper trains 16 epochs with cosine decay and residual dropout 0.2 and notes that the
SFT model overfits on validation loss after one epoch while its RM score and human preference keep
improving, so it selects the checkpoint by RM score (Ouyang et al. 2022, section 3.5). We record both:
`sft/val_loss` on held-out demonstrations and, when the gold judge of the embedded world is available,
`sft/gold_score` of greedy samples and `sft/gold_score_t1` of temperature-1 samples on held-out prompts
(the base model's figures are written at step 0). Optional packing (data/packing.py) puts several
examples in one row with a block-diagonal attention mask and per-example positions, so no example sees
another. The stage that runs it: stages/sft.py.
"""

from __future__ import annotations

from instructgpt_jax.model import packed_key_mask
from instructgpt_jax.pretrain import lm_loss


def sft_loss(model, batch, rng):
    """Mean NLL of the response tokens. A packed batch carries `segment_ids` (B, T), 0 on padding."""
    key_mask = packed_key_mask(batch["segment_ids"]) if "segment_ids" in batch else batch["attention_mask"]
    loss, count = lm_loss(model, batch["tokens"], batch["positions"], key_mask, batch["loss_mask"], dropout_rng=rng)
    return loss, {"tokens": count}
