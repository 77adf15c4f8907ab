"""The synthesised speech corpus (audiolm_jax.data.synth_speech) and `data.source="synth"`:
real flite and espeak-ng runs (a few seconds)."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from audiolm_jax import tasks
from audiolm_jax.config import load_config
from audiolm_jax.data import synth_speech
from audiolm_jax.semantic import abx


def test_texts_are_deterministic_and_avoid_the_abx_words():
    a, b = synth_speech.sentences(40, seed=0), synth_speech.sentences(40, seed=0)
    assert a == b and a != synth_speech.sentences(40, seed=1)
    assert synth_speech.sentences(10, seed=0) == a[:10]  # utterance i depends on (seed, i) only
    assert all(5 <= len(t.split()) <= 10 for t in a)
    assert not set(synth_speech.VOCABULARY) & set(abx.WORDS)


def test_ensure_writes_every_voice_then_reuses_and_refuses_other_folders(tmp_path):
    n = len(synth_speech.VOICES) + 2
    root = str(tmp_path / "speech")
    assert synth_speech.ensure(root, utterances=n) == root
    manifest = json.load(open(os.path.join(root, "corpus.json")))
    assert manifest["utterances"] == n and len(manifest["files"]) == n
    speakers = {e["speaker"] for e in manifest["files"]}
    assert len(speakers) == len(synth_speech.VOICES)
    assert sorted(os.listdir(root)) == sorted(speakers | {"corpus.json"})
    for e in manifest["files"]:
        wav, rate = sf.read(os.path.join(root, e["file"]))
        assert rate == 16000 and len(wav) / rate == pytest.approx(e["seconds"])
        assert 0.5 < e["seconds"] < 10
        assert abs(20 * np.log10(np.sqrt(np.mean(wav**2))) + 20) < 1.0  # -20 dBFS
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".synth")]  # no leftovers

    before = os.path.getmtime(os.path.join(root, "corpus.json"))
    synth_speech.ensure(root, utterances=n)  # complete: reused, not rebuilt
    assert os.path.getmtime(os.path.join(root, "corpus.json")) == before
    with pytest.raises(ValueError, match="utterances"):
        synth_speech.ensure(root, utterances=n + 1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        synth_speech.ensure(str(other), utterances=n)
    assert (other / "notes.txt").read_text() == "mine"  # nothing touched


def test_synth_source_feeds_w2v_bert_clips(tmp_path):
    config = load_config("w2v_bert_tiny")
    config.data.update(source="synth", path=str(tmp_path / "speech"), synth_utterances=20)
    config.data.eval_every = 5
    train, held_out = tasks.audio_sources(config, 16000)
    batch = next(iter(train))
    assert batch["wav"].shape == (config.data.batch_size, int(config.data.clip_seconds * 16000))
    assert np.isfinite(batch["wav"]).all() and np.abs(batch["wav"]).max() > 0.01
    assert next(iter(held_out))["wav"].shape[1] == batch["wav"].shape[1]
