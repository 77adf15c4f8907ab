"""AudioLM's semantic stage at paper size, for a TPU pod slice.

    python launch.py --config=semantic_tpu --workdir=gs://BUCKET/semantic

12 layers, 16 heads, d_model 1024, FFN 4096, dropout 0.1, batch 256, 1M steps
(arXiv:2209.03143, sec. 4.1). Training crops are 30 s of 25 Hz semantic tokens = 750 ids before
de-duplication; with BOS and EOS the context is 752, padded to 768 (a multiple of 128).
"""

import ml_collections

from audiolm_jax import layouts
from configs import base

PAPER = layouts.TokenLayout.preset("paper")


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.lm = base.lm(vocab_size=PAPER.vocab_size("semantic"), dtype="bfloat16", remat="dots_no_batch")
    c.data = base.markov_semantic_data(batch_size=256, seq_len=768)
    c.optimizer.update(lr=5e-4, warmup_steps=10_000, end_lr_ratio=0.1)
    c.train.update(
        steps=1_000_000,
        log_every=100,
        eval_every=10_000,
        eval_batches=16,
        checkpoint_every=5_000,
        keep_checkpoints=3,
    )
    return c
