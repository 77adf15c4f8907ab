"""The generated-speech detector (audiolm_jax/detector.py), tiny: three conv blocks over 64
log-mel bands up to 7 kHz, 1 s crops, 200 steps (about a minute on 2 cores).

    python launch.py --config=detector_tiny --workdir=runs/q/detector \
        --config.detector.pipeline=runs/q/pipeline      # writes its data, trains, evaluates
    python launch.py --config=detector_tiny --workdir=runs/ctl \
        --config.detector.data_dir=runs/q/detector/data --config.detector.control=True

The quickstart runs it on its own pipeline as its last step.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.name = "detector_tiny"
    c.model = "detector"
    c.workflow = "train_detector"
    c.detector_net = ml_collections.ConfigDict(
        dict(
            sample_rate=16000,
            n_fft=512,
            hop=160,
            n_mels=64,
            bandwidth_hz=7000.0,
            channels=(16, 32, 48),
            dropout=0.1,
        )
    )
    c.detector = ml_collections.ConfigDict(
        dict(
            data_dir="",  # a folder with manifest.json; default <workdir>/data, written first
            pipeline="",  # the pipeline whose output to detect (resynthesis + continuations)
            codec="",  # or only a codec (resynthesis)
            prompt_seconds=1.0,
            seconds=3.0,  # of each continuation
            pipeline_per_clip=1,
            clip_seconds=1.0,  # training crops
            eval_seconds=2.0,  # held-out clips are cut to this length, every kind alike
            control=False,  # real vs real: two random halves of the real clips
        )
    )
    c.data = ml_collections.ConfigDict(dict(batch_size=32))
    c.optimizer.update(lr=1e-3, warmup_steps=20, end_lr_ratio=0.1, weight_decay=0.0)
    c.train.update(steps=200, log_every=50, eval_every=100, eval_batches=4, checkpoint_every=200)
    return c
