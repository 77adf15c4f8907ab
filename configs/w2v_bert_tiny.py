"""A tiny w2v-BERT that pretrains on a CPU in minutes on the embedded corpus.

    python launch.py --config=w2v_bert_tiny --workdir=runs/w2v_bert_tiny
    python launch.py --config=w2v_bert_tiny --mode=fit_kmeans --workdir=runs/w2v_bert_tiny

Same architecture as w2v_bert_tpu, shrunk: 2 contrastive + 2 MLM layers, d_model 128, a
64-entry codebook; 2 s clips (50 frames) in batches of 8. Semantic tokens: k-means K = 64 over
layer 3 (the MLM module's first).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.update(base.w2v_bert())
    c.w2v_bert.update(
        conv_channels=32,
        d_model=128,
        num_heads=4,
        d_ff=256,
        contrastive_layers=2,
        mlm_layers=2,
        codebook_size=64,
        code_dim=64,
        proj_dim=64,
        num_negatives=20,
        dropout=0.0,
        gumbel_decay=0.995,
    )
    c.semantic.update(layer=3, k=64, stats_batches=8, steps=60, init_batches=4, batch_size=16)
    c.data.update(clip_seconds=2.0, batch_size=8)
    c.optimizer.update(lr=1e-3, warmup_steps=50, end_lr_ratio=0.1, weight_decay=0.0)
    c.train.update(
        steps=400,
        log_every=50,
        eval_every=200,
        eval_batches=4,
        checkpoint_every=200,
        keep_checkpoints=2,
    )
    return c
