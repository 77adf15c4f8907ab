"""The tiny piano variant's semantic stage on a token cache of piano audio (configs/base.py's
PIANO_TINY_LAYOUT: 3 levels of 256 codes, all in the coarse stage, no fine stage).

    python launch.py --config=piano_semantic_tiny --config.data.corpora.piano=runs/piano/tokens
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.stage_tiny(
        "semantic",
        {"piano": "runs/piano/tokens"},
        layout=base.PIANO_TINY_LAYOUT,
        vocab=base.PIANO_TINY_VOCAB["semantic"],
    )
    c.name = "piano_semantic_tiny"
    return c
