"""AudioLM's piano model, coarse stage, at paper size: 3 SoundStream levels of 2^14 codes, all
modelled by the coarse stage, no fine stage (arXiv:2209.03143 sec. 5; ../shared/PAPER.md).

    python launch.py --config=piano_coarse_tpu --workdir=gs://BUCKET/piano_coarse \
        --config.data.corpora.piano=gs://BUCKET/piano/tokens

The cache comes from `--config=corpus --mode=tokenize` with a 3-level, 16384-code codec.
"""

import ml_collections

from configs import base

CORPORA = {"piano": "gs://BUCKET/piano/tokens"}


def get_config() -> ml_collections.ConfigDict:
    return base.stage_lm("coarse", CORPORA, layout_preset="piano")
