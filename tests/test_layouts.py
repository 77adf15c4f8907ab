"""The three stages' token layouts (audiolm_jax.layouts): round trips, masks, sizes."""

import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.layouts import (
    BOS,
    EOS,
    NUM_SPECIALS,
    PAD,
    PRESETS,
    SEP,
    STAGES,
    TokenLayout,
    dedup,
    undedup,
)

SPEECH = ["paper", "hubert", "encodec"]  # 25 Hz / 50 Hz codec, 50 / 50, 50 / 75
ALL = [*SPEECH, "piano"]


def _utterance(layout: TokenLayout, seconds: float, seed: int = 0):
    """Random (semantic ids [s], codes [frames, Q]) of `seconds`, with repeats and extreme ids."""
    rng = np.random.default_rng(seed)
    s = round(seconds * layout.semantic_rate_hz)
    # Few distinct values so runs of repeats are common, as with real semantic ids.
    semantic = rng.choice([0, 1, 7, layout.semantic_vocab - 1], size=s)
    codes = rng.integers(
        0, layout.codebook_size, (round(seconds * layout.acoustic_rate_hz), layout.acoustic_levels)
    )
    codes[0, :] = layout.codebook_size - 1
    return semantic, codes


def _stages(layout):
    return [s for s in STAGES if s != "fine" or layout.has_fine_stage]


# ---- sizes and config ----
def test_paper_sizes():
    layout = TokenLayout.preset("paper")
    # arXiv:2209.03143 sec. 4: 30 s semantic crops (750 ids), 10 s coarse crops (250 + 2000),
    # 3 s fine chunks (600 coarse + 1200 fine tokens).
    assert layout.semantic_crop_tokens == 750
    assert (layout.coarse_crop_semantic, layout.coarse_crop_frames * layout.coarse_levels) == (
        250,
        2000,
    )
    c = layout.fine_chunk_frames
    assert (c * layout.coarse_levels, c * layout.fine_levels) == (600, 1200)
    assert [layout.vocab_size(s) for s in STAGES] == [1028, 5124, 12292]
    assert [layout.padded_vocab_size(s) for s in STAGES] == [1152, 5248, 12416]
    assert [layout.max_length(s) for s in STAGES] == [752, 2253, 1802]


@pytest.mark.parametrize("name", ALL)
def test_padded_vocab_is_multiple_of_128(name):
    layout = PRESETS[name]
    for stage in _stages(layout):
        padded = layout.padded_vocab_size(stage)
        assert padded % 128 == 0 and 0 <= padded - layout.vocab_size(stage) < 128


def test_piano_layout():
    layout = TokenLayout.preset("piano")
    assert layout.vocab_size("coarse") == 4 + 1024 + 3 * 16384
    with pytest.raises(ValueError, match="no fine stage"):
        layout.fine_sequence(np.zeros((10, 3), int))
    with pytest.raises(ValueError, match="no fine stage"):
        layout.vocab_size("fine")


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip(name):
    layout = PRESETS[name]
    assert TokenLayout.from_config(layout.to_config()) == layout


def test_from_config_required_and_defaults():
    cfg = types.SimpleNamespace(**{n: getattr(PRESETS["hubert"], n) for n in TokenLayout.REQUIRED})
    assert TokenLayout.from_config(cfg) == PRESETS["hubert"]
    del cfg.acoustic_rate_hz
    with pytest.raises(ValueError, match="acoustic_rate_hz"):
        TokenLayout.from_config(cfg)
    with pytest.raises(ValueError, match="unknown layout preset"):
        TokenLayout.preset("nope")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(coarse_levels=12), "must be < acoustic_levels"),
        (dict(has_fine_stage=False), "must equal acoustic_levels"),
        (dict(fine_chunk_seconds=0.01), "not a positive whole number"),
        (dict(coarse_levels=0), "positive int"),
    ],
)
def test_invalid_layouts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TokenLayout(**kwargs)


