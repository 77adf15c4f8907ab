"""AudioLM's fine acoustic stage at paper size, for a TPU pod slice.

    python launch.py --config=fine_tpu --workdir=gs://BUCKET/fine \
        --config.data.corpora.librilight=gs://BUCKET/librilight/tokens

12 layers, 16 heads, d_model 1024 (arXiv:2209.03143, sec. 4.1). A training sequence is one
non-overlapping 3 s chunk: BOS, 150 frames x 4 coarse levels, SEP, the same frames' 8 fine
levels: 1802 tokens, context 1920. Vocabulary 4 + 12 x 1024 = 12292 (padded 12416).
"""

import ml_collections

from configs import base
from configs.semantic_tpu import CORPORA


def get_config() -> ml_collections.ConfigDict:
    return base.stage_lm("fine", CORPORA)
