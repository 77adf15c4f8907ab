"""Offline eval metrics (audiolm_jax.eval): known answers on speech flite and espeak-ng make, the
same checks on real recordings where ../shared/audio is present, clear errors, and grouping.

flite and espeak-ng are Debian packages (.ci/run installs them); without them these tests fail.
"""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from audiolm_jax import dsp
from audiolm_jax.data.make_corpus import speak
from audiolm_jax.eval import (
    asr,
    dnsmos,
    group_metrics,
    mel_distance,
    si_sdr,
    speaker_similarity,
    stoi,
    transcribe,
    visqol,
    wer,
)

SHARED = REPO.parent / "shared" / "audio"
RATE = 16000

# Sentences PocketSphinx transcribes exactly in flite's slt voice (checked with pocketsphinx 5.1.1).
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "we also need a small plastic snake and a big toy frog for the kids",
    "i would like to make a reservation for two people tonight",
    "can you tell me how to get to the train station",
]
# (synthesiser, voice): four flite voices (kal is an 8 kHz voice) and two espeak-ng accents.
VOICES = [
    ("flite", "slt"),
    ("flite", "awb"),
    ("flite", "rms"),
    ("flite", "kal"),
    ("espeak-ng", "en-us+f3"),
    ("espeak-ng", "en-gb+m3"),
]


@pytest.fixture(scope="module")
def speech():
    """{(synth, voice, sentence index): 16 kHz float32 speech}: every voice reads sentences 0
    and 1, slt reads all four."""
    out = {}
    for synth, voice in VOICES:
        count = len(SENTENCES) if voice == "slt" else 2
        for i in range(count):
            out[synth, voice, i] = speak(synth, voice, SENTENCES[i], RATE)
    return out


def _with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """x plus white Gaussian noise scaled to `snr_db` against x's zero-mean energy."""
    noise = np.random.default_rng(seed).normal(size=x.shape)
    signal = x - x.mean()
    noise *= np.sqrt(np.sum(signal**2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def _low_pass(x: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / sr) > cutoff_hz] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def _real_speech() -> np.ndarray:
    """10 s of the real telephone conversation (both speakers), or a skip where it is absent."""
    path = SHARED / "conversation_16k.wav"
    if not path.exists():
        pytest.skip(f"{path} is absent (the project's own clone has no ../shared)")
    wav, _ = dsp.read_audio(str(path), RATE)
    return wav[int(6.5 * RATE) : int(16.5 * RATE)]


# --- known answers --------------------------------------------------------------------------------


def test_identical_signals_score_perfectly(speech):
    x = speech["flite", "slt", 0]
    assert mel_distance(x, x, RATE) == 0.0
    assert si_sdr(x, x) > 100  # a 1e-12 floor caps it (~167 dB); never inf or NaN
    assert si_sdr(x, 0.3 * x) > 100  # scale-invariant
    assert stoi(x, x, RATE) > 0.999
    assert visqol(x, x, RATE) > 4.9  # speech-mode MOS-LQO tops out at 5
    assert speaker_similarity(x, x, RATE) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("source", ["flite", "real"])
def test_metrics_follow_added_noise(speech, source):
    """White noise at a known SNR: SI-SDR reads it back within 0.1 dB, and every metric says
    20 dB SNR is better than 0 dB SNR (DNSMOS without a reference)."""
    if source == "real":
        x = _real_speech()
    else:
        x = np.concatenate([speech["flite", "slt", i] for i in range(3)])
    for snr in (0.0, 10.0, 20.0):
        assert abs(si_sdr(x, _with_noise(x, snr)) - snr) < 0.1, snr
    mild, harsh = _with_noise(x, 20.0), _with_noise(x, 0.0)
    assert 0 < mel_distance(x, mild, RATE) < mel_distance(x, harsh, RATE)
    assert stoi(x, mild, RATE) > stoi(x, harsh, RATE)
    assert 1.0 <= visqol(x, harsh, RATE) < visqol(x, mild, RATE) <= 5.0
    clean, noisy = dnsmos(x, RATE), dnsmos(np.clip(harsh, -1, 1), RATE)
    assert set(clean) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}
    assert all(1.0 <= v <= 5.0 for v in clean.values()), clean
    assert clean["dnsmos_ovrl"] > noisy["dnsmos_ovrl"] + 0.3, (clean, noisy)
    assert clean["dnsmos_bak"] > noisy["dnsmos_bak"] + 0.5, (clean, noisy)


