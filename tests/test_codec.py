"""SoundStream: rates, streaming, the quantizer's behaviour, input errors, load/reconstruct."""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import codec, dsp, kmeans
from audiolm_jax.codec import rvq
from audiolm_jax.codec.conv import CausalConvTranspose1d
from audiolm_jax.codec.model import CodecConfig, init_generator
from audiolm_jax.codec.seanet import Encoder, SEANetConfig
from audiolm_jax.data import audio
from audiolm_jax.train.trainer import run_once

RATE = 16000


def speech(seconds=1.0, split="eval", n=2):
    """`n` clips of real (synthesised) speech from the embedded corpus, [n, seconds * 16000]."""
    waves, _ = audio.load_clips([e["path"] for e in audio.corpus_entries(split)][:n], RATE)
    length = int(seconds * RATE)
    return np.stack([np.pad(w, (0, max(0, length - len(w))))[:length] for w in waves])


def tiny_cfg(levels=4, codebook_size=32, **quantizer):
    return CodecConfig(
        RATE,
        SEANetConfig(channels=4, dim=16),
        rvq.RVQConfig(levels=levels, codebook_size=codebook_size, dim=16, **quantizer),
    )


def build(cfg, wav, seed=0):
    """Generator params and codebooks (k-means of `wav`'s latents) of a random codec."""
    import flax.linen as nn

    params, qstate = run_once(lambda w: init_generator(cfg, jax.random.key(seed), w), wav)
    return {"generator": nn.unbox(params)}, {"quantizer": qstate}


@pytest.fixture(scope="module")
def tiny_codec():
    params, state = build(tiny_cfg(), speech(1.0, "train", n=4))
    return codec.from_state(tiny_cfg(), params, state)


def test_rates_one_second_gives_50_frames_and_16000_samples(tiny_codec):
    wav = speech(1.0)
    codes = codec.encode(tiny_codec, wav)
    assert codes.shape == (2, 50, 4) and codes.dtype == jnp.int32
    assert tiny_codec.cfg.frame_rate == 50
    assert codec.decode(tiny_codec, codes).shape == (2, 16000)
    # Fewer levels = lower bitrate, same frame rate.
    assert codec.encode(tiny_codec, wav, levels=2).shape == (2, 50, 2)
    # A mono [samples] signal with a ragged length is padded to whole frames.
    assert codec.encode(tiny_codec, np.pad(wav[0], (0, 100))).shape == (1, 51, 4)


def test_paper_config_rates():
    from audiolm_jax.config import load_config

    cfg = CodecConfig.from_config(load_config("soundstream_tpu").codec)
    assert (cfg.sample_rate, cfg.hop, cfg.frame_rate) == (16000, 320, 50)
    assert (cfg.levels, cfg.codebook_size, cfg.bitrate) == (12, 1024, 6000)


def test_streaming_equals_whole_signal(tiny_codec):
    wav = speech(1.2)
    whole = codec.encode(tiny_codec, wav)
    state, chunks = None, []
    for start in range(0, wav.shape[1], 1280):  # 4-frame chunks
        c, state = codec.encode_stream(tiny_codec, wav[:, start : start + 1280], state)
        chunks.append(c)
    np.testing.assert_array_equal(np.concatenate(chunks, 1), whole)
    assert len(np.unique(np.asarray(whole))) > 8  # real codes, not one repeated id

    audio_whole = codec.decode(tiny_codec, whole)
    state, parts = None, []
    for start in range(0, whole.shape[1], 7):  # uneven chunks of frames
        a, state = codec.decode_stream(tiny_codec, whole[:, start : start + 7], state)
        parts.append(a)
    streamed = np.concatenate(parts, 1)
    assert streamed.shape == audio_whole.shape
    np.testing.assert_allclose(streamed, audio_whole, atol=1e-5)


def test_transposed_conv_is_the_textbook_overlap_add():
    layer = CausalConvTranspose1d(3, kernel_size=8, stride=4, use_bias=False)
    x = jax.random.normal(jax.random.key(0), (1, 5, 2))
    params = layer.init(jax.random.key(1), x)
    y = np.asarray(layer.apply(params, x))
    import flax.linen as nn

    w = np.asarray(nn.unbox(params)["params"]["kernel"])
    assert w.shape == (8, 2, 3)
    full = np.zeros((1, 4 * 4 + 8, 3))
    for t in range(5):
        full[:, t * 4 : t * 4 + 8] += np.einsum("bc,kco->bko", np.asarray(x[:, t]), w)
    np.testing.assert_allclose(y, full[:, :20], atol=1e-5)


def test_encoder_is_causal():
    cfg = SEANetConfig(channels=4, dim=8)
    wav = jnp.asarray(speech(0.4))
    enc = Encoder(cfg)
    params = run_once(enc.init, jax.random.key(0), wav)
    z = jax.jit(enc.apply)(params, wav)
    changed = wav.at[:, 3200:].set(0.5)  # frames before 3200 / 320 = 10 must not move
    z2 = jax.jit(enc.apply)(params, changed)
    np.testing.assert_allclose(z[:, :10], z2[:, :10], atol=1e-6)
    assert not np.allclose(z[:, 10:], z2[:, 10:])