# ---- de-duplication ----
def test_dedup_round_trip():
    ids = np.random.default_rng(0).integers(0, 3, 200)
    unique, runs = dedup(ids)
    assert np.all(unique[1:] != unique[:-1])
    assert runs.sum() == ids.size and np.all(runs >= 1)
    np.testing.assert_array_equal(undedup(unique, runs), ids)
    assert [a.size for a in dedup(np.zeros(0, int))] == [0, 0]


# ---- round trips: codes -> sequence -> codes ----
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("add_eos", [False, True])
def test_semantic_round_trip(name, add_eos):
    layout = PRESETS[name]
    semantic, _ = _utterance(layout, layout.semantic_crop_seconds)
    seq = layout.semantic_sequence(semantic, add_eos=add_eos)
    assert seq.tokens.dtype == np.int32 and seq.tokens[0] == BOS
    assert (seq.tokens[-1] == EOS) == add_eos
    np.testing.assert_array_equal(
        undedup(layout.parse_semantic(seq.tokens), seq.run_lengths), semantic
    )


@pytest.mark.parametrize("name", ALL)
def test_coarse_round_trip(name):
    layout = PRESETS[name]
    semantic, codes = _utterance(layout, 2 * layout.coarse_crop_seconds, seed=1)
    semantic, codes = layout.aligned_crop(semantic, codes, 3, layout.coarse_crop_seconds)
    seq = layout.coarse_sequence(semantic, codes)
    assert seq.tokens.size <= layout.max_length("coarse") and seq.tokens[-1] == EOS
    got_semantic, got_codes = layout.parse_coarse(seq.tokens)
    np.testing.assert_array_equal(undedup(got_semantic, seq.run_lengths), semantic)
    np.testing.assert_array_equal(got_codes, codes[:, : layout.coarse_levels])


@pytest.mark.parametrize("name", SPEECH)
def test_fine_round_trip(name):
    layout = PRESETS[name]
    c = layout.fine_chunk_frames
    _, codes = _utterance(layout, 3 * layout.fine_chunk_seconds, seed=2)
    codes = codes[: 2 * c + 17]  # a short last chunk, right-padded
    seq = layout.fine_sequence(codes)
    assert seq.tokens.shape == (3, layout.max_length("fine")) == seq.loss_mask.shape
    assert np.all(seq.tokens[2, 2 + 17 * layout.acoustic_levels :] == PAD)
    np.testing.assert_array_equal(layout.parse_fine(seq.tokens), codes)


def test_parse_drops_incomplete_frames():
    layout = PRESETS["paper"]
    semantic, codes = _utterance(layout, 1.0)
    prompt = layout.coarse_sequence(semantic, codes, add_eos=False).tokens
    _, got = layout.parse_coarse(prompt[:-1])  # stopped one token short of the last frame
    np.testing.assert_array_equal(got, codes[:-1, :4])
    chunk = layout.fine_sequence(codes[:10]).tokens[0]
    end = 2 + 10 * 12
    got = layout.parse_fine(np.where(np.arange(chunk.size) < end - 3, chunk, PAD))
    np.testing.assert_array_equal(got, codes[:9])


def test_parse_rejects_wrong_level():
    layout = PRESETS["paper"]
    semantic, codes = _utterance(layout, 1.0)
    tokens = layout.coarse_sequence(semantic, codes).tokens
    sep = int(np.flatnonzero(tokens == SEP)[0])
    tokens[sep + 2] = tokens[sep + 1]  # a level-0 id where level 1 belongs
    with pytest.raises(ValueError, match=f"position {sep + 2} is not a level-1 id"):
        layout.parse_coarse(tokens)
    with pytest.raises(ValueError, match="codes must lie in"):
        layout.coarse_sequence(semantic, codes + layout.codebook_size)


@pytest.mark.parametrize("stage", ["coarse", "fine"])
def test_codes_tokens_jit_round_trip(stage):
    layout = PRESETS["paper"]
    first, n = (0, 4) if stage == "coarse" else (4, 8)
    codes = jnp.asarray(_utterance(layout, 1.0)[1][None, :, first : first + n])
    tokens = jax.jit(lambda c: layout.codes_to_tokens(stage, c))(codes)
    assert tokens.shape == (1, 50 * n)
    np.testing.assert_array_equal(
        jax.jit(lambda t: layout.tokens_to_codes(stage, t))(tokens), codes
    )
    np.testing.assert_array_equal(layout.codes_to_tokens(stage, np.asarray(codes)), tokens)


