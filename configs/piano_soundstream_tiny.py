"""The tiny piano codec: soundstream_tiny with 3 levels of 256 codes (the paper's piano model
has 3 levels of 2^14, arXiv:2209.03143 sec. 5), trained on a folder of piano audio.

    python -c "from audiolm_jax.data import piano; piano.write_corpus('runs/piano_audio')"
    python launch.py --config=piano_soundstream_tiny --config.data.path=runs/piano_audio
"""

import ml_collections

from configs import soundstream_tiny


def get_config() -> ml_collections.ConfigDict:
    c = soundstream_tiny.get_config()
    c.codec.quantizer.update(levels=3, codebook_size=256)
    c.data.update(source="folder", path="runs/piano_audio", eval_every=10)
    c.name = "piano_soundstream_tiny"
    return c