@functools.cache
def _latents():
    wav = jnp.asarray(speech(1.0, "train", n=4))
    enc = Encoder(SEANetConfig(channels=4, dim=16))
    return np.asarray(jax.jit(enc.apply)(run_once(enc.init, jax.random.key(0), wav), wav))


def latents():
    """Encoder latents `[4, 50, 16]` of real speech (random encoder): a realistic input for the
    quantizer."""
    return jnp.asarray(_latents())


def kmeans_init(cfg, z, params=None):
    return run_once(lambda z: rvq.kmeans_init(params or {}, cfg, z, jax.random.key(0)), z)


def test_rvq_error_falls_with_every_level():
    z = latents()
    cfg = rvq.RVQConfig(levels=6, codebook_size=32, dim=16)
    state = kmeans_init(cfg, z)
    errors = [
        float(jnp.mean((z - rvq.quantize({}, state, cfg, z, n).zq) ** 2)) for n in range(1, 7)
    ]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    # And decoding the codes gives the same embedding as the quantizer.
    q = rvq.quantize({}, state, cfg, z)
    np.testing.assert_allclose(rvq.dequantize({}, state, cfg, q.codes), q.zq, atol=1e-5)


def test_kmeans_init_beats_random_init_at_the_first_step():
    z = latents()
    cfg = rvq.RVQConfig(levels=2, codebook_size=32, dim=16)
    rand = rvq.init_state(jax.random.key(0), cfg)
    init = kmeans_init(cfg, z)
    err = lambda s: float(rvq.quantize({}, s, cfg, z).errors[-1])
    assert err(init) < 0.5 * err(rand), (err(init), err(rand))


def test_starved_code_is_revived():
    z = latents()
    cfg = rvq.RVQConfig(levels=1, codebook_size=16, dim=16, dead_code_threshold=1.0)
    state = kmeans_init(cfg, z)
    # Code 3 is moved far from all data: nothing picks it.
    state["codebook"] = state["codebook"].at[0, 3].set(1e3)
    q = rvq.quantize({}, state, cfg, z)
    assert not np.any(np.asarray(q.codes) == 3)
    state["cluster_size"] = state["cluster_size"].at[0, 3].set(0.0)
    state = rvq.ema_update(state, cfg, q, jax.random.key(1))
    revived = np.asarray(rvq.quantize({}, state, cfg, z).codes)
    assert np.any(revived == 3), "the starved code was not replaced by a frame of the batch"
    assert np.all(np.isfinite(np.asarray(state["codebook"])))


def test_ema_update_moves_codes_to_their_cluster_means():
    z = latents()
    cfg = rvq.RVQConfig(levels=1, codebook_size=8, dim=16, ema_decay=0.0, dead_code_threshold=0)
    state = kmeans_init(cfg, z)
    q = rvq.quantize({}, state, cfg, z)
    new = rvq.ema_update(state, cfg, q, jax.random.key(1))
    flat, codes = np.asarray(z).reshape(-1, 16), np.asarray(q.codes).reshape(-1)
    for k in np.unique(codes):
        np.testing.assert_allclose(new["codebook"][0, k], flat[codes == k].mean(0), atol=1e-3)


def test_factorized_l2_codes_quantize_update_and_decode():
    z = latents()
    cfg = rvq.RVQConfig(levels=3, codebook_size=16, dim=16, code_dim=4, l2_normalize=True)
    qparams = rvq.init_params(jax.random.key(0), cfg)
    assert qparams["proj_in"].shape == (3, 16, 4) and qparams["proj_out"].shape == (3, 4, 16)
    state = kmeans_init(cfg, z, qparams)
    np.testing.assert_allclose(np.linalg.norm(state["codebook"], axis=-1), 1.0, atol=1e-4)

    @jax.jit
    def step(qparams, state):
        q = rvq.quantize(qparams, state, cfg, z)
        new = rvq.ema_update(state, cfg, q, jax.random.key(1))
        # Straight-through: the commitment loss trains the input projections.
        grad = jax.grad(lambda p: rvq.quantize(p, new, cfg, z).commitment)(qparams)
        return q, new, grad

    q, new, grad = step(qparams, state)
    np.testing.assert_allclose(np.linalg.norm(new["codebook"], axis=-1), 1.0, atol=1e-4)
    assert float(jnp.abs(grad["proj_in"]).sum()) > 0
    assert len(np.unique(np.asarray(q.codes[..., 0]))) > 4
    zq = rvq.dequantize(qparams, state, cfg, q.codes)
    np.testing.assert_allclose(zq, q.zq, atol=1e-5)


