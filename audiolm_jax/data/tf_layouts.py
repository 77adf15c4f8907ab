"""TF-graph twins of the sequence writers in `audiolm_jax.layouts`, for the seqio preprocessors.

Same semantics, tested equal to the numpy versions (tests/test_tf_layouts.py); the id scheme
and layouts are documented in `audiolm_jax.layouts`. Only tf ops: a tf.py_function or
tf.numpy_function inside tf.data would make the iterator impossible to checkpoint, and a
resumed run would replay data. Every function works on tensors of unknown length inside
`Dataset.map`. Bad input fails with a tf.debugging assertion naming what is wrong.
"""

from __future__ import annotations

import tensorflow as tf

from audiolm_jax.layouts import BOS, EOS, NUM_SPECIALS, PAD, SEP, TokenLayout


def dedup(ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Drops consecutive repeats: ids [frames] -> (unique [m], run_lengths [m]), int32."""
    ids = tf.cast(ids, tf.int32)
    n = tf.size(ids)
    keep = tf.concat([tf.ones([tf.minimum(n, 1)], tf.bool), ids[1:] != ids[:-1]], 0)
    starts = tf.cast(tf.where(keep)[:, 0], tf.int32)
    ends = tf.concat([starts[1:], [n]], 0)[: tf.size(starts)]
    return tf.gather(ids, starts), ends - starts


def _checked_semantic(layout: TokenLayout, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.cast(ids, tf.int32)
    checks = [
        tf.debugging.assert_rank(ids, 1, message="semantic ids must be [frames]"),
        tf.debugging.assert_non_negative(ids, message="semantic ids must be >= 0"),
        tf.debugging.assert_less(
            ids, layout.semantic_vocab, message=f"semantic ids must be < {layout.semantic_vocab}"
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(ids)


def _checked_codes(layout: TokenLayout, codes: tf.Tensor, levels: int) -> tf.Tensor:
    codes = tf.cast(codes, tf.int32)
    checks = [
        tf.debugging.assert_rank(codes, 2, message="codes must be [frames, levels]"),
        tf.debugging.assert_greater_equal(
            tf.shape(codes)[1], levels, message=f"codes need >= {levels} levels"
        ),
    ]
    with tf.control_dependencies(checks):
        codes = codes[:, :levels]
    checks = [
        tf.debugging.assert_non_negative(codes, message="codes must be >= 0"),
        tf.debugging.assert_less(
            codes, layout.codebook_size, message=f"codes must be < {layout.codebook_size}"
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.reshape(codes, [-1, levels])  # static level count, for codes_to_tokens


def codes_to_tokens(
    layout: TokenLayout, stage: str, codes: tf.Tensor, first_level: int, levels: int
) -> tf.Tensor:
    """codes [frames, levels] (levels first_level ..) -> tokens [frames * levels], row-major
    over (frame, level) with the stage's per-level offsets."""
    offsets = layout.acoustic_offset(stage, tf.range(first_level, first_level + levels))
    return tf.reshape(codes + offsets, [-1])


def semantic_sequence(
    layout: TokenLayout, semantic_ids: tf.Tensor, add_eos: bool = False
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Stage 1: semantic_ids [frames] -> (tokens [L], loss_mask [L], run_lengths [m])."""
    unique, run_lengths = dedup(_checked_semantic(layout, semantic_ids))
    tokens = tf.concat([[BOS], unique + NUM_SPECIALS] + [[EOS]] * add_eos, 0)
    return tokens, tf.range(tf.size(tokens)) >= 1, run_lengths


def coarse_sequence(
    layout: TokenLayout, semantic_ids: tf.Tensor, codes: tf.Tensor, add_eos: bool = True
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Stage 2: (semantic_ids [s], codes [frames, >= Q']) -> (tokens, loss_mask, run_lengths).
    The prefix keeps every id when layout.coarse_semantic is "aligned"."""
    ids = _checked_semantic(layout, semantic_ids)
    if layout.coarse_semantic == "aligned":
        unique, run_lengths = ids, tf.ones_like(ids)
    else:
        unique, run_lengths = dedup(ids)
    coarse = _checked_codes(layout, codes, layout.coarse_levels)
    acoustic = codes_to_tokens(layout, "coarse", coarse, 0, layout.coarse_levels)
    tokens = tf.concat([[BOS], unique + NUM_SPECIALS, [SEP], acoustic] + [[EOS]] * add_eos, 0)
    loss_mask = tf.range(tf.size(tokens)) >= 2 + tf.size(unique)
    return tokens, loss_mask, run_lengths


def fine_sequence(layout: TokenLayout, codes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Stage 3: codes [frames, Q] -> (tokens, loss_mask) [chunks, 2 + C * Q], one row per chunk
    of C frames, the last right-padded with PAD: BOS coarse SEP fine PAD.."""
    if not layout.has_fine_stage:
        raise ValueError("this layout has no fine stage (has_fine_stage=False)")
    c, q, qc = layout.fine_chunk_frames, layout.acoustic_levels, layout.coarse_levels
    codes = _checked_codes(layout, codes, q)
    frames = tf.shape(codes)[0]
    chunks = (frames + c - 1) // c
    padded = tf.pad(codes, [[0, chunks * c - frames], [0, 0]])
    coarse = codes_to_tokens(layout, "fine", padded[:, :qc], 0, qc)
    fine = codes_to_tokens(layout, "fine", padded[:, qc:], qc, q - qc)
    coarse, fine = tf.reshape(coarse, [chunks, c * qc]), tf.reshape(fine, [chunks, c * (q - qc)])

    def column(token):
        return tf.fill([chunks, 1], token)

    # Row layout of full chunks; a short last chunk gathers its columns leftwards so SEP and
    # the fine tokens follow its k frames directly, and points past its end at the PAD column.
    full = tf.concat([column(BOS), coarse, column(SEP), fine, column(PAD)], 1)
    length = 2 + c * q
    k = tf.minimum(c, frames - tf.range(chunks) * c)[:, None]  # frames per chunk, [chunks, 1]
    j = tf.range(length)[None, :]
    fine_begin, fine_end = 2 + k * qc, 2 + k * q
    index = tf.where(
        j < fine_begin - 1,
        j,
        tf.where(
            j == fine_begin - 1,
            1 + c * qc,
            tf.where(j < fine_end, 2 + c * qc + j - fine_begin, length),
        ),
    )
    tokens = tf.gather(full, index, batch_dims=1)
    return tokens, (j >= fine_begin) & (j < fine_end)


def num_crop_starts(
    layout: TokenLayout, semantic_frames: tf.Tensor, acoustic_frames: tf.Tensor, seconds: float
) -> tf.Tensor:
    """Grid-aligned start units that give a full crop of `seconds` (>= 1), as a scalar int32."""
    a, b = layout.crop_unit
    units = tf.minimum(semantic_frames // a, acoustic_frames // b)
    return tf.maximum(1, tf.cast(units, tf.int32) - layout.crop_units(seconds) + 1)


def aligned_crop(
    layout: TokenLayout,
    semantic_ids: tf.Tensor,
    codes: tf.Tensor,
    start_unit: tf.Tensor,
    seconds: float,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The same `seconds` of semantic_ids [s] and codes [frames, levels] from start_unit on."""
    a, b = layout.crop_unit
    n = layout.crop_units(seconds)
    start_unit = tf.cast(start_unit, tf.int32)
    semantic_ids, codes = tf.convert_to_tensor(semantic_ids), tf.convert_to_tensor(codes)
    return (
        semantic_ids[start_unit * a : (start_unit + n) * a],
        codes[start_unit * b : (start_unit + n) * b],
    )