def test_metrics_take_other_sample_rates(speech):
    """48 kHz in (resampled inside ViSQOL, STOI and DNSMOS): the same ordering holds."""
    x = dsp.resample(speech["flite", "slt", 0], RATE, 48000)
    mild, harsh = _with_noise(x, 20.0), _with_noise(x, 0.0)
    assert visqol(x, mild, 48000) > visqol(x, harsh, 48000)
    assert stoi(x, mild, 48000) > stoi(x, harsh, 48000)


# --- word error rate ------------------------------------------------------------------------------


def test_wer_known_answers():
    assert wer("the cat sat", "the cat sat") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(2 / 4)  # one substitution, one deletion
    assert wer("a b", "a b c") == pytest.approx(1 / 2)  # one insertion
    assert wer("a b", "x y z w") == pytest.approx(4 / 2)  # insertions push it past 1
    assert wer("Hello, World! It's  twenty-one", "hello world it\u2019s twenty one") == 0.0
    # corpus WER: edits summed over words summed, not a mean of sentence WERs
    assert wer(["a b c d", "e"], ["a b c d", "x"]) == pytest.approx(1 / 5)


def test_flite_speech_transcribes_and_degradation_raises_wer(speech):
    clean = [speech["flite", "slt", i] for i in range(len(SENTENCES))]
    hyps = [transcribe(x, RATE) for x in clean]
    assert wer(SENTENCES, hyps) <= 0.05, hyps
    # Heavy low-pass (telephone speech keeps 300-3400 Hz; this keeps under 400 Hz).
    degraded = [transcribe(_low_pass(x, RATE, 400.0), RATE) for x in clean]
    assert wer(SENTENCES, degraded) >= 0.5, degraded


def test_transcribe_takes_a_user_recognizer(speech):
    seen = {}

    def mine(wav, sr):
        seen.update(shape=wav.shape, dtype=wav.dtype, sr=sr)
        return "hello world"

    x = speech["flite", "slt", 0]
    assert transcribe(x, RATE, recognizer=mine) == "hello world"
    assert seen == {"shape": x.shape, "dtype": np.float32, "sr": RATE}
    with pytest.raises(TypeError, match="must return a str"):
        transcribe(x, RATE, recognizer=lambda wav, sr: ["hello"])
    assert transcribe(np.zeros(RATE, np.float32), RATE) == ""  # silence is not an error
    assert asr.pocketsphinx_recognizer(dsp.resample(x, RATE, 8000), 8000).startswith("the quick")


# --- speaker similarity ---------------------------------------------------------------------------


def test_speaker_similarity_ranks_same_voice_above_other_voices(speech):
    """Sentence 0 of each voice against sentence 1 of every voice: each voice's own pair scores
    above every pair of two different voices."""
    same, different = {}, {}
    for synth_a, va in VOICES:
        for synth_b, vb in VOICES:
            a, b = speech[synth_a, va, 0], speech[synth_b, vb, 1]
            (same if va == vb else different)[va, vb] = speaker_similarity(a, b, RATE)
    assert min(same.values()) > max(different.values()) + 0.02, (same, different)
    assert all(0.0 < s <= 1.0 for s in [*same.values(), *different.values()])
    a, b = speech["flite", "slt", 0], speech["flite", "awb", 1]
    assert speaker_similarity(a, b, RATE) == pytest.approx(speaker_similarity(b, a, RATE))
    assert speaker_similarity(a, 0.1 * a, RATE) == pytest.approx(1.0, abs=1e-6)  # level-free


