"""The token cache: round trip, manifest and statistics, bad examples, batching, a killed and
restarted job, two processes against one, and the real tokenizers (tiny, untrained) through
`Tokenizers.from_models` / `from_workdirs`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_semantic import TINY as TINY_W2V_BERT
from token_cache_job import (
    ACOUSTIC_HOP,
    CODEBOOK,
    LEVELS,
    NUM_SHARDS,
    RATE,
    SEMANTIC_HOP,
    SEMANTIC_VOCAB,
    corpus_examples,
    fake_acoustic,
    fake_semantic,
    fake_tokenizers,
)

from audiolm_jax.data import token_cache as tc

REPO = Path(__file__).resolve().parents[1]
JOB = str(REPO / "tests" / "token_cache_job.py")


@pytest.fixture(scope="module")
def examples():
    return corpus_examples()


@pytest.fixture(scope="module")
def reference(examples, tmp_path_factory):
    """The unbroken 1-process cache: (dir, summary, mapping)."""
    d = str(tmp_path_factory.mktemp("reference"))
    summary = tc.write_cache(
        examples,
        "train",
        d,
        fake_tokenizers(),
        num_shards=NUM_SHARDS,
        process_index=0,
        process_count=1,
        batch_size=4,
    )
    return d, summary, tc.read_cache(d, "train")


def assert_same_mapping(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for uid, w in want.items():
        g = got[uid]
        np.testing.assert_array_equal(g["semantic"], w["semantic"], err_msg=uid)
        np.testing.assert_array_equal(g["codes"], w["codes"], err_msg=uid)
        assert (g["speaker"], g["seconds"]) == (w["speaker"], w["seconds"])


def shard_bytes(d: str) -> dict[str, bytes]:
    out = {}
    for s in range(NUM_SHARDS):
        with open(tc.shard_path(d, "train", s, NUM_SHARDS), "rb") as f:
            out[s] = f.read()
    return out


def leftovers(d: str) -> list[str]:
    return [n for n in os.listdir(d) if n.endswith(".tmp")]


def ids_in(path: str) -> list[str]:
    import tensorflow as tf

    return [tc.parse_example(r)["id"] for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def test_round_trip_manifest_and_stats(examples, reference):
    d, summary, cache = reference
    # Every utterance exactly once, with the tokens of one-at-a-time tokenization.
    assert sorted(cache) == sorted(e["id"] for e in examples) and len(cache) == len(examples)
    for e in examples:
        n = len(e["audio"])
        ts, ta = -(-n // SEMANTIC_HOP), -(-n // ACOUSTIC_HOP)
        c = cache[e["id"]]
        assert c["semantic"].shape == (ts,) and c["codes"].shape == (ta, LEVELS)
        pad = np.pad(e["audio"], (0, ta * ACOUSTIC_HOP - n))[None]
        np.testing.assert_array_equal(c["codes"], fake_acoustic(pad)[0])
        pad = np.pad(e["audio"], (0, ts * SEMANTIC_HOP - n))[None]
        np.testing.assert_array_equal(c["semantic"], fake_semantic(pad)[0])
        assert c["speaker"] == e["speaker"] and c["seconds"] == pytest.approx(n / RATE)
    # Each shard holds the ids that hash to it, in source order; nothing half-written is left.
    for s in range(NUM_SHARDS):
        want = [e["id"] for e in examples if tc.shard_of(e["id"], NUM_SHARDS) == s]
        assert ids_in(tc.shard_path(d, "train", s, NUM_SHARDS)) == want
    assert leftovers(d) == [] and summary["shards_written"] == list(range(NUM_SHARDS))

    m = tc.read_manifest(d)
    seconds = sum(len(e["audio"]) for e in examples) / RATE
    assert m["format"] == 1 and m["sample_rate"] == RATE and m["created"]
    assert m["semantic"] == {
        "vocab_size": SEMANTIC_VOCAB,
        "frame_rate": 25.0,
        "checkpoint": "fake/semantic",
        "describe": "frame energy, 32 bins",
    }
    assert m["acoustic"]["levels"] == LEVELS and m["acoustic"]["codebook_size"] == CODEBOOK
    assert m["acoustic"]["frame_rate"] == 50.0 and m["acoustic"]["checkpoint"] is None
    split = m["splits"]["train"]
    assert split["num_shards"] == NUM_SHARDS
    assert split["files"] == [tc.shard_name("train", s, NUM_SHARDS) for s in range(NUM_SHARDS)]
    assert split["utterances"] == len(examples)
    assert split["hours"] == pytest.approx(seconds / 3600)
    assert split["semantic_tokens"] == sum(len(c["semantic"]) for c in cache.values())
    assert split["acoustic_frames"] == sum(len(c["codes"]) for c in cache.values())

    st = tc.read_stats(d)["train"]
    sem = np.concatenate([c["semantic"] for c in cache.values()])
    codes = np.concatenate([c["codes"] for c in cache.values()])
    assert st["semantic_histogram"] == np.bincount(sem, minlength=SEMANTIC_VOCAB).tolist()
    assert st["acoustic_histograms"] == [
        np.bincount(codes[:, q], minlength=CODEBOOK).tolist() for q in range(LEVELS)
    ]
    lengths = [len(e["audio"]) / RATE for e in examples]
    assert st["seconds"]["min"] == pytest.approx(min(lengths))
    assert st["seconds"]["max"] == pytest.approx(max(lengths))
    assert st["seconds"]["mean"] == pytest.approx(np.mean(lengths))
    per = [len(c["semantic"]) for c in cache.values()]
    assert st["semantic_per_utterance"] == {
        "min": min(per),
        "mean": pytest.approx(np.mean(per)),
        "max": max(per),
    }
    assert st["utterances"] == len(examples) and st["skipped"] == [] and st["duplicates"] == []


def test_batching_bad_examples_and_two_splits(examples, reference, tmp_path):
    calls = []

    def recorded(fn, name):
        def call(wav):
            calls.append((name, wav.shape))
            return fn(wav)

        return call

    # Padding to multiples of 3 / 5 frames is exact for these frame-local tokenizers.
    toks = fake_tokenizers(
        semantic=recorded(fake_semantic, "s"),
        acoustic=recorded(fake_acoustic, "a"),
        semantic_pad_frames=3,
        acoustic_pad_frames=5,
    )
    first = examples[0]
    bad = [
        {"id": first["id"], "speaker": "x", "audio": np.ones(800, np.float32)},  # repeated id
        {"id": "empty", "speaker": "x", "audio": np.zeros(0, np.float32)},
        {"id": "nan", "speaker": "x", "audio": np.full(900, np.nan, np.float32)},
    ]
    d = str(tmp_path)
    s = tc.write_cache(
        lambda: iter(examples[:3] + bad + examples[3:]),
        "train",
        d,
        toks,
        num_shards=NUM_SHARDS,
        process_index=0,
        process_count=1,
        batch_size=4,
        max_pending=6,
    )
    assert_same_mapping(tc.read_cache(d, "train"), reference[2])
    assert s["duplicates"] == [first["id"]]
    assert sorted(x[0] for x in s["skipped"]) == ["empty", "nan"]
    assert sorted(x[0] for x in tc.read_stats(d)["train"]["skipped"]) == ["empty", "nan"]
    # Batches formed, at most batch_size rows (a power of two), lengths padded as allowed.
    rows = [shape[0] for _, shape in calls]
    assert max(rows) > 1 and set(rows) <= {1, 2, 4}
    for name, (_, n) in calls:
        assert n % (SEMANTIC_HOP * 3 if name == "s" else ACOUSTIC_HOP * 5) == 0

    # A second split joins the manifest and the statistics; empty shards are shards too.
    tc.write_cache(
        examples[:2], "validation", d, toks, num_shards=4, process_index=0, process_count=1
    )
    m = tc.read_manifest(d)
    assert set(m["splits"]) == {"train", "validation"}
    assert m["splits"]["validation"]["utterances"] == 2
    assert len(m["splits"]["validation"]["files"]) == 4
    assert set(tc.read_stats(d)) == {"train", "validation"}
    assert sorted(tc.read_cache(d, "validation")) == sorted(e["id"] for e in examples[:2])
    # One cache, one pair of tokenizers and one shard count per split.
    with pytest.raises(ValueError, match="other tokenizers"):
        tc.write_cache(
            examples[:2],
            "test",
            d,
            fake_tokenizers(semantic_checkpoint="other"),
            num_shards=1,
            process_index=0,
            process_count=1,
        )
    with pytest.raises(ValueError, match="num_shards=3"):
        tc.write_cache(examples, "train", d, toks, num_shards=3, process_index=0, process_count=1)


def test_killed_job_restarts_where_it_stopped(examples, reference, tmp_path):
    d = str(tmp_path)
    # Pass 1 completes shards 0 and 1; the job is killed (os._exit) in pass 2.
    args = ["--shards-per-pass", "2", "--die-after", str(len(examples) + 7)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    out = subprocess.run(
        [sys.executable, JOB, d, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 3, out.stderr[-3000:]
    done = [s for s in range(NUM_SHARDS) if os.path.exists(tc.shard_path(d, "train", s, 6))]
    assert done == [0, 1] and not os.path.exists(os.path.join(d, "manifest.json"))
    assert leftovers(d), "the killed pass leaves its .tmp files"
    # A half shard from an earlier crash: ignored, then overwritten.
    with open(tc.shard_path(d, "train", 5, NUM_SHARDS) + ".tmp", "wb") as f:
        f.write(b"half a record")
    before = {s: os.stat(tc.shard_path(d, "train", s, NUM_SHARDS)).st_mtime_ns for s in done}

    s = tc.write_cache(
        corpus_examples,
        "train",
        d,
        fake_tokenizers(),
        num_shards=NUM_SHARDS,
        process_index=0,
        process_count=1,
        batch_size=4,
        shards_per_pass=2,
    )
    assert s["shards_already_complete"] == [0, 1] and s["shards_written"] == [2, 3, 4, 5]
    assert {x: os.stat(tc.shard_path(d, "train", x, 6)).st_mtime_ns for x in done} == before
    assert leftovers(d) == []
    assert_same_mapping(tc.read_cache(d, "train"), reference[2])
    assert shard_bytes(d) == shard_bytes(reference[0])
    assert tc.read_manifest(d)["splits"] == tc.read_manifest(reference[0])["splits"]


def test_two_processes_write_disjoint_shards_and_the_same_cache(examples, reference, tmp_path):
    from multihost import run_job

    d = str(tmp_path)
    outs = run_job(
        [sys.executable, JOB, d],
        num_processes=2,
        cwd=str(REPO),
        env={"PYTHONPATH": str(REPO)},
        timeout=300,
    )
    summaries = []
    for o in outs:
        assert o.returncode == 0, o.stderr[-3000:]
        line = next(x for x in o.stdout.splitlines() if x.startswith("RESULT "))
        summaries.append(json.loads(line[len("RESULT ") :]))
    assert [(x["process_index"], x["process_count"]) for x in summaries] == [(0, 2), (1, 2)]
    written = [set(x["shards_written"]) for x in summaries]
    assert written == [{0, 2, 4}, {1, 3, 5}]
    ids = [
        {i for s in w for i in ids_in(tc.shard_path(d, "train", s, NUM_SHARDS))} for w in written
    ]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == {e["id"] for e in examples}
    assert summaries[0]["manifest"] and summaries[1]["manifest"] is None
    assert_same_mapping(tc.read_cache(d, "train"), reference[2])
    assert shard_bytes(d) == shard_bytes(reference[0])
    assert tc.read_stats(d) == tc.read_stats(reference[0])


# --- the real tokenizers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    """An untrained tiny codec at 8 kHz (so the 16 kHz audio is resampled for it) and a tiny
    w2v-BERT semantic tokenizer with random centroids."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from audiolm_jax import codec, semantic
    from audiolm_jax.codec import rvq
    from audiolm_jax.codec.model import CodecConfig, init_generator
    from audiolm_jax.codec.seanet import SEANetConfig
    from audiolm_jax.semantic import w2v_bert as wb
    from audiolm_jax.train.trainer import run_once

    cfg = CodecConfig(
        8000,
        SEANetConfig(channels=4, dim=16),
        rvq.RVQConfig(levels=3, codebook_size=32, dim=16, kmeans_init=False),
    )
    wav = jnp.zeros((1, 3200), jnp.float32)
    params, qstate = run_once(lambda w: init_generator(cfg, jax.random.key(0), w), wav)
    c = codec.from_state(cfg, {"generator": nn.unbox(params)}, {"quantizer": qstate})
    tiny = TINY_W2V_BERT  # tests/test_semantic.py's
    p, _ = run_once(wb.W2VBert(tiny).init, jax.random.key(0), {"wav": jnp.zeros((1, 16000))})
    centroids = jax.random.normal(jax.random.key(1), (16, tiny.d_model))
    return c, semantic.from_parts(tiny, nn.unbox(p)["model"], 3, centroids)


