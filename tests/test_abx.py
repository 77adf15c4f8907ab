"""ABX evaluation (audiolm_jax/semantic/abx.py): DTW, triplet scoring, word synthesis."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from audiolm_jax import dsp
from audiolm_jax.semantic import abx


def _require_synths():
    # Debian's flite and espeak-ng are test requirements (.ci/run installs them): a missing one
    # is a failure, not a skip.
    missing = [p for p in ("flite", "espeak-ng") if shutil.which(p) is None]
    assert not missing, f"tests need the Debian packages {missing} (.ci/run installs them)"


needs_synths = pytest.mark.usefixtures("synths")


@pytest.fixture
def synths():
    _require_synths()


def _reference_dtw(cost: np.ndarray) -> float:
    """Textbook DTW in plain Python with the same definition (sum along the cheapest path,
    ties to the longest path, divided by its length)."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    length = np.zeros((n + 1, m + 1))
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            preds = [(acc[i - 1, j], length[i - 1, j]), (acc[i, j - 1], length[i, j - 1])]
            preds.append((acc[i - 1, j - 1], length[i - 1, j - 1]))
            best = min(c for c, _ in preds)
            acc[i, j] = cost[i - 1, j - 1] + best
            length[i, j] = 1 + max(n_ for c, n_ in preds if c == best)
    return acc[n, m] / length[n, m]


def test_dtw_identical_is_zero():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=40)
    frames = rng.normal(size=(30, 16))
    assert abx.token_dtw(ids, ids) == 0.0
    assert abx.feature_dtw(frames, frames) == pytest.approx(0.0, abs=1e-9)


def test_dtw_time_stretched_copy_is_zero():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, size=25)
    stretched = np.repeat(ids, rng.integers(1, 4, size=len(ids)))
    assert len(stretched) > len(ids)
    assert abx.token_dtw(ids, stretched) == 0.0
    frames = rng.normal(size=(20, 8))
    slow = np.repeat(frames, 3, axis=0)
    assert abx.feature_dtw(frames, slow) == pytest.approx(0.0, abs=1e-9)


def test_dtw_symmetric_and_bounded():
    rng = np.random.default_rng(2)
    for _ in range(5):
        a, b = rng.integers(0, 4, size=17), rng.integers(0, 4, size=31)
        assert abx.token_dtw(a, b) == abx.token_dtw(b, a)
        assert 0.0 < abx.token_dtw(a, b) <= 1.0
        fa, fb = rng.normal(size=(12, 5)), rng.normal(size=(19, 5))
        assert abx.feature_dtw(fa, fb) == pytest.approx(abx.feature_dtw(fb, fa), abs=1e-12)
        assert 0.0 < abx.feature_dtw(fa, fb) <= 2.0
    assert abx.token_dtw([1, 2, 3], [4, 5, 6]) == 1.0


def test_dtw_matches_reference_and_batched_form():
    rng = np.random.default_rng(3)
    costs = []
    for n, m in [(1, 1), (1, 7), (6, 1), (9, 13), (20, 11)]:
        costs.append(rng.random((n, m)))
        costs.append(rng.integers(0, 2, size=(n, m)).astype(float))  # many ties
    batched = abx.dtw_costs(costs, chunk=3)
    for c, got in zip(costs, batched):
        assert abx.dtw_cost(c) == pytest.approx(_reference_dtw(c), abs=1e-12)
        assert got == pytest.approx(_reference_dtw(c), abs=1e-12)
    pairs = [(rng.normal(size=(rng.integers(2, 30), 4)), rng.normal(size=(7, 4))) for _ in range(6)]
    np.testing.assert_allclose(
        abx.feature_dtw.batched(pairs), [abx.feature_dtw(a, b) for a, b in pairs], atol=1e-12
    )
    with pytest.raises(ValueError):
        abx.token_dtw([], [1, 2])


def _fake_items(rep, words=8, voices=2, synths=("flite", "espeak-ng")):
    """Items for every (word, synth, voice), with rep(word, synth, voice) as representation."""
    return [
        dict(word=f"w{w}", synth=s, voice=f"{s}-v{v}", rep=rep(w, si, v))
        for w, (si, s), v in itertools.product(range(words), enumerate(synths), range(voices))
    ]


