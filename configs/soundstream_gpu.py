"""soundstream_tpu on one node of 8 x H100: data parallel over the 8 GPUs, batch 128 x 1 s.

python launch.py --config=soundstream_gpu --config.data.source=folder --config.data.path=DIR
"""

import ml_collections

from configs import base, soundstream_tpu


def get_config() -> ml_collections.ConfigDict:
    c = soundstream_tpu.get_config()
    base.for_gpu_node(c, fsdp=1, section="codec")
    c.name = "soundstream_gpu"
    return c
