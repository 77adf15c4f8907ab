"""A tiny SoundStream that learns to reconstruct speech on a CPU in a few minutes.

python launch.py --config=soundstream_tiny --workdir=runs/soundstream_tiny

Trains on the embedded corpus (audiolm_jax/data/corpus: 8 synthetic voices, 2 held out).
The stability recipe (what keeps the GAN from collapsing or going NaN):
- reconstruction-only warm-up: adversarial losses and discriminator updates start at
  loss.adversarial_start;
- Adam betas (0.5, 0.9) for both players (MelGAN/SoundStream/EnCodec practice), the
  discriminator at the generator's learning rate, no weight decay on either;
- gradient clipping: global norm 1 for both (a bad batch cannot blow up either player);
- hinge losses (bounded per example) and feature matching relative to the real features' size;
- EMA codebooks with k-means init and dead-code replacement (no codebook collapse).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.update(base.soundstream())
    c.codec.seanet.update(channels=8, dim=32)
    c.codec.quantizer.update(levels=4, codebook_size=64, dead_code_threshold=0.5)
    c.discriminator.update(
        wave_scales=2, wave_channels=4, wave_max_channels=64, wave_downsamples=3, stft_channels=4
    )
    c.discriminator.update(stft_window=512, stft_hop=128)
    c.loss.update(adversarial_start=250)
    c.data.update(clip_seconds=0.5, batch_size=8)
    c.optimizer.update(
        lr=1e-3, warmup_steps=50, end_lr_ratio=0.1, b1=0.5, b2=0.9, eps=1e-8, weight_decay=0.0
    )
    c.optimizers = ml_collections.ConfigDict(dict(discriminator=dict(lr=1e-3)))
    c.train.update(
        steps=400,
        log_every=50,
        eval_every=200,
        eval_batches=4,
        checkpoint_every=200,
        keep_checkpoints=2,
    )
    return c