def test_speaker_similarity_on_real_recordings():
    """A man's eight 48 kHz clips (alsa-utils) against the two women of the telephone
    conversation: each clip is closer, on average, to his other clips than to their turns.
    (Telling the two women apart is beyond this measure: module docstring.)"""
    clips = sorted(SHARED.glob("*_48k.wav"))
    clips = [c for c in clips if c.name != "noise_48k.wav"]
    stm = SHARED / "conversation_16k.stm"
    if len(clips) < 4 or not stm.exists():
        pytest.skip(f"real recordings absent under {SHARED} (the project's own clone has none)")
    man = [dsp.read_audio(str(c))[0] for c in clips]
    conv, _ = dsp.read_audio(str(SHARED / "conversation_16k.wav"), RATE)
    turns = []
    for line in stm.read_text().splitlines():
        start, end = (float(t) for t in line.split()[3:5])
        if end - start >= 1.0:
            turns.append(conv[int(start * RATE) : int(end * RATE)])
    for i, clip in enumerate(man):
        own = np.mean([speaker_similarity(clip, m, 48000) for j, m in enumerate(man) if j != i])
        others = [speaker_similarity(dsp.resample(clip, 48000, RATE), t, RATE) for t in turns]
        assert own > np.mean(others) + 0.02, (clips[i].name, own, others)


# --- errors ---------------------------------------------------------------------------------------

FULL_REFERENCE = {
    "mel_distance": lambda r, e: mel_distance(r, e, RATE),
    "si_sdr": si_sdr,
    "stoi": lambda r, e: stoi(r, e, RATE),
    "visqol": lambda r, e: visqol(r, e, RATE),
}


@pytest.mark.parametrize("metric", sorted(FULL_REFERENCE))
def test_full_reference_errors_name_the_argument(metric):
    fn = FULL_REFERENCE[metric]
    x = np.random.default_rng(0).normal(scale=0.1, size=RATE).astype(np.float32)
    with pytest.raises(ValueError, match=r"ref is silent .*shape \(16000,\)"):
        fn(np.zeros(RATE, np.float32), x)
    with pytest.raises(ValueError, match="ref is silent"):
        fn(np.full(RATE, 1e-7, np.float32), x)  # near-zero: far below 16-bit PCM's noise
    with pytest.raises(ValueError, match=r"ref \(16000,\) and est \(15999,\) differ in length"):
        fn(x, x[:-1])
    with pytest.raises(ValueError, match=r"est must be mono audio \[samples\], got shape \(2,"):
        fn(x, np.stack([x, x]))
    bad = x.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="est holds 1 NaN or infinite samples of 16000"):
        fn(x, bad)
    with pytest.raises(ValueError, match="ref must hold float samples.*int16"):
        fn((x * 32767).astype(np.int16), x)
    with pytest.raises(ValueError, match="ref is empty"):
        fn(np.zeros(0, np.float32), np.zeros(0, np.float32))


def test_other_errors_name_the_argument():
    x = np.random.default_rng(0).normal(scale=0.1, size=RATE).astype(np.float32)
    with pytest.raises(ValueError, match="wav is silent"):
        dnsmos(np.zeros(RATE, np.float32), RATE)
    with pytest.raises(ValueError, match="peak of 3"):
        dnsmos(x / np.abs(x).max() * 3, RATE)
    with pytest.raises(ValueError, match="sample_rate must be a positive whole number.*0"):
        stoi(x, x, 0)
    with pytest.raises(ValueError, match="b is silent"):
        speaker_similarity(x, np.zeros(RATE, np.float32), RATE)
    with pytest.raises(ValueError, match=r"a has \d+ active 10 ms frames, under the 38"):
        speaker_similarity(x[:2000], x, RATE)
    with pytest.raises(ValueError, match=r"wav must be mono audio.*\(1, 16000\)"):
        transcribe(x[None], RATE)
    with pytest.raises(ValueError, match="reference has no words"):
        wer("  ...  ", "something")
    with pytest.raises(ValueError, match="reference has 2 texts and hypothesis 1"):
        wer(["a", "b"], ["a"])


