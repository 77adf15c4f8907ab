"""The tiny piano variant's coarse stage on a token cache of piano audio (configs/base.py's
PIANO_TINY_LAYOUT: 3 levels of 256 codes, all in the coarse stage, no fine stage).

    python launch.py --config=piano_coarse_tiny --config.data.corpora.piano=runs/piano/tokens
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.stage_tiny(
        "coarse",
        {"piano": "runs/piano/tokens"},
        layout=base.PIANO_TINY_LAYOUT,
        vocab=base.PIANO_TINY_VOCAB["coarse"],
    )
    c.name = "piano_coarse_tiny"
    return c