def test_real_tokenizers_batched_equal_one_at_a_time(examples, models, tmp_path):
    from audiolm_jax import codec, semantic

    c, tok = models
    # Three utterances of 25 frames share a batch (padded to 4 rows), one of 13 is alone.
    lengths = [16000, 15900, 16000, 8000]
    exs = [
        {"id": f"u{i}", "speaker": e["speaker"], "audio": np.resize(e["audio"], n)}
        for i, (e, n) in enumerate(zip(examples[::3], lengths))
    ]
    toks = tc.Tokenizers.from_models(c, tok)
    assert (toks.sample_rate, toks.semantic_rate, toks.acoustic_rate) == (16000, 25.0, 25.0)
    caches = []
    for b in (4, 1):
        d = str(tmp_path / f"b{b}")
        tc.write_cache(
            exs, "train", d, toks, num_shards=2, process_index=0, process_count=1, batch_size=b
        )
        caches.append(tc.read_cache(d, "train"))
    assert_same_mapping(caches[0], caches[1])
    for e in exs:
        got = caches[0][e["id"]]
        np.testing.assert_array_equal(
            got["semantic"], np.asarray(semantic.encode(tok, e["audio"]))[0]
        )
        want = np.asarray(codec.encode(c, e["audio"], sample_rate=16000))[0]
        np.testing.assert_array_equal(got["codes"], want)
        assert got["codes"].shape == (-(-round(len(e["audio"]) / 2) // 320), 3)
    m = tc.read_manifest(str(tmp_path / "b4"))
    assert m["acoustic"]["levels"] == 3 and m["acoustic"]["codebook_size"] == 32
    assert "K=16" in m["semantic"]["describe"] and "8000 Hz" in m["acoustic"]["describe"]


def test_from_workdirs_records_the_checkpoints(models, tmp_path, monkeypatch):
    from audiolm_jax import codec, semantic

    c, tok = models
    for name, step in (("codec", 7), ("semantic", 12)):
        os.makedirs(tmp_path / name / "checkpoints" / str(step))
        os.makedirs(tmp_path / name / "checkpoints" / "3")
    monkeypatch.setattr(codec, "load", lambda workdir, step=None: c)
    monkeypatch.setattr(semantic, "load", lambda workdir, step=None: tok)
    toks = tc.Tokenizers.from_workdirs(
        str(tmp_path / "codec"), str(tmp_path / "semantic"), levels=2
    )
    meta = toks.metadata()
    assert meta["acoustic"]["checkpoint"] == str(tmp_path / "codec" / "checkpoints" / "7")
    assert meta["semantic"]["checkpoint"] == str(tmp_path / "semantic" / "checkpoints" / "12")
    assert meta["acoustic"]["levels"] == 2 and meta["semantic"]["vocab_size"] == 16
