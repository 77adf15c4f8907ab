"""seqio Tasks over the token cache: each stage's sequences are the layouts' (ids in range,
loss masks as weights), packing, a Mixture across corpora, and exact resume of the tf.data
iterator through the Orbax checkpoint, in the trainer too."""

import dataclasses
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from audiolm_jax import layouts
from audiolm_jax.data import pipeline, seqio_tasks
from audiolm_jax.data.pipeline import CacheSource
from audiolm_jax.layouts import BOS, PAD, SEP, TokenLayout
from audiolm_jax.train.checkpoint import Checkpointer

# 25 Hz semantic ids (K_s 16), 50 Hz codes (3 levels of 8, 1 coarse), 10-frame fine chunks.
# Crops (2 s) are longer than every utterance (< 1.6 s): each example is a whole utterance.
TINY = TokenLayout(
    semantic_vocab=16,
    semantic_rate_hz=25.0,
    acoustic_levels=3,
    coarse_levels=1,
    codebook_size=8,
    acoustic_rate_hz=50.0,
    fine_chunk_seconds=0.2,
    semantic_crop_seconds=2.0,
    coarse_crop_seconds=2.0,
)
LAYOUT_FIELDS = {k: getattr(TINY, k) for k in pipeline.LAYOUT_CONFIG_FIELDS}


def write_cache(directory, name, n_train, *, semantic_ids=(0, 16), seed=0, shards=3):
    """A token cache in the format `token_cache` writes; returns {id: (semantic, codes)}."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    manifest = {
        "format": 1,
        "sample_rate": 16000,
        "semantic": {"vocab_size": 16, "frame_rate": 25.0, "checkpoint": "-", "describe": "fake"},
        "acoustic": {
            "levels": 3,
            "codebook_size": 8,
            "frame_rate": 50.0,
            "checkpoint": "-",
            "describe": "fake",
        },
        "splits": {},
    }
    utterances = {}
    for split, count in (("train", n_train), ("validation", 4)):
        files = [f"{split}.tfrecord-{s:05d}-of-{shards:05d}" for s in range(shards)]
        writers = [tf.io.TFRecordWriter(os.path.join(directory, f)) for f in files]
        for i in range(count):
            seconds = 0.04 * int(rng.integers(4, 40))
            semantic = rng.integers(*semantic_ids, round(seconds * 25))
            codes = rng.integers(0, 8, (round(seconds * 50), 3))
            uid = f"{name}-{split}-{i:03d}"
            utterances[uid] = (semantic, codes)

            def feature(kind, values):
                cls = {"bytes": tf.train.BytesList, "int": tf.train.Int64List}.get(
                    kind, tf.train.FloatList
                )
                field = {"bytes": "bytes_list", "int": "int64_list"}.get(kind, "float_list")
                return tf.train.Feature(**{field: cls(value=values)})

            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "id": feature("bytes", [uid.encode()]),
                        "speaker": feature("bytes", [b"spk"]),
                        "semantic": feature("int", semantic),
                        "codes": feature("int", codes.reshape(-1)),
                        "levels": feature("int", [3]),
                        "seconds": feature("float", [seconds]),
                    }
                )
            )
            writers[i % shards].write(example.SerializeToString())
        for w in writers:
            w.close()
        manifest["splits"][split] = {
            "num_shards": shards,
            "files": files,
            "utterances": count,
            "hours": count / 3600,
        }
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return utterances


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Two corpora, told apart by their semantic ids: "ca" uses 0..7, "cb" 8..15."""
    root = tmp_path_factory.mktemp("caches")
    ca = write_cache(root / "ca", "ca", 30, semantic_ids=(0, 8), seed=1)
    cb = write_cache(root / "cb", "cb", 12, semantic_ids=(8, 16), seed=2)
    names = seqio_tasks.register_stage_tasks(str(root / "ca"), corpus_name="ca", layout=TINY)
    return {"root": root, "ca": ca, "cb": cb, "names": names}


def _examples(name, split="train"):
    ds = seqio_tasks.provider(name).get_dataset(
        sequence_length=None,
        split=split,
        shuffle=False,
        seed=0,
        num_epochs=1,
        trim_output_features=False,
        try_in_mem_cache=False,
    )
    return list(ds.as_numpy_iterator())


def _tokens(ex):
    return np.concatenate([ex["inputs"][:1], ex["targets"]])


def _trim_pad(tokens, mask):
    n = int((tokens != PAD).sum())
    return tokens[:n], mask[:n]