# ---- masks ----
def _sequences(layout, seconds=1.0):
    """(stage, tokens [L], loss_mask [L], start) for one short example of every stage."""
    semantic, codes = _utterance(layout, seconds, seed=3)
    out = []
    seq = layout.semantic_sequence(semantic, add_eos=True)
    out.append(("semantic", seq.tokens, seq.loss_mask, 1))
    seq = layout.coarse_sequence(semantic, codes)
    out.append(
        (
            "coarse",
            seq.tokens,
            seq.loss_mask,
            layout.generation_start("coarse", seq.run_lengths.size),
        )
    )
    if layout.has_fine_stage:
        k = min(len(codes), layout.fine_chunk_frames) - 1  # a short, padded chunk
        seq = layout.fine_sequence(codes[:k])
        out.append(("fine", seq.tokens[0], seq.loss_mask[0], layout.generation_start("fine", k)))
    return out


@pytest.mark.parametrize("name", ALL)
def test_valid_ids_admit_every_written_token(name):
    layout = PRESETS[name]
    for stage, tokens, _, start in _sequences(layout):
        table = layout.valid_ids_table(stage, tokens.size, start)
        assert table.shape == (tokens.size, layout.padded_vocab_size(stage))
        assert table[np.arange(tokens.size), tokens].all(), stage
        assert not table[:, layout.vocab_size(stage) :].any(), "padding ids are never valid"


@pytest.mark.parametrize("name", ALL)
def test_valid_ids_admit_one_level_per_acoustic_position(name):
    layout = PRESETS[name]
    k_a, qc = layout.codebook_size, layout.coarse_levels
    for stage, tokens, _, start in _sequences(layout):
        if stage == "semantic":
            continue
        table = layout.valid_ids_table(stage, tokens.size, start)
        first, levels = (0, qc) if stage == "coarse" else (qc, layout.fine_levels)
        end = tokens.size if stage == "coarse" else start + (start - 2) // qc * levels
        for p in range(start, end):
            level = first + (p - start) % levels
            expect = np.zeros(table.shape[1], bool)
            lo = layout.acoustic_offset(stage, level)
            expect[lo : lo + k_a] = True
            # The coarse stage may end after any whole frame.
            expect[EOS] = stage == "coarse" and level == 0
            np.testing.assert_array_equal(table[p], expect, err_msg=f"{stage} position {p}")
        for p in range(end, tokens.size):  # past the fine chunk: padding only
            assert np.flatnonzero(table[p]).tolist() == [PAD]


@pytest.mark.parametrize("name", ["paper", "encodec"])
def test_valid_ids_traced_position_matches_numpy(name):
    layout = PRESETS[name]
    for stage, tokens, _, start in _sequences(layout, seconds=0.4):
        table = layout.valid_ids_table(stage, tokens.size, start)

        @jax.jit
        def row(p, s, stage=stage):
            return layout.valid_ids(stage, p, s)

        for p in [0, 1, start - 1, start, start + 1, tokens.size - 1]:
            np.testing.assert_array_equal(row(jnp.int32(p), jnp.int32(start)), table[p])
        traced = jax.jit(lambda s, stage=stage, n=tokens.size: layout.valid_ids_table(stage, n, s))
        np.testing.assert_array_equal(traced(jnp.int32(start)), table)


@pytest.mark.parametrize("name", ALL)
def test_loss_masks_cover_the_paper_targets(name):
    """Stage 1 trains on every semantic id, stage 2 on the coarse acoustic tokens (+EOS) only,
    stage 3 on the fine tokens only (arXiv:2209.03143 sec. 4.2)."""
    layout = PRESETS[name]
    qc = layout.coarse_levels
    for stage, tokens, mask, start in _sequences(layout):
        specials = tokens < NUM_SPECIALS
        if stage == "semantic":
            expect = ~specials | (tokens == EOS)
        elif stage == "coarse":
            expect = tokens >= layout.acoustic_offset("coarse", 0)
            expect |= tokens == EOS
            assert mask.sum() == layout.tokens_to_codes("coarse", tokens[start:-1]).size + 1
        else:
            expect = tokens >= layout.acoustic_offset("fine", qc)
            assert mask.sum() == (start - 2) // qc * layout.fine_levels
        np.testing.assert_array_equal(mask, expect, err_msg=stage)
        assert not mask[:start].any()


