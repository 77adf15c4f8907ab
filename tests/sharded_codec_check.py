"""Run in a subprocess with 8 fake CPU devices: trains the same tiny SoundStream GAN (both
phases) on one device and data-parallel over 8, prints a JSON verdict."""

import json
import sys

import jax
import numpy as np
from sharded_check import run

from audiolm_jax.config import load_config


def config():
    c = load_config("soundstream_tiny")
    c.codec.seanet.update(channels=4, dim=16)
    c.codec.quantizer.update(codebook_size=16)
    c.data.update(batch_size=8, clip_seconds=0.2)
    c.loss.adversarial_start = 1
    c.train.update(
        steps=3,
        log_every=1,
        eval_every=3,
        eval_batches=1,
        checkpoint_every=3,
        async_checkpoints=False,
    )
    return c


def main():
    assert jax.device_count() == 8, jax.device_count()
    one = run({"data": 1}, jax.devices()[:1], config())
    many = run({"data": 8}, jax.devices(), config())
    rel, num, den = [], 0.0, 0.0
    for a, b in zip(
        jax.tree.leaves(jax.device_get(one.state.params)),
        jax.tree.leaves(jax.device_get(many.state.params)),
    ):
        rel.append(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)))
        num, den = num + float(np.sum((a - b) ** 2)), den + float(np.sum(a**2))
    cb = lambda r: np.asarray(jax.device_get(r.state.model_state["quantizer"]["codebook"]))
    out = {
        "metrics_one": one.metrics,
        "metrics_many": many.metrics,
        "max_rel_param_diff": max(rel),
        "global_rel_param_diff": (num / den) ** 0.5,
        "max_codebook_diff": float(np.max(np.abs(cb(one) - cb(many)))),
        "batch_devices": len(
            many.state.params["generator"]["encoder"]["conv_in"]["kernel"].sharding.device_set
        ),
    }
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
