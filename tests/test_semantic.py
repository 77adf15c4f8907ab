"""w2v-BERT and the semantic tokenizer: rates, layers, masking, losses, edge cases, fit_kmeans."""

import json
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import semantic
from audiolm_jax.semantic import w2v_bert as wb

REPO = Path(__file__).resolve().parents[1]

TINY = wb.W2VBertConfig(
    conv_channels=8,
    d_model=32,
    num_heads=2,
    d_ff=64,
    contrastive_layers=2,
    mlm_layers=2,
    codebook_size=16,
    code_dim=16,
    proj_dim=16,
    num_negatives=5,
)


@pytest.fixture(scope="module")
def params():
    model = wb.W2VBert(TINY)
    wav = jnp.zeros((1, 16000), jnp.float32)
    p, _ = jax.jit(model.init)(jax.random.key(0), {"wav": wav})
    return nn.unbox(p)["model"]


@pytest.fixture(scope="module")
def tok(params):
    centroids = jax.random.normal(jax.random.key(1), (16, TINY.d_model))
    return semantic.from_parts(TINY, params, 3, centroids)


def test_one_second_gives_25_ids_in_range_and_encode_jits(tok):
    wav = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)
    ids = semantic.encode(tok, wav)
    assert ids.shape == (2, 25) and ids.dtype == jnp.int32
    assert 0 <= int(ids.min()) and int(ids.max()) < 16
    assert tok.frame_rate == 25.0 and tok.vocab_size == 16
    jitted = jax.jit(semantic.encode)(tok, jnp.asarray(wav))
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(ids))
    # [samples] gives a batch of one; a partial frame is padded to a whole one.
    assert semantic.encode(tok, np.concatenate([wav[0], wav[1, :1]])).shape == (1, 26)