# ---- crops ----
@pytest.mark.parametrize("name, unit", [("paper", (1, 2)), ("hubert", (1, 1)), ("encodec", (2, 3))])
def test_aligned_crop_covers_the_same_audio(name, unit):
    layout = PRESETS[name]
    assert layout.crop_unit == unit
    seconds, total = layout.coarse_crop_seconds, 13.0
    semantic = np.arange(round(total * layout.semantic_rate_hz))  # id = frame index
    codes = np.arange(round(total * layout.acoustic_rate_hz))[:, None]
    starts = layout.num_crop_starts(semantic.size, codes.shape[0], seconds)
    for start in [0, starts // 2, starts - 1]:
        sem, ac = layout.aligned_crop(semantic, codes, start, seconds)
        assert sem[0] / layout.semantic_rate_hz == pytest.approx(ac[0, 0] / layout.acoustic_rate_hz)
        assert (sem.size, ac.shape[0]) == (layout.coarse_crop_semantic, layout.coarse_crop_frames)
    sem, ac = layout.aligned_crop(semantic, codes, starts, seconds)
    assert sem.size < layout.coarse_crop_semantic or ac.shape[0] < layout.coarse_crop_frames


def test_import_does_not_pull_in_tensorflow():
    code = "import audiolm_jax.layouts, sys; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ALL)
def test_aligned_coarse_conditioning_names_each_frames_semantic_id(name):
    """coarse_semantic="aligned": the prefix keeps every id, and each input position is given
    the id under the frame of the token it predicts; packed examples never see each other's
    ids; numpy and jitted jnp agree."""
    import dataclasses

    lay = dataclasses.replace(PRESETS[name], coarse_semantic="aligned")
    a, b = lay.crop_unit
    qc = lay.coarse_levels
    examples = []
    for seed, seconds in ((0, 0.4), (1, 0.32)):
        sem, codes = _utterance(lay, seconds, seed)
        units = min(len(sem) // a, len(codes) // b)
        sem, codes = sem[: units * a], codes[: units * b]
        seq = lay.coarse_sequence(sem, codes)
        assert seq.tokens[1] == NUM_SPECIALS + sem[0] and seq.tokens[1 + len(sem)] == SEP
        np.testing.assert_array_equal(seq.tokens[1 : 1 + len(sem)], sem + NUM_SPECIALS)
        examples.append((sem, codes, seq.tokens[:-1]))  # model inputs: all but the last
    tokens = np.concatenate([t for *_, t in examples])[None]
    positions = np.concatenate([np.arange(t.size) for *_, t in examples])[None]
    cond = lay.coarse_conditioning(tokens, positions)
    traced = jax.jit(lay.coarse_conditioning)(jnp.asarray(tokens), jnp.asarray(positions))
    np.testing.assert_array_equal(np.asarray(traced), cond)
    at = 0
    for sem, codes, t in examples:
        c = cond[0, at : at + t.size]
        sep = 1 + len(sem)
        assert (c[:sep] == PAD).all()  # the prefix has no conditioning
        for i in range(sep, t.size):  # input i predicts acoustic token i - sep of the crop
            frame = (i - sep) // qc
            want = sem[frame * a // b] + NUM_SPECIALS if frame < len(codes) else PAD
            assert c[i] == want, (i, c[i], want)
        at += t.size
    # Without "aligned" the prefix drops repeats, as the paper does.
    plain = PRESETS[name].coarse_sequence(sem, codes)
    assert plain.tokens.size == 3 + dedup(sem)[0].size + codes.shape[0] * qc


def test_coarse_semantic_must_be_known():
    with pytest.raises(ValueError, match="coarse_semantic must be one of"):
        TokenLayout(**{**PRESETS["paper"].__dict__, "coarse_semantic": "interleaved"})
