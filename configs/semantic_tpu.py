"""AudioLM's semantic stage at paper size, for a TPU pod slice.

    python launch.py --config=semantic_tpu --workdir=gs://BUCKET/semantic \
        --config.data.corpora.librilight=gs://BUCKET/librilight/tokens

12 layers, 16 heads, d_model 1024, FFN 4096, dropout 0.1, batch 256, 1M steps
(arXiv:2209.03143, sec. 4.1) on the token cache of `--config=corpus --mode=tokenize`. Training
crops are 30 s of 25 Hz semantic tokens = 750 ids before de-duplication; with BOS and EOS the
context is 752, padded to 768 (a multiple of 128). `--dry_run` plans without the cache.
"""

import ml_collections

from configs import base

CORPORA = {"librilight": "gs://BUCKET/librilight/tokens"}


def get_config() -> ml_collections.ConfigDict:
    return base.stage_lm("semantic", CORPORA)
