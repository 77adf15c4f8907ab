"""Fitting the semantic tokenizer's k-means (`launch.py --mode=fit_kmeans`).

Two passes over the training audio of `config.data`, with the w2v-BERT trained in the workdir:
1. per-dimension mean and variance of layer `config.semantic.layer` over `stats_batches` batches;
   Clips are `config.semantic.clip_seconds` long when set (else `config.data.clip_seconds`,
   the pretraining clips): set it near the length of what will be tokenized.
2. mini-batch k-means (K = `config.semantic.k`) over the normalised features of `steps`
   batches, seeded by k-means++ on the first `init_batches` batches; with several devices the
   points of each batch are split over the `data` axis of `config.mesh`; then up to
   `refine_passes` Lloyd iterations over the first `refine_batches` of them (kept in device
   memory), which mini-batch updates alone do not reach (`kmeans.fit_minibatch`).
The result goes to `<workdir>/kmeans` (audiolm_jax.kmeans.save); held-out inertia and code usage
are reported. Features stream batch by batch, so the corpus may be far larger than memory.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import kmeans
from audiolm_jax.semantic import KMEANS_DIR, Tokenizer, from_parts, truncate, truncated_features

log = logging.getLogger("audiolm_jax")


def _sources(config: Any, batch_size: int, sample_rate: int):
    from audiolm_jax import tasks

    c = config.copy_and_resolve_references()
    c.data.batch_size = batch_size
    c.data.speed_perturb = 0.0  # pretraining's augmentation; the tokens are of natural audio
    if config.semantic.get("clip_seconds"):
        # A layer's features depend on how much audio the model saw around them: on
        # w2v_bert_tiny's features of whole 8 s piano pieces (what the token cache encodes),
        # Lloyd centroids fitted on 2 s clips have a held-out inertia of 4.38 per point,
        # 20% above the 3.65 of centroids fitted on whole pieces.
        c.data.clip_seconds = float(config.semantic.clip_seconds)
    return tasks.audio_sources(c, sample_rate)


def fit_kmeans(
    config: Any, workdir: str, cfg, params: dict, *, overwrite: bool = False
) -> tuple[Tokenizer, dict]:
    """Fits and saves the k-means of `config.semantic` over w2v-BERT `params`; returns the
    tokenizer and a summary (held-out inertia per point and code perplexity, throughput)."""
    s = config.semantic
    layer, k = int(s.layer), int(s.k)
    if not 0 <= layer <= cfg.num_layers:
        raise ValueError(
            f"config.semantic.layer={layer}: this {cfg.name} has layers 0..{cfg.num_layers}"
        )
    path = os.path.join(workdir, KMEANS_DIR)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already holds a k-means; move it away or pass "
            "--config.semantic.overwrite=True to replace it"
        )
    cfg_l, params_l = truncate(cfg, params, layer)
    train, held_out = _sources(config, int(s.batch_size), cfg.sample_rate)
    rate = cfg.sample_rate
    audio_seconds = [0.0]
    feat_seconds = [0.0]

    def feats(source, n):
        for batch in itertools.islice(source, n):
            t0 = time.perf_counter()
            f = truncated_features(cfg_l, params_l, jnp.asarray(batch["wav"]))
            f = f.reshape(-1, f.shape[-1])
            f.block_until_ready()
            feat_seconds[0] += time.perf_counter() - t0
            audio_seconds[0] += batch["wav"].size / rate
            yield f

    moments = kmeans.moments_init(cfg.d_model)
    update = jax.jit(kmeans.moments_update)
    for f in feats(train, int(s.stats_batches)):
        moments = update(moments, f)
    mean, std = kmeans.moments_finalize(moments)
    log.info(
        "Layer %d statistics over %d frames: |mean| %.3g, std %.3g..%.3g",
        layer,
        int(moments.count),
        float(jnp.mean(jnp.abs(mean))),
        float(jnp.min(std)),
        float(jnp.max(std)),
    )
    standardize = jax.jit(kmeans.standardize)
    stream = (standardize(f, mean, std) for f in feats(train, int(s.steps)))
    init = jnp.concatenate([next(stream) for _ in range(max(1, int(s.init_batches)))])
    mesh = None
    if jax.device_count() > 1:
        # Points split over the mesh's data axis, centroids replicated (kmeans.fit_minibatch).
        from audiolm_jax.train.sharding import make_mesh

        mesh = make_mesh(config.mesh)
        log.info("k-means over %d devices (data axis %d)", mesh.size, mesh.shape["data"])
    t0 = time.perf_counter()
    centroids, counts = kmeans.fit_minibatch(
        itertools.chain([init], stream),
        k,
        jax.random.key(int(config.seed)),
        init_points=init,
        log_every=max(1, int(s.steps) // 10),
        mesh=mesh,
        refine_batches=int(s.get("refine_batches", 0)),
        refine_passes=int(s.get("refine_passes", 0)),
    )
    fit_s = time.perf_counter() - t0
    tok = from_parts(cfg, params, layer, centroids, mean, std)

    held = jnp.concatenate([standardize(f, mean, std) for f in feats(held_out, 4)])
    ids = kmeans.assign(held, centroids)
    hist = np.bincount(np.asarray(ids), minlength=k) / ids.size
    nz = hist[hist > 0]
    summary = {
        "layer": layer,
        "k": k,
        "frames_fitted": int(moments.count),
        "heldout_inertia_per_point": float(kmeans.inertia(held, centroids)) / held.shape[0],
        "heldout_code_perplexity": float(np.exp(-np.sum(nz * np.log(nz)))),
        "heldout_codes_used": int((hist > 0).sum()),
        "feature_audio_s_per_s": audio_seconds[0] / max(feat_seconds[0], 1e-9),
        "fit_seconds": fit_s,
        "path": os.path.abspath(path),
    }
    if jax.process_index() == 0:
        kmeans.save(
            path,
            centroids,
            mean,
            std,
            meta={
                "layer": layer,
                "k": k,
                "counts": np.asarray(counts).tolist(),
                "summary": summary,
                "config": config.to_dict(),
            },
            overwrite=overwrite,
        )
    log.info(
        "k-means K=%d on layer %d saved to %s: held-out inertia/point %.4g, code perplexity "
        "%.1f (%d of %d codes used); features at %.0fx real time.",
        k,
        layer,
        path,
        summary["heldout_inertia_per_point"],
        summary["heldout_code_perplexity"],
        summary["heldout_codes_used"],
        k,
        summary["feature_audio_s_per_s"],
    )
    return tok, summary