# --- grouping -------------------------------------------------------------------------------------

ROWS = [
    {"speaker": "a", "accent": "us", "seconds": 2.0, "wer": 0.0, "si_sdr": 10.0},
    {"speaker": "a", "accent": "us", "seconds": 3.0, "wer": 0.2, "si_sdr": 12.0},
    {"speaker": "b", "accent": "gb", "seconds": 2.5, "wer": 0.5, "si_sdr": 4.0},
    {"speaker": "c", "accent": "us", "seconds": 1.0, "si_sdr": np.float32(20.0)},  # no transcript
]


def test_group_metrics_by_speaker_and_accent():
    g = group_metrics(ROWS, by="speaker")
    assert list(g["groups"]) == ["a", "b", "c"]  # one entry per group
    assert g["groups"]["a"] == {
        "rows": 2,
        "mean": {"si_sdr": pytest.approx(11.0), "wer": pytest.approx(0.1)},
        "count": {"si_sdr": 2, "wer": 2},
    }
    assert g["groups"]["c"]["mean"] == {"si_sdr": 20.0}  # "seconds" has no direction: not scored
    assert g["groups"]["c"]["count"] == {"si_sdr": 1, "wer": 0}
    assert g["metrics"]["wer"] == {
        "direction": "lower",
        "best": "a",
        "worst": "b",
        "best_value": pytest.approx(0.1),
        "worst_value": pytest.approx(0.5),
        "spread": pytest.approx(0.4),
    }
    assert g["metrics"]["si_sdr"]["best"] == "c" and g["metrics"]["si_sdr"]["worst"] == "b"
    assert g["metrics"]["si_sdr"]["spread"] == pytest.approx(16.0)

    g = group_metrics(ROWS, by="accent")
    assert g["groups"]["us"]["rows"] == 3
    assert g["groups"]["us"]["mean"]["si_sdr"] == pytest.approx(42.0 / 3)
    assert g["metrics"]["si_sdr"]["spread"] == pytest.approx(42.0 / 3 - 4.0)
    assert g["metrics"]["wer"]["best"] == "us" and g["metrics"]["wer"]["worst"] == "gb"

    g = group_metrics(ROWS, by="accent", metrics=["seconds"], directions={"seconds": "lower"})
    assert g["metrics"]["seconds"]["best"] == "us"  # (2 + 3 + 1) / 3 = 2.0 < 2.5
    assert g["metrics"]["seconds"]["spread"] == pytest.approx(0.5)
    assert group_metrics(ROWS[:1], by="speaker")["metrics"]["wer"]["spread"] == 0.0


def test_group_metrics_errors():
    with pytest.raises(ValueError, match="no direction known for metrics \\['seconds'\\]"):
        group_metrics(ROWS, by="speaker", metrics=["seconds"])
    with pytest.raises(ValueError, match=r"rows\[1\] has no 'language' label"):
        group_metrics([{"language": "en", "wer": 0.1}, {"wer": 0.2}], by="language")
    with pytest.raises(ValueError, match=r"rows\[0\]\['wer'\] must be a finite number, got nan"):
        group_metrics([{"speaker": "a", "wer": float("nan")}], by="speaker")
    with pytest.raises(ValueError, match="rows is empty"):
        group_metrics([], by="speaker")


def test_eval_import_stays_light():
    """The optional metric packages load on first use; TensorFlow never."""
    code = (
        "import sys, audiolm_jax, audiolm_jax.eval; "
        "heavy = ('pystoi', 'visqol', 'speechmos', 'pocketsphinx', 'onnxruntime', 'tensorflow', "
        "'librosa'); bad = [m for m in sys.modules if m.split('.')[0] in heavy]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
