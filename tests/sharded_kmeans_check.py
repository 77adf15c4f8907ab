"""Run in a subprocess with 8 fake CPU devices (XLA_FLAGS set before jax starts): streams the same
batches through `kmeans.fit_minibatch` on one device and data-parallel over a 1-D mesh of 8
("data" axis), prints a JSON verdict on a line starting with RESULT."""

import json

import jax
import numpy as np
from jax.sharding import Mesh

from audiolm_jax import kmeans


def batches(count: int, n: int, d: int = 16, components: int = 24):
    """`count` batches of `n` points of a fixed Gaussian mixture (n not a multiple of 8, so the
    sharded run pads)."""
    centers = np.random.default_rng(0).normal(size=(components, d)).astype(np.float32) * 3.0
    for i in range(count):
        r = np.random.default_rng(1 + i)
        labels = r.integers(components, size=n)
        yield centers[labels] + r.normal(size=(n, d)).astype(np.float32)


def main():
    devices = jax.devices()
    assert len(devices) == 8, devices
    mesh = Mesh(np.array(devices), ("data",))
    # Seeding from points that include far outliers leaves clusters no batch reaches, so the
    # random reassignment runs too (it resets counts, hence total_count != points seen).
    first = next(batches(1, 1020))
    outliers = 100.0 + np.random.default_rng(9).normal(size=(6, first.shape[1]))
    init_points = np.concatenate([first, outliers.astype(np.float32)])
    # The Lloyd refinement over the first 10 (padded: 1020 rows over 8 shards) batches too.
    kwargs = dict(k=16, init_points=init_points, reassignment_ratio=0.05, reassign_every=5)
    kwargs.update(refine_batches=10, refine_passes=5)
    one_c, one_n = kmeans.fit_minibatch(batches(30, 1020), rng=jax.random.key(3), **kwargs)
    many_c, many_n = kmeans.fit_minibatch(
        batches(30, 1020), rng=jax.random.key(3), mesh=mesh, **kwargs
    )
    result = {
        "max_centroid_diff": float(np.max(np.abs(np.asarray(one_c) - np.asarray(many_c)))),
        "max_count_diff": float(np.max(np.abs(np.asarray(one_n) - np.asarray(many_n)))),
        "total_count": float(np.sum(np.asarray(many_n))),
        "points": 30 * 1020,
        "centroid_devices": len(many_c.sharding.device_set),
        "replicated": bool(many_c.sharding.is_fully_replicated),
        "one_device": len(one_c.sharding.device_set),
    }
    result.update(fit_kmeans_workflow())
    print("RESULT " + json.dumps(result), flush=True)


def fit_kmeans_workflow() -> dict:
    """`launch.py --mode=fit_kmeans`'s core on 8 devices: an untrained tiny w2v-BERT, k-means
    over its layer split over the data axis, saved, loaded, used."""
    import tempfile

    import flax.linen as nn
    import jax.numpy as jnp

    from audiolm_jax import semantic
    from audiolm_jax.config import load_config
    from audiolm_jax.semantic import w2v_bert
    from audiolm_jax.semantic.fit import fit_kmeans

    c = load_config("w2v_bert_tiny")
    c.w2v_bert.update(contrastive_layers=1, mlm_layers=1, d_model=32, d_ff=64)
    c.semantic.update(layer=1, k=8, stats_batches=2, steps=4, init_batches=1, batch_size=4)
    c.data.clip_seconds = 1.0
    cfg = w2v_bert.W2VBertConfig.from_config(c.w2v_bert)
    params, _ = w2v_bert.W2VBert(cfg).init(jax.random.key(0), {"wav": jnp.zeros((1, 16000))})
    with tempfile.TemporaryDirectory() as d:
        tok, summary = fit_kmeans(c, d, cfg, nn.unbox(params)["model"])
        loaded = semantic.from_parts(cfg, nn.unbox(params)["model"], 1, **_saved(d))
    ids = semantic.encode(loaded, np.zeros(16000, np.float32) + 0.01)
    return {
        "workflow_codes_used": summary["heldout_codes_used"],
        "workflow_ids_shape": list(ids.shape),
        "workflow_loaded_equals_fitted": bool(
            np.allclose(np.asarray(tok.centroids), np.asarray(loaded.centroids))
        ),
    }


def _saved(workdir: str) -> dict:
    import os

    km = kmeans.load(os.path.join(workdir, "kmeans"))
    return {"centroids": km["centroids"], "mean": km["mean"], "std": km["std"]}


if __name__ == "__main__":
    main()
