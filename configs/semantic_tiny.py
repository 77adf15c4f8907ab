"""A tiny semantic-stage LM that learns a synthetic Markov source on a CPU in a couple of minutes.

python launch.py --config=semantic_tiny --workdir=runs/semantic_tiny
"""

import ml_collections

from audiolm_jax import layouts
from configs import base

PAPER = layouts.TokenLayout.preset("paper")


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.lm = base.lm(
        vocab_size=PAPER.vocab_size("semantic"),
        num_layers=2,
        num_heads=4,
        d_model=256,
        d_ff=1024,
        dropout=0.0,
    )
    # Until the audio pipeline lands, the semantic stage reads a synthetic Markov source.
    c.data = base.markov_semantic_data(batch_size=16, seq_len=128)
    c.optimizer.update(lr=3e-3, warmup_steps=30, end_lr_ratio=0.1)
    c.train.update(
        steps=300,
        log_every=25,
        eval_every=100,
        eval_batches=4,
        checkpoint_every=100,
        keep_checkpoints=2,
    )
    return c
