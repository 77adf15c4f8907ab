"""sample() / score() over three stages: the compiled cached sampler agrees with the full model
at every step, continuations keep their prompt, lengths follow `seconds` past the training
context, codes stay on their levels, and mismatched parts are refused by name.

The stages are untrained tiny Transformers over real (untrained) tokenizers: what is checked
here is the plumbing; learning is checked by the quickstart and the piano test (slow)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference_models import TINY_PIPELINE_LAYOUT, tiny_pipeline, tiny_stage

from audiolm_jax import layouts
from audiolm_jax.lm.transformer import Transformer
from audiolm_jax.sampling import sample_tokens
from audiolm_jax.sampling.pipeline import (
    PipelineMismatchError,
    sample,
    score,
    tokenize_prompt,
)

LAYOUT = layouts.TokenLayout(**TINY_PIPELINE_LAYOUT)


def _stage(name, seed, layout=LAYOUT):
    return tiny_stage(name, seed, layout)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(str(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def prompt():
    from audiolm_jax import dsp
    from audiolm_jax.data import audio

    wav, _ = dsp.read_audio(audio.corpus_entries("eval")[0]["path"], 16000)
    return wav[:24000]  # 1.5 s of held-out speech


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine"])
def test_cached_sampler_logits_equal_full_forward_at_every_step(pipe, stage):
    """Every token the compiled loop draws comes from logits equal (1e-4) to a full forward
    pass over the same prefix; with a traced prompt_len inside a longer buffer too."""
    s = pipe.stages[stage]
    n = 40
    start = LAYOUT.generation_start(stage, 6) if stage != "semantic" else 1
    table = jnp.asarray(LAYOUT.valid_ids_table(stage, n, start))
    prompt = np.zeros((2, n), np.int32)
    rng = np.random.default_rng(0)
    for pos in range(start):  # a valid prefix, drawn from the layout's masks
        allowed = np.flatnonzero(np.asarray(table[pos]))
        prompt[:, pos] = rng.choice(allowed, 2)
    tokens, seen = sample_tokens(
        s.cfg,
        s.params,
        jnp.asarray(prompt),
        max_len=n,
        rng=jax.random.key(1),
        temperature=1.0,
        valid_table=table,
        prompt_len=start,
        return_logits=True,
    )
    np.testing.assert_array_equal(tokens[:, :start], prompt[:, :start])
    full = Transformer(s.cfg).apply({"params": s.params}, tokens)
    vocab = s.cfg.vocab_size
    np.testing.assert_allclose(
        seen[:, start:n, :vocab], full[:, start - 1 : n - 1, :vocab], atol=1e-4, rtol=1e-4
    )
    # Every drawn token is allowed by the layout at its position.
    for pos in range(start, n):
        assert np.all(np.asarray(table[pos])[np.asarray(tokens[:, pos])])


def test_continuation_keeps_prompt_and_lengths_follow_seconds(pipe, prompt):
    ids, runs, codes = tokenize_prompt(pipe, prompt, 16000)
    seconds = 3.0  # past the 2 s semantic, 1 s coarse and 0.5 s fine training context
    audio, tok = sample(
        pipe, prompt, seconds=seconds, rng=jax.random.key(0), batch_size=2, return_tokens=True
    )
    assert audio.shape == (2, int(seconds * pipe.sample_rate)) and np.isfinite(audio).all()
    unique = layouts.dedup(ids)[0]
    assert tok.prompt_semantic == len(unique) and tok.prompt_frames == len(codes)
    for row in range(2):
        np.testing.assert_array_equal(tok.semantic[row, : len(unique)], unique)
        np.testing.assert_array_equal(tok.codes[row, : len(codes)], codes)
    frames = len(codes) + int(seconds * LAYOUT.acoustic_rate_hz)
    assert tok.codes.shape == (2, frames, LAYOUT.acoustic_levels)
    assert tok.codes.min() >= 0 and tok.codes.max() < LAYOUT.codebook_size
    assert tok.semantic.shape[1] == len(unique) + int(seconds * 10.0)
    assert tok.semantic.min() >= 0 and tok.semantic.max() < LAYOUT.semantic_vocab
    # The two rows are two different samples; the same key gives the same audio.
    assert not np.array_equal(tok.codes[0, len(codes) :], tok.codes[1, len(codes) :])
    again = sample(pipe, prompt, seconds=seconds, rng=jax.random.key(0), batch_size=2)
    np.testing.assert_array_equal(audio, again)


def test_unconditional_any_length_and_rate_resampled_prompt(pipe, prompt):
    audio = sample(pipe, None, seconds=1.3, rng=jax.random.key(2))
    assert audio.shape == (1, int(1.3 * pipe.sample_rate))
    # A 24 kHz prompt is resampled to each tokenizer's rate: same tokens up to resampling.
    import soxr

    p24 = soxr.resample(prompt, 16000, 24000).astype(np.float32)
    ids16, _, codes16 = tokenize_prompt(pipe, prompt, 16000)
    ids24, _, codes24 = tokenize_prompt(pipe, p24, 24000)
    assert ids24.shape == ids16.shape and codes24.shape == codes16.shape
    assert np.mean(codes24[:, 0] == codes16[:, 0]) > 0.5


def test_bf16_matmuls_option_samples_every_stage(pipe):
    """sample(matmul_dtype="bfloat16") runs every stage with bf16 Dense matmuls: audio of the
    asked length, codes in range; a dtype the model does not know is refused by field name."""
    audio, tok = sample(
        pipe, None, seconds=1.0, rng=jax.random.key(4), matmul_dtype="bfloat16", return_tokens=True
    )
    assert audio.shape == (1, pipe.sample_rate) and np.isfinite(audio).all()
    assert tok.codes.min() >= 0 and tok.codes.max() < LAYOUT.codebook_size
    assert pipe.semantic.cfg.matmul_dtype is None  # the pipeline itself is unchanged
    with pytest.raises(ValueError, match="lm.matmul_dtype"):
        sample(pipe, None, seconds=0.5, rng=jax.random.key(4), matmul_dtype="int4")


def test_score_gives_per_stage_nll_of_every_modelled_token(pipe, prompt):
    out = score(pipe, prompt, sample_rate=16000)
    ids, _, codes = tokenize_prompt(pipe, prompt, 16000)
    m = len(layouts.dedup(ids)[0])
    assert out["semantic"]["tokens"] == m
    assert (
        out["coarse"]["tokens"]
        == sum(len(c) * LAYOUT.coarse_levels for c in np.array_split(codes, [50])) + 1
    )  # every coarse token of both 1 s crops, and EOS after the last
    assert out["fine"]["tokens"] == len(codes) * LAYOUT.fine_levels
    for v in out.values():
        # Untrained stages: near the uniform cross-entropy over their vocabularies.
        assert 0 < v["nats_per_token"] < 10 and np.isfinite(v["nll"])
    # Per-level losses: coarse scores its two levels and EOS, fine its two fine levels; the
    # token-weighted mean of the parts is the stage's mean.
    assert set(out["semantic"]["per_level"]) == {"semantic"}
    assert set(out["coarse"]["per_level"]) == {"level_0", "level_1", "eos"}
    assert set(out["fine"]["per_level"]) == {"level_2", "level_3"}
    fine_levels = out["fine"]["per_level"]
    assert np.mean(list(fine_levels.values())) == pytest.approx(
        out["fine"]["nats_per_token"], rel=1e-5
    )  # equal counts per fine level


def test_mismatched_parts_are_refused_by_name(pipe):
    with pytest.raises(PipelineMismatchError, match="codes per level"):
        dataclasses.replace(pipe, layout=dataclasses.replace(LAYOUT, codebook_size=128))
    with pytest.raises(PipelineMismatchError, match="K=64 ids"):
        dataclasses.replace(pipe, layout=dataclasses.replace(LAYOUT, semantic_vocab=32))
    with pytest.raises(PipelineMismatchError, match="25 ids/s"):
        dataclasses.replace(pipe, layout=dataclasses.replace(LAYOUT, semantic_rate_hz=50.0))
    piano = dataclasses.replace(LAYOUT, coarse_levels=4, has_fine_stage=False)
    with pytest.raises(PipelineMismatchError, match="no fine stage"):
        dataclasses.replace(pipe, layout=piano, coarse=_stage("coarse", 1, piano))
    with pytest.raises(PipelineMismatchError, match="vocabulary"):
        dataclasses.replace(pipe, fine=_stage("semantic", 3))


def test_no_fine_stage_pipeline_samples_every_level_in_the_coarse_stage(pipe, prompt):
    piano = dataclasses.replace(LAYOUT, coarse_levels=4, has_fine_stage=False)
    p = dataclasses.replace(pipe, layout=piano, coarse=_stage("coarse", 4, piano), fine=None)
    audio, tok = sample(p, prompt, seconds=1.0, rng=jax.random.key(0), return_tokens=True)
    assert audio.shape == (1, 16000) and tok.codes.shape[2] == 4
    assert tok.codes.max() < piano.codebook_size


def test_aligned_coarse_stage_windows_line_up_ids_and_frames(pipe, prompt, monkeypatch):
    """coarse_semantic="aligned": every coarse window starts on the crop grid with each
    frame's semantic id in its prefix (the prompt's own ids where the prompt covers it) and
    the per-position conditioning of that prefix; sampling past the context and scoring work,
    and a pipeline whose coarse stage lacks the conditioning embedding is refused."""
    from audiolm_jax.sampling import pipeline as pipeline_lib

    lay = dataclasses.replace(LAYOUT, coarse_semantic="aligned")
    p = dataclasses.replace(pipe, layout=lay, coarse=_stage("coarse", 5, lay))
    calls = []
    real = pipeline_lib.sample_tokens

    def spy(cfg, params, buf, **kw):
        if cfg.cond_embed:
            calls.append((np.asarray(buf), np.asarray(kw["cond"]), int(kw["prompt_len"])))
        return real(cfg, params, buf, **kw)

    monkeypatch.setattr(pipeline_lib, "sample_tokens", spy)
    ids, _, codes = tokenize_prompt(p, prompt, 16000)
    audio, tok = sample(p, prompt, seconds=2.0, rng=jax.random.key(0), return_tokens=True)
    assert audio.shape == (1, 32000) and np.isfinite(audio).all()
    np.testing.assert_array_equal(tok.codes[0, : len(codes)], codes)
    a, b = lay.crop_unit
    crop = lay.coarse_crop_frames
    assert len(calls) >= 3  # 2 s past a 1.5 s prompt in 1 s windows that advance 0.5 s
    buf, cond, p0 = calls[0]
    w0 = (len(codes) - crop // 2) // b * b
    m = crop * a // b  # a whole window of ids: the prompt's, then generated ones
    np.testing.assert_array_equal(buf[0, 1 : 1 + len(ids) - w0 * a // b], ids[w0 * a // b :] + 4)
    assert buf[0, 1 + m] == layouts.SEP and p0 == 2 + m + (len(codes) - w0) * lay.coarse_levels
    known = lay.codes_to_tokens("coarse", codes[w0:, : lay.coarse_levels])
    np.testing.assert_array_equal(buf[0, 2 + m : p0], known)
    np.testing.assert_array_equal(cond, lay.coarse_conditioning(buf))
    assert (cond[0, 1 + m : p0] > 0).all()
    out = score(p, prompt, sample_rate=16000)
    assert 0 < out["coarse"]["nats_per_token"] < 10
    with pytest.raises(PipelineMismatchError, match="conditioning embedding"):
        dataclasses.replace(p, coarse=_stage("coarse", 5, LAYOUT))