def test_each_stage_task_yields_the_layouts_sequences(caches):
    train = {k: v for k, v in caches["ca"].items() if "-train-" in k}
    expected = {
        "semantic": [TINY.semantic_sequence(s, add_eos=True) for s, _ in train.values()],
        "coarse": [TINY.coarse_sequence(s, c) for s, c in train.values()],
        "fine": [
            layouts.Sequence(*_trim_pad(t, m))
            for _, c in train.values()
            for t, m in zip(*TINY.fine_sequence(c)[:2])
        ],
    }
    assert caches["names"] == {s: f"ca_{s}" for s in ("semantic", "coarse", "fine")}
    for stage, name in caches["names"].items():
        got = _examples(name)
        want = {tuple(e.tokens): e.loss_mask for e in expected[stage]}
        assert len(got) == len(expected[stage]), stage  # every utterance (chunk), once
        for ex in got:
            tokens = _tokens(ex)
            assert tokens[0] == BOS and tokens.max() < TINY.vocab_size(stage), stage
            assert np.array_equal(ex["inputs"][1:], ex["targets"][:-1])
            assert tuple(tokens) in want, (stage, tokens)
            # Weights are the layout's loss mask, shifted to the targets.
            np.testing.assert_array_equal(ex["weights"], want[tuple(tokens)][1:])
            if stage != "semantic":  # a prefix, SEP, then the trained tokens
                sep = int(np.flatnonzero(tokens == SEP)[0])
                assert not ex["weights"][:sep].any() and ex["weights"][sep:].all()


