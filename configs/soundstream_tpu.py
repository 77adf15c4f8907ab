"""The paper's SoundStream: 16 kHz, C = 32, strides (2, 4, 5, 8) = 50 frames/s, D = 128, 12 RVQ
levels x 1024 codes = 6 kbps (AudioLM, arXiv:2209.03143 sec. 4; ../shared/PAPER.md).

python launch.py --config=soundstream_tpu --config.data.source=folder --config.data.path=DIR
python launch.py --config=soundstream_tpu --dry_run --target=v5e:8x8

Pure data parallelism (the codec is ~8M parameters) over every chip of the slice (sized for a
v5e-64; any slice whose chip count divides the batch); batch 128 x 1 s clips, bf16 compute.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.update(base.soundstream())
    c.codec.seanet.dtype = "bfloat16"
    c.discriminator.dtype = "bfloat16"
    c.data.update(batch_size=128, clip_seconds=1.0)
    # The stability recipe at scale: Adam (0.5, 0.9), 2k steps of reconstruction-only warm-up,
    # clipping, no weight decay (configs/soundstream_tiny.py lists the reasons).
    c.optimizer.update(
        lr=3e-4, warmup_steps=1000, end_lr_ratio=0.1, b1=0.5, b2=0.9, eps=1e-8, weight_decay=0.0
    )
    c.optimizers = ml_collections.ConfigDict(dict(discriminator=dict(lr=3e-4)))
    c.loss.update(adversarial_start=2000)
    c.train.update(steps=500_000, log_every=100, eval_every=5000, checkpoint_every=5000)
    base.for_pod(c, fsdp=1)
    return c
