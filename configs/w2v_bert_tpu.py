"""w2v-BERT XL, the semantic tokenizer's model in AudioLM (Chung et al. 2021; arXiv:2209.03143):
12 contrastive + 12 MLM conformer layers, d_model 1024, 8 heads, FFN 4096, conv kernel 5, one
1024-entry Gumbel codebook; about 0.6B parameters.

    python launch.py --config=w2v_bert_tpu --config.data.source=folder --config.data.path=DIR
    python launch.py --config=w2v_bert_tpu --dry_run --target=v5e:8x8
    python launch.py --config=w2v_bert_tpu --mode=fit_kmeans --workdir=SAME_WORKDIR

Batch 256 x 10 s crops (250 frames each), bf16 compute with fp32 params, FSDP over the
`fsdp` mesh axis (0.6B params + Adam states shard across chips), remat of each layer's matmuls.
Semantic tokens: k-means K = 1024 over layer 19 (the MLM module's 7th), normalised per dimension.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.update(base.w2v_bert())
    c.w2v_bert.update(dtype="bfloat16", remat="dots_no_batch")
    c.data.update(batch_size=256, clip_seconds=10.0)
    base.for_pod(c, fsdp=8)
    # wav2vec 2.0 / w2v-BERT pretraining: Adam, warm-up then decay, clipping (Chung et al. 2021).
    c.optimizer.update(lr=2e-4, warmup_steps=25_000, end_lr_ratio=0.05, weight_decay=0.01)
    c.train.update(
        steps=400_000,
        log_every=100,
        eval_every=10_000,
        eval_batches=16,
        checkpoint_every=5_000,
        keep_checkpoints=3,
    )
    return c