def test_abx_perfect_representation_is_zero():
    items = _fake_items(lambda w, s, v: np.full(5 + v + s, w))  # lengths vary, content is the word
    res = abx.abx_error(items, abx.token_dtw)
    assert res["across"]["error"] == 0.0 and res["within"]["error"] == 0.0
    # Per direction: X = words * voices, A = voices, B = (words - 1) * voices.
    assert res["across"]["triplets"] == 2 * (8 * 2) * 2 * (7 * 2)
    # Per synthesiser: X = words * voices, A = voices - 1, B = (words - 1) * voices.
    assert res["within"]["triplets"] == 2 * (8 * 2) * 1 * (7 * 2)
    assert set(res["across"]["per_direction"]) == {"flite->espeak-ng", "espeak-ng->flite"}
    assert set(res["within"]["per_synth"]) == {"flite", "espeak-ng"}


def test_abx_synthesiser_only_representation_fails_across():
    items = _fake_items(lambda w, s, v: np.full(6, s))
    res = abx.abx_error(items, abx.token_dtw)
    assert res["across"]["error"] == 100.0  # A (other synth) always farther than B (same synth)
    assert res["within"]["error"] == 50.0  # everything ties


def test_abx_random_representation_is_chance():
    # Chance in expectation; over seeds this size of test stays within about 5 points of 50.
    rng = np.random.default_rng(0)
    rep = lambda w, s, v: rng.normal(size=(int(rng.integers(5, 15)), 6))
    res = abx.abx_error(_fake_items(rep, words=16, voices=3), abx.feature_dtw)
    assert 42.0 < res["across"]["error"] < 58.0
    assert 42.0 < res["within"]["error"] < 58.0


def test_abx_plain_callable_equals_batched():
    rng = np.random.default_rng(5)
    items = _fake_items(lambda w, s, v: rng.integers(0, 3, size=int(rng.integers(3, 9))), words=5)
    batched = abx.abx_error(items, abx.token_dtw)
    plain = abx.abx_error(items, lambda a, b: abx.token_dtw(a, b))
    assert batched == plain
    one_voice = [it for it in items if it["voice"].endswith("v0")]
    res = abx.abx_error(one_voice, abx.token_dtw)
    assert res["within"]["triplets"] == 0 and np.isnan(res["within"]["error"])
    with pytest.raises(KeyError):
        abx.abx_error([dict(word="a", synth="flite", voice="slt")], abx.token_dtw)


@needs_synths
def test_synthesize_words_three_words(tmp_path):
    items = abx.synthesize_words(["bat", "sheep", "water"], str(tmp_path))
    assert len(items) == 3 * len(abx.DEFAULT_VOICES)
    assert {it["synth"] for it in items} == {"flite", "espeak-ng"}
    for it in items:
        wav, rate = dsp.read_audio(it["path"])
        assert rate == 16000
        assert 0.2 <= len(wav) / rate <= 1.5, (it, len(wav) / rate)
        rms_db = 10 * np.log10(np.mean(wav**2))
        assert -23.0 < rms_db < -17.0, (it, rms_db)  # loudness-normalised to -20 dBFS


@needs_synths
def test_synthesize_words_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no voice 'nope'"):
        abx.synthesize_words(["bat"], str(tmp_path), voices=[("flite", "nope")])
    with pytest.raises(RuntimeError, match="espeak-ng"):
        abx.synthesize_words(["bat"], str(tmp_path), voices=[("espeak-ng", "nope")])
    real_which = shutil.which
    monkeypatch.setattr(
        abx.shutil, "which", lambda name: None if name == "espeak-ng" else real_which(name)
    )
    with pytest.raises(FileNotFoundError, match="espeak-ng"):
        abx.synthesize_words(["bat"], str(tmp_path))


def test_trim_silence():
    rate = 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate)
    wav = np.concatenate([np.zeros(rate), tone, 1e-6 * np.ones(rate)]).astype(np.float32)
    out = abx.trim_silence(wav, rate)
    assert len(tone) <= len(out) <= len(tone) + 2 * int(abx.TRIM_PAD_S * rate) + 160
    with pytest.raises(ValueError):
        abx.trim_silence(np.zeros(1000, np.float32), rate)


@needs_synths
def test_log_mel_abx_better_than_chance(tmp_path):
    items = abx.synthesize_words(abx.WORDS, str(tmp_path))
    for it in items:
        it["rep"] = abx.log_mel_frames(dsp.read_audio(it["path"])[0])
    res = abx.abx_error(items, abx.feature_dtw)
    print(
        f"\nlog-mel ABX on {len(abx.WORDS)} words: across {res['across']['error']:.1f}% "
        f"{res['across']['per_direction']}, within {res['within']['error']:.1f}% "
        f"{res['within']['per_synth']}"
    )
    assert res["across"]["error"] < 50.0
    assert res["within"]["error"] < 50.0