def test_silence_clipping_and_short_audio_give_defined_ids(tok):
    rng = np.random.default_rng(1)
    cases = {
        "silence": np.zeros(16000, np.float32),
        "clipped": np.clip(rng.normal(0, 3.0, 16000), -1, 1).astype(np.float32),
        "one sample": np.full(1, 0.3, np.float32),
        "half a frame": rng.uniform(-0.1, 0.1, 320).astype(np.float32),
    }
    for name, wav in cases.items():
        ids = semantic.encode(tok, wav)
        assert ids.shape == (1, max(1, -(-len(wav) // 640))), name
    for name in ("silence", "clipped"):
        assert np.all(np.isfinite(np.asarray(semantic.features(tok, cases[name])))), name


def test_bad_audio_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="NaN"):
        semantic.encode(tok, np.full(16000, np.nan, np.float32))
    with pytest.raises(ValueError, match="empty"):
        semantic.encode(tok, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match=r"\[samples\] or \[batch, samples\]"):
        semantic.encode(tok, np.zeros((1, 1, 16000), np.float32))


def test_other_sample_rate_is_resampled_with_a_warning(tok, caplog):
    wav = np.random.default_rng(2).uniform(-0.3, 0.3, 8000).astype(np.float32)
    with caplog.at_level("WARNING", logger="audiolm_jax"):
        ids = semantic.encode(tok, wav, sample_rate=8000)
    assert ids.shape == (1, 25)
    assert "resampled" in caplog.text


def test_truncate_gives_each_layer_and_the_last_equals_the_full_model(params):
    wav = jnp.asarray(np.random.default_rng(3).normal(0, 0.1, (1, 8000)), jnp.float32)
    full = jax.jit(lambda p, w: wb.features(TINY, p, w))(params, wav)
    last = semantic.layer_features(TINY, params, TINY.num_layers, wav)
    np.testing.assert_allclose(np.asarray(full), np.asarray(last), atol=1e-5)
    outs = [np.asarray(semantic.layer_features(TINY, params, i, wav)) for i in range(5)]
    for a, b in zip(outs, outs[1:], strict=False):
        assert a.shape == b.shape == (1, 12, TINY.d_model)
        assert not np.allclose(a, b)
    cfg3, p3 = wb.truncate(TINY, params, 3)
    assert (cfg3.contrastive_layers, cfg3.mlm_layers) == (2, 1)
    assert "mlm_head" not in p3 and not cfg3.scan_layers
    # Truncated stacks are unrolled, one subtree per layer; truncating again keeps the layout.
    assert [k for k in p3["contrastive"] if k.startswith("layer")] == ["layer_0", "layer_1"]
    assert [k for k in p3["mlm"] if k.startswith("layer")] == ["layer_0"]
    cfg2, p2 = wb.truncate(cfg3, p3, 2)
    assert cfg2 == wb.truncate(TINY, params, 2)[0] and "mlm" not in p2
    np.testing.assert_array_equal(semantic.truncated_features(cfg2, p2, wav), outs[2])
    with pytest.raises(ValueError, match="layer 5 out of range"):
        wb.truncate(TINY, params, 5)


def test_span_mask_covers_about_half_the_frames_in_spans():
    mask = np.asarray(
        jax.jit(wb.span_mask, static_argnums=(1, 2, 3, 4))(jax.random.key(0), 256, 250, 0.065, 10)
    )
    # p = 0.065, span 10: 1 - (1 - p)^10 = 49% of frames (wav2vec 2.0).
    assert 0.44 < mask.mean() < 0.54
    assert mask.any(axis=1).all()
    # Runs of masked frames are at least a span long (except where cut by the end).
    edges = np.diff(np.pad(mask.astype(int), ((0, 0), (1, 1))), axis=1)
    for row in range(8):
        starts, ends = np.where(edges[row] == 1)[0], np.where(edges[row] == -1)[0]
        assert np.all((ends - starts >= 10) | (ends == 250))
    # A short utterance still gets a span.
    short = np.asarray(
        jax.jit(wb.span_mask, static_argnums=(1, 2, 3, 4))(jax.random.key(1), 64, 12, 0.065, 10)
    )
    assert short.any(axis=1).all()


def test_contrastive_loss_rewards_matching_context_and_punishes_collapse():
    rng = np.random.default_rng(4)
    target = jnp.asarray(rng.normal(size=(2, 40, 8)), jnp.float32)
    mask = jnp.ones((2, 40), bool)
    key = jax.random.key(0)
    loss = jax.jit(wb.contrastive_loss, static_argnums=(4, 5, 6))
    good, acc = loss(target, target, mask, key, 10, 0.1, "masked")
    noise = jnp.asarray(rng.normal(size=(2, 40, 8)), jnp.float32)
    bad, _ = loss(noise, target, mask, key, 10, 0.1, "all")
    assert float(good) < 0.5 < float(bad) and float(acc) == 1.0
    # A collapsed quantizer (one target for every frame) scores the worst: log(1 + negatives).
    same = jnp.broadcast_to(target[:, :1], target.shape)
    worst, _ = loss(noise, same, mask, key, 10, 0.1, "masked")
    assert float(worst) == pytest.approx(np.log(11), rel=1e-4)
    with pytest.raises(ValueError, match="negatives_from"):
        loss(noise, same, mask, key, 10, 0.1, "nearby")


def test_training_loss_is_finite_and_reports_every_metric(params):
    model = wb.W2VBert(TINY)
    wav = jnp.asarray(np.random.default_rng(5).normal(0, 0.1, (2, 16000)), jnp.float32)
    state = {"step": jnp.zeros((), jnp.int32)}
    loss_fn = jax.jit(lambda p, s, b, r: model.loss("model", p, s, b, r, True))
    loss, (new_state, m) = loss_fn({"model": params}, state, {"wav": wav}, jax.random.key(0))
    assert np.isfinite(float(loss)) and int(new_state["step"]) == 1
    for k in ("contrastive_loss", "mlm_loss", "diversity_loss", "code_perplexity"):
        assert np.isfinite(float(m[k])), k
    # Untrained: the MLM loss is about log(V), the contrastive one about log(1 + negatives).
    assert abs(float(m["mlm_loss"]) - np.log(16)) < 1.5
    assert float(model.tau(jnp.asarray(10**7))) == TINY.gumbel_end
    with pytest.raises(ValueError, match="at least 2 frames"):
        model.init(jax.random.key(0), {"wav": jnp.zeros((1, 100))})


def test_xl_config_is_the_papers_size():
    from audiolm_jax.config import load_config

    cfg = wb.W2VBertConfig.from_config(load_config("w2v_bert_tpu").w2v_bert)
    assert (cfg.contrastive_layers, cfg.mlm_layers, cfg.d_model, cfg.num_heads) == (12, 12, 1024, 8)
    assert cfg.conv_kernel == 5 and cfg.frame_rate == 25.0
    shapes = jax.eval_shape(
        lambda: wb.W2VBert(cfg).init(jax.random.key(0), {"wav": jnp.zeros((1, 16000))})[0]
    )
    n = sum(x.size for x in jax.tree.leaves(nn.unbox(shapes)))
    assert 0.55e9 < n < 0.65e9, n  # "0.6B" (Chung et al. 2021)
    with pytest.raises(ValueError, match="config.w2v_bert has unknown fields"):
        wb.W2VBertConfig.from_config({"d_modle": 3})


@pytest.mark.slow
def test_fit_kmeans_mode_then_load_and_encode(tmp_path):
    """launch.py trains a few steps, fits k-means on a layer, semantic.load encodes."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    common = [
        sys.executable,
        str(REPO / "launch.py"),
        "--config=w2v_bert_tiny",
        f"--workdir={tmp_path}",
        "--config.w2v_bert.contrastive_layers=1",
        "--config.w2v_bert.mlm_layers=1",
        "--config.w2v_bert.d_model=32",
        "--config.w2v_bert.d_ff=64",
        "--config.data.clip_seconds=1.0",
        "--config.semantic.layer=2",
        "--config.semantic.k=8",
        "--config.semantic.stats_batches=2",
        "--config.semantic.steps=4",
        "--config.semantic.init_batches=1",
        "--config.semantic.batch_size=4",
    ]
    for extra in (["--config.train.steps=4", "--config.train.eval_every=4"], ["--mode=fit_kmeans"]):
        out = subprocess.run(
            common + extra, capture_output=True, text=True, timeout=600, cwd=REPO, env=env
        )
        assert out.returncode == 0, out.stderr[-3000:]
    meta = json.loads((tmp_path / "kmeans" / "kmeans.json").read_text())
    assert meta["meta"]["layer"] == 2 and meta["meta"]["k"] == 8
    tok = semantic.load(str(tmp_path))
    assert tok.layer == 2 and tok.vocab_size == 8
    ids = semantic.encode(tok, np.random.default_rng(6).normal(0, 0.1, 32000).astype(np.float32))
    assert ids.shape == (1, 50)
    # A second fit does not overwrite the first unless asked to.
    out = subprocess.run(
        common + ["--mode=fit_kmeans"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert out.returncode != 0 and "already holds a k-means" in out.stderr


def test_load_without_kmeans_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        semantic.load(str(tmp_path))


def test_mel_mean_norm_off_keeps_a_frames_features_independent_of_the_rest_of_the_clip():
    """`mel_mean_norm=False` (music): a frame's log-mel does not change with what else the clip
    holds; with the default per-utterance mean subtraction it does, and each bin averages 0."""
    import dataclasses

    rng = np.random.default_rng(3)
    t = np.arange(32000) / 16000
    wav = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    longer = np.concatenate([wav, rng.normal(0, 0.1, 32000).astype(np.float32)])
    raw = dataclasses.replace(TINY, mel_mean_norm=False)
    a = np.asarray(wb.log_mel(raw, jnp.asarray(wav[None])))[0, :150]
    b = np.asarray(wb.log_mel(raw, jnp.asarray(longer[None])))[0, :150]
    np.testing.assert_allclose(a, b, atol=1e-4)
    normed = np.asarray(wb.log_mel(TINY, jnp.asarray(wav[None])))[0]
    np.testing.assert_allclose(normed.mean(0), 0.0, atol=1e-3)
    normed_longer = np.asarray(wb.log_mel(TINY, jnp.asarray(longer[None])))[0, :150]
    assert np.abs(normed[:150] - normed_longer).max() > 1.0


def test_fit_kmeans_clips_are_semantic_clip_seconds_long_without_speed_perturbation():
    from audiolm_jax.config import load_config
    from audiolm_jax.semantic.fit import _sources

    config = load_config("w2v_bert_tiny")
    config.data.speed_perturb = 0.2
    train, _ = _sources(config, 2, 16000)
    assert next(iter(train))["wav"].shape == (2, int(config.data.clip_seconds * 16000))
    config.semantic.clip_seconds = 3.0
    train, held_out = _sources(config, 2, 16000)
    assert next(iter(train))["wav"].shape == (2, 48000)
    assert next(iter(held_out))["wav"].shape == (2, 48000)
    assert train.speed_perturb == 0.0
