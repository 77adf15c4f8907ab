"""A tiny coarse-stage LM on a token cache, sized for the quickstart's tokenizers.

    python launch.py --config=coarse_cache_tiny --config.data.corpora.corpus=runs/corpus/tokens

2 layers, d 128; the layout is configs/base.py's TINY_LAYOUT (4-level codec of 64 codes: 2
coarse + 2 fine levels; 3 s coarse crops, 1 s fine chunks). A cache with other sizes gets an
error naming the vocabulary to set (`--config.lm.vocab_size=`).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.stage_tiny("coarse", {"corpus": "runs/corpus/tokens"})