def test_quantizer_dropout_uses_fewer_levels_for_some_examples():
    cfg = rvq.RVQConfig(levels=8)
    n = np.asarray(rvq.sample_levels(jax.random.key(0), 1000, cfg))
    assert n.min() == 1 and n.max() == 8 and abs(n.mean() - 4.5) < 0.3


def test_perplexity_counts_code_usage():
    codes = jnp.asarray(np.arange(64).reshape(1, 64, 1) % 16)
    assert abs(float(rvq.perplexity(codes, jnp.ones((1, 1)), 32)[0]) - 16) < 1e-3
    assert abs(float(rvq.perplexity(codes * 0, jnp.ones((1, 1)), 32)[0]) - 1) < 1e-3


def test_kmeans_recovers_planted_clusters():
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(8)  # 8 centres, 14 apart
    x = centres[rng.integers(0, 8, 2000)] + rng.normal(size=(2000, 8))
    c, counts = kmeans.fit(jnp.asarray(x, jnp.float32), 8, jax.random.key(0), iters=30)
    found = np.sort(np.linalg.norm(np.asarray(c)[:, None] - centres[None], axis=-1).min(0))
    assert found.max() < 0.5, found
    assert int(counts.sum()) == 2000


# --- input errors ---------------------------------------------------------------------------


def test_bad_audio_gets_clear_errors(tiny_codec):
    with pytest.raises(ValueError, match="empty"):
        codec.encode(tiny_codec, np.zeros((1, 0), np.float32))
    bad = speech(0.2)
    bad[0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(tiny_codec, bad)
    with pytest.raises(ValueError, match=r"\[batch, samples\].*\(1, 2, 320\)"):
        codec.encode(tiny_codec, np.zeros((1, 2, 320), np.float32))
    with pytest.raises(ValueError, match="levels=9"):
        codec.encode(tiny_codec, speech(0.2), levels=9)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 32\)"):
        codec.decode(tiny_codec, np.full((1, 3, 4), 40))
    with pytest.raises(ValueError, match="levels"):
        codec.decode(tiny_codec, np.zeros((1, 3, 5), np.int32))


def test_other_sample_rates_are_resampled_with_a_warning(tiny_codec, caplog):
    wav16 = speech(1.0)
    wav48 = dsp.resample(wav16, 16000, 48000)
    with caplog.at_level(logging.WARNING, logger="audiolm_jax"):
        codes = codec.encode(tiny_codec, wav48, sample_rate=48000)
    assert "48000 Hz resampled" in caplog.text
    assert codes.shape == (2, 50, 4)


def test_encode_and_decode_jit(tiny_codec):
    wav = jnp.asarray(speech(0.4))
    codes = jax.jit(codec.encode)(tiny_codec, wav)
    np.testing.assert_array_equal(codes, codec.encode(tiny_codec, wav))
    np.testing.assert_allclose(
        jax.jit(codec.decode)(tiny_codec, codes), codec.decode(tiny_codec, codes), atol=1e-5
    )


# --- DSP the losses rest on ------------------------------------------------------------------


def test_mel_filterbank_matches_librosa():
    import librosa

    for n_fft in (64, 512, 2048):
        ours = dsp.mel_filterbank(16000, n_fft, 64)
        ref = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=64).T
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_stft_magnitude_matches_a_direct_dft():
    x = speech(0.3)[:1]
    n, hop = 512, 128
    ours = np.asarray(dsp.stft_magnitude(jnp.asarray(x), n, hop))[0]
    padded = np.pad(x[0], n // 2, mode="reflect")
    window = np.hanning(n + 1)[:-1]  # periodic Hann
    t = np.arange(n)
    dft = np.exp(-2j * np.pi * np.outer(t, np.arange(n // 2 + 1)) / n)
    for f in (0, 7, ours.shape[0] - 1):
        ref = np.abs((padded[f * hop : f * hop + n] * window) @ dft)
        np.testing.assert_allclose(ours[f], ref, atol=2e-3)
    assert ours.shape == (1 + len(x[0]) // hop, n // 2 + 1)


def test_si_sdr_and_mel_distance_known_answers():
    x = jnp.asarray(speech(1.0))
    assert float(jnp.max(dsp.mel_distance(x, x, RATE))) == 0.0
    assert float(jnp.min(dsp.si_sdr(x, x))) > 100
    noise = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    noise *= np.sqrt(
        np.mean(np.asarray(x) ** 2, -1, keepdims=True) / np.mean(noise**2, -1, keepdims=True)
    ) * 10 ** (-10 / 20)  # 10 dB SNR
    snr = np.asarray(dsp.si_sdr(x, x + noise))
    np.testing.assert_allclose(snr, 10.0, atol=0.1)
    assert float(jnp.min(dsp.mel_distance(x, x + noise, RATE))) > 0.1
    with pytest.raises(ValueError, match="differ in shape"):
        dsp.si_sdr(x, x[:, :-1])
