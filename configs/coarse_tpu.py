"""AudioLM's coarse acoustic stage at paper size, for a TPU pod slice.

    python launch.py --config=coarse_tpu --workdir=gs://BUCKET/coarse \
        --config.data.corpora.librilight=gs://BUCKET/librilight/tokens

12 layers, 16 heads, d_model 1024 (arXiv:2209.03143, sec. 4.1). A training sequence is a 10 s
crop: BOS, its de-duplicated semantic ids (<= 250), SEP, 500 frames x Q' = 4 coarse levels,
EOS: at most 2253 tokens, context 2304. Vocabulary 4 + 1024 + 4 x 1024 = 5124 (padded 5248).
"""

import ml_collections

from configs import base
from configs.semantic_tpu import CORPORA


def get_config() -> ml_collections.ConfigDict:
    return base.stage_lm("coarse", CORPORA)
