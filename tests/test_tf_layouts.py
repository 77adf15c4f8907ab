"""The TF-graph layouts (audiolm_jax.data.tf_layouts) equal the numpy ones and stay graph-only."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolm_jax import layouts
from audiolm_jax.data import tf_layouts
from audiolm_jax.layouts import PRESETS

SPEECH = ["paper", "hubert", "encodec"]

# Small shapes and few examples: TF eager ops are slow-ish and the suite must stay fast.
FAST = settings(max_examples=25, deadline=None, database=None)


@st.composite
def semantic_ids(draw, layout):
    """[frames] ids from a few values (so repeats are common) including the extremes."""
    values = st.sampled_from([0, 1, 2, layout.semantic_vocab - 1])
    return np.array(draw(st.lists(values, max_size=60)), np.int32)


@st.composite
def codes(draw, layout, max_frames):
    frames = draw(st.integers(0, max_frames))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    out = rng.integers(0, layout.codebook_size, (frames, layout.acoustic_levels), np.int32)
    if frames:
        out[-1, 0] = layout.codebook_size - 1
    return out


def _eq(tf_values, np_values):
    np_values = [v for v in np_values if v is not None]  # fine has no run_lengths
    for got, want in zip(tf_values, np_values, strict=True):
        got = got.numpy()
        assert got.shape == want.shape and got.dtype == want.dtype, (got, want)
        np.testing.assert_array_equal(got, want)


# Graph mode with unknown lengths: what Dataset.map traces.
def _graph(fn, *signature):
    return tf.function(fn, input_signature=[tf.TensorSpec(s, tf.int32) for s in signature])


@FAST
@given(data=st.data())
def test_dedup_matches_numpy(data):
    ids = data.draw(semantic_ids(PRESETS["paper"]))
    _eq(_graph(tf_layouts.dedup, [None])(ids), layouts.dedup(ids))


@pytest.mark.parametrize("name", [*SPEECH, "piano"])
@pytest.mark.parametrize("add_eos", [False, True])
def test_semantic_matches_numpy(name, add_eos):
    layout = PRESETS[name]
    fn = _graph(lambda x: tf_layouts.semantic_sequence(layout, x, add_eos), [None])

    @FAST
    @given(ids=semantic_ids(layout))
    def check(ids):
        _eq(fn(ids), layout.semantic_sequence(ids, add_eos))

    check()


@pytest.mark.parametrize("how", ["dedup", "aligned"])
@pytest.mark.parametrize("name", [*SPEECH, "piano"])
def test_coarse_matches_numpy(name, how):
    layout = dataclasses.replace(PRESETS[name], coarse_semantic=how)
    fn = _graph(lambda s, c: tf_layouts.coarse_sequence(layout, s, c), [None], [None, None])

    @FAST
    @given(ids=semantic_ids(layout), c=codes(layout, 40))
    def check(ids, c):
        _eq(fn(ids, c), layout.coarse_sequence(ids, c))

    check()


@pytest.mark.parametrize("name", SPEECH)
def test_fine_matches_numpy(name):
    # A 0.2 s chunk keeps the rows short; the chunking logic does not depend on C.
    layout = dataclasses.replace(PRESETS[name], fine_chunk_seconds=0.2)
    fn = _graph(lambda c: tf_layouts.fine_sequence(layout, c), [None, None])

    @FAST
    @given(c=codes(layout, 4 * layout.fine_chunk_frames))
    def check(c):
        _eq(fn(c), layout.fine_sequence(c))

    check()


def test_fine_matches_numpy_paper_chunk():
    layout = PRESETS["paper"]
    c = np.random.default_rng(0).integers(0, 1024, (2 * 150 + 31, 12), np.int32)
    _eq(tf_layouts.fine_sequence(layout, c), layout.fine_sequence(c))


@pytest.mark.parametrize("name", SPEECH)
def test_aligned_crop_matches_numpy(name):
    layout = PRESETS[name]

    @FAST
    @given(seconds=st.sampled_from([0.2, 1.0]), total=st.integers(0, 60), start=st.integers(0, 30))
    def check(seconds, total, start):
        semantic = np.arange(total * 2, dtype=np.int32)
        frames = np.arange(total * 3, dtype=np.int32)[:, None]
        n = tf_layouts.num_crop_starts(layout, len(semantic), len(frames), seconds)
        assert int(n) == layout.num_crop_starts(len(semantic), len(frames), seconds)
        got = tf_layouts.aligned_crop(layout, semantic, frames, start, seconds)
        _eq(got, layout.aligned_crop(semantic, frames, start, seconds))

    check()


def test_bad_input_fails_with_a_message():
    layout = PRESETS["paper"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="codes must be < 1024"):
        tf_layouts.coarse_sequence(layout, [1, 2], np.full((3, 4), 1024, np.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="codes need >= 12 levels"):
        tf_layouts.fine_sequence(layout, np.zeros((3, 4), np.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="semantic ids must be < 1024"):
        tf_layouts.semantic_sequence(layout, [1024])


def test_dataset_iterator_is_checkpointable(tmp_path):
    """No py_function in the map, so the iterator's position saves and restores."""
    layout = PRESETS["paper"]
    rng = np.random.default_rng(0)
    examples = {
        "semantic": [rng.integers(0, 4, 20, np.int32) for _ in range(6)],
        "codes": [rng.integers(0, 1024, (40, 12), np.int32) for _ in range(6)],
    }
    ds = tf.data.Dataset.from_tensor_slices(examples).map(
        lambda ex: dict(
            zip(
                ["tokens", "loss_mask", "run_lengths"],
                tf_layouts.coarse_sequence(layout, ex["semantic"], ex["codes"]),
                strict=True,
            )
        )
    )
    it = iter(ds)
    next(it)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.write(str(tmp_path / "it"))
    want = next(it)["tokens"].numpy()
    restored = iter(ds)
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(next(restored)["tokens"].numpy(), want)
    np.testing.assert_array_equal(
        want, layout.coarse_sequence(examples["semantic"][1], examples["codes"][1]).tokens
    )
