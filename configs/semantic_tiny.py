"""A tiny semantic-stage LM that learns a synthetic Markov source on a CPU in a couple of minutes.

    python launch.py --config=semantic_tiny --workdir=runs/semantic_tiny
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.lm = base.lm(num_layers=2, num_heads=4, d_model=256, d_ff=1024, dropout=0.0)
    # Until the audio pipeline lands, the semantic stage reads a synthetic source: 1024 ids
    # (AudioLM's K_s) after 3 special ids, each with 4 successors (entropy log 4 = 1.39 nats).
    c.data = ml_collections.ConfigDict(
        dict(source="markov", vocab=1024, successors=4, lag=1, token_offset=3, bos_id=1,
             batch_size=16, seq_len=128)
    )
    c.optimizer.update(lr=3e-3, warmup_steps=30, end_lr_ratio=0.1)
    c.train.update(steps=300, log_every=25, eval_every=100, eval_batches=4,
                   checkpoint_every=100, keep_checkpoints=2)
    return c