def test_coarse_crops_are_aligned_windows(caches):
    short = dataclasses.replace(TINY, coarse_crop_seconds=0.4)  # 10 ids, 20 frames
    names = seqio_tasks.register_stage_tasks(
        str(caches["root"] / "ca"), corpus_name="ca_short", layout=short, stages=["coarse"]
    )
    train = [v for k, v in caches["ca"].items() if "-train-" in k]
    examples = _examples(names["coarse"])
    assert len(examples) == len(train)
    for ex in examples:
        semantic, codes = short.parse_coarse(_tokens(ex))
        assert len(codes) <= 20
        hits = 0
        for s, c in train:  # some utterance holds this window in both streams
            for start in range(0, len(c) - len(codes) + 1, 2):
                if np.array_equal(c[start : start + len(codes), :1], codes) and np.array_equal(
                    layouts.dedup(s[start // 2 : start // 2 + 10])[0], semantic
                ):
                    hits += 1
        assert hits, (semantic, codes)


def test_a_layout_that_contradicts_the_manifest_is_refused(caches):
    other = dataclasses.replace(TINY, semantic_vocab=32)
    with pytest.raises(ValueError, match="semantic_vocab=32 but the cache's manifest says"):
        seqio_tasks.register_stage_tasks(str(caches["root"] / "ca"), corpus_name="x", layout=other)


def test_packing_gives_segments_and_positions(caches):
    ds = seqio_tasks.lm_dataset(caches["names"]["fine"], seq_len=64, seed=0, pack=True)
    rows = list(ds.take(4).as_numpy_iterator())
    assert set(rows[0]) == {"inputs", "targets", "weights", "segment_ids", "positions"}
    assert max(r["segment_ids"].max() for r in rows) >= 2  # several chunks per row
    for r in rows:
        seg, pos = r["segment_ids"], r["positions"]
        for s in range(1, seg.max() + 1):
            at = np.flatnonzero(seg == s)
            np.testing.assert_array_equal(pos[at], np.arange(at.size))
            assert r["inputs"][at[0]] == BOS
            np.testing.assert_array_equal(r["inputs"][at[1:]], r["targets"][at[:-1]])
            sep = at[0] + int(np.flatnonzero(r["inputs"][at] == SEP)[0])
            # No loss up to the target SEP, loss on every fine token after it.
            assert not r["weights"][at[0] : sep].any() and r["weights"][sep : at[-1] + 1].all()
        assert not r["weights"][seg == 0].any() and not r["targets"][seg == 0].any()


def _config(caches, **data):
    import ml_collections

    c = ml_collections.ConfigDict()
    c.seed = 7
    c.lm = ml_collections.ConfigDict(dict(vocab_size=128))
    c.train = ml_collections.ConfigDict(dict(eval_batches=2))
    c.data = pipeline.cache_data_config(
        corpora={"ca": str(caches["root"] / "ca"), "cb": str(caches["root"] / "cb")},
        stage="semantic",
        batch_size=4,
        seq_len=32,
        layout=LAYOUT_FIELDS,
        shuffle_buffer=16,
    )
    c.data.update(data)
    return c


def test_mixture_of_two_corpora_draws_from_both(caches):
    train, evaluation = pipeline.cache_sources(_config(caches))
    assert train.name == "ca_cb_semantic_mix"
    ids = np.concatenate([next(train)["targets"].ravel() for _ in range(6)])
    ids = ids[ids >= layouts.NUM_SPECIALS] - layouts.NUM_SPECIALS
    assert (ids < 8).any() and (ids >= 8).any()  # corpus ca's ids and cb's
    assert evaluation.split == "validation" and next(evaluation)["inputs"].shape == (4, 32)


def _same(a, b):
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def test_resume_continues_with_exactly_the_next_batches(caches, tmp_path):
    """A packed, shuffled Mixture: 5 batches, save (state + iterator), 5 more (the unbroken
    run); a fresh source restored from the checkpoint yields those same 5."""
    config = _config(caches)
    name, _ = pipeline.register_from_config(config)

    def source():
        return CacheSource.from_config(config, name, "train")

    unbroken = source()
    [next(unbroken) for _ in range(5)]
    ckpt = Checkpointer(str(tmp_path), keep=2, iterator_source=unbroken)
    ckpt.save(5, {"x": jnp.zeros(2)}, unbroken.get_state(), {}, wait=True)
    ckpt.close()
    reference = [next(unbroken) for _ in range(5)]
    assert os.path.isdir(tmp_path / "checkpoints/5/data_iterator/process_0-of-1")

    resumed = source()
    next(resumed)  # the trainer peeks a batch before it restores
    ckpt = Checkpointer(str(tmp_path), keep=2, iterator_source=resumed)
    step, _, data_state, _ = ckpt.restore_latest({"x": jax.ShapeDtypeStruct((2,), jnp.float32)})
    ckpt.close()
    assert step == 5 and data_state["iterator_restored"] and data_state["step"] == 5
    resumed.set_state(data_state)
    assert _same([next(resumed) for _ in range(5)], reference)

    # Without the saved iterator the stream is rebuilt and replayed: the same batches.
    replayed = source()
    replayed.set_state({k: v for k, v in data_state.items() if k != "iterator_restored"})
    assert _same([next(replayed) for _ in range(5)], reference)


def test_other_process_count_warns_and_restarts_from_the_step(caches, tmp_path, caplog):
    config = _config(caches, corpora={"ca": str(caches["root"] / "ca")})
    name, _ = pipeline.register_from_config(config)
    two_hosts = CacheSource.from_config(config, name, "train", process_index=0, process_count=2)
    assert next(two_hosts)["inputs"].shape == (2, 32)  # its half of the global batch
    [next(two_hosts) for _ in range(2)]
    ckpt = Checkpointer(str(tmp_path), keep=2, iterator_source=two_hosts)
    ckpt.save(3, {"x": jnp.zeros(2)}, two_hosts.get_state(), {}, wait=True)
    ckpt.close()

    def resume():
        source = CacheSource.from_config(config, name, "train")
        ckpt = Checkpointer(str(tmp_path), keep=2, iterator_source=source)
        _, _, data_state, _ = ckpt.restore_latest({"x": jax.ShapeDtypeStruct((2,), jnp.float32)})
        ckpt.close()
        assert not data_state["iterator_restored"]
        source.set_state(data_state)
        return source

    with caplog.at_level(logging.WARNING, logger="audiolm_jax"):
        one = resume()
    assert "saved by 2 processes and this run has 1" in caplog.text
    seed = pipeline.derived_seed(config.seed, 3)
    assert one.get_state() == {
        "step": 3,
        "process_count": 1,
        "seed": 7,
        "data_seed": seed,
        "seed_step": 3,
    }
    assert seed != config.seed
    other = resume()  # deterministic: another resume gives the same batches
    assert _same([next(one) for _ in range(3)], [next(other) for _ in range(3)])


class _Crash(Exception):
    pass


class _CrashingSource(CacheSource):
    """Dies when asked for batch 4 (after the trainer saved step 3)."""

    def __next__(self):
        if self.step == 3:
            raise _Crash
        return super().__next__()


def test_trainer_killed_and_resumed_equals_unbroken_run(caches, tmp_path):
    from audiolm_jax import tasks
    from audiolm_jax.config import load_config
    from audiolm_jax.train.trainer import train

    c = load_config("semantic_tiny")
    c.lm.update(num_layers=1, num_heads=2, d_model=32, d_ff=64, vocab_size=128)
    c.data = _config(caches, corpora={"ca": str(caches["root"] / "ca")}).data
    c.train.update(
        steps=6,
        log_every=3,
        eval_every=3,
        eval_batches=2,
        checkpoint_every=3,
        keep_checkpoints=3,
        log_batch_hashes=True,
    )
    c.optimizer.update(warmup_steps=2)
    straight = train(c, str(tmp_path / "straight"), *tasks.build(c))

    broken = str(tmp_path / "broken")
    model, _, evaluation = tasks.build(c)
    name, _ = pipeline.register_from_config(c)
    with pytest.raises(_Crash):
        train(c, broken, model, _CrashingSource.from_config(c, name, "train"), evaluation)
    assert os.listdir(os.path.join(broken, "checkpoints", "3", "data_iterator"))
    resumed = train(c, broken, *tasks.build(c))

    assert resumed.resumed_from == 3 and resumed.step == 6
    hashes = [
        open(os.path.join(d, "batch_hashes.txt")).read() for d in (tmp_path / "straight", broken)
    ]
    assert hashes[0] == hashes[1] and len(hashes[0].splitlines()) == 6
    assert resumed.eval_metrics == straight.eval_metrics
    same = jax.tree.map(np.array_equal, straight.state.params, resumed.state.params)
    assert all(jax.tree.leaves(same))
