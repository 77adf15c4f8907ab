"""A tiny semantic-stage LM trained on a token cache (`--config=corpus --mode=tokenize`).

    python launch.py --config=semantic_cache_tiny --config.data.corpora.corpus=runs/corpus/tokens

Reads the cache through the seqio Task "corpus_semantic" (packed crops of de-duplicated ids),
resumes data exactly with the checkpoint. The vocabulary is sized for the quickstart's
tokenizer (K = 64 semantic ids); a cache with more ids gets an error naming the size to set
(`--config.lm.vocab_size=`).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.lm = base.lm(vocab_size=128, num_layers=2, num_heads=4, d_model=128, d_ff=512, dropout=0.0)
    # The quickstart codec has 4 levels: 2 coarse + 2 fine (the paper: 4 + 8 of 12).
    layout = dict(coarse_levels=2, semantic_crop_seconds=5.0)
    c.data = base.cache_stage(
        "semantic", {"corpus": "runs/corpus/tokens"}, batch_size=8, seq_len=128, layout=layout
    )
    c.data.shuffle_buffer = 256
    c.optimizer.update(lr=2e-3, warmup_steps=20, end_lr_ratio=0.1)
    c.train.update(steps=200, log_every=20, eval_every=100, eval_batches=2, checkpoint_every=100)
    return c
