"""Offline metrics of audio quality and intelligibility, over NumPy arrays.

    from audiolm_jax.eval import metrics

    metrics.mel_distance(ref, est, 16000)   # 0 = identical, lower is better
    metrics.si_sdr(ref, est)                # dB, higher is better
    metrics.stoi(ref, est, 16000)           # ~0..1, higher is better
    metrics.visqol(ref, est, 16000)         # MOS-LQO 1..5, higher is better
    metrics.dnsmos(wav, 16000)              # {"dnsmos_ovrl": .., ...}: MOS 1..5, no reference
    metrics.wer("the cat sat", "the cat sat down")   # 0.33, lower is better

Waveforms are mono float arrays `[samples]` in [-1, 1] with their sample rate. The
full-reference metrics (mel distance, SI-SDR, STOI, ViSQOL) compare `est` against `ref` sample
for sample, so both must have the same length; a silent `ref` (RMS under -100 dBFS, quieter than
16-bit PCM's quantisation noise) has no meaningful score and raises ValueError, as do a wrong
rank, integer samples, NaN or infinite samples, and empty audio. `DIRECTIONS` says for each
metric name whether higher or lower is better (the eval report ranks groups by it).

STOI, ViSQOL and DNSMOS come from `pystoi`, `visqol-python` and `speechmos` (models in their
wheels; `pip install "audiolm-jax[eval]"`), imported on first use so `import audiolm_jax.eval`
stays light. No TensorFlow here.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from audiolm_jax import dsp

# Whether a larger value of each metric is better ("higher") or worse ("lower").
DIRECTIONS: dict[str, str] = {
    "mel_distance": "lower",
    "si_sdr": "higher",
    "stoi": "higher",
    "visqol": "higher",
    "dnsmos_sig": "higher",
    "dnsmos_bak": "higher",
    "dnsmos_ovrl": "higher",
    "dnsmos_p808": "higher",
    "wer": "lower",
    "speaker_similarity": "higher",
}

# -100 dBFS: below the quantisation noise of 16-bit PCM (about -101 dBFS RMS), so nothing quieter
# is a recording of anything.
SILENCE_RMS = 1e-5


def _import(module: str, pip_name: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{module} is needed for this metric: pip install {pip_name} "
            '(or pip install "audiolm-jax[eval]")'
        ) from e


def check_rate(sample_rate, name: str = "sample_rate") -> int:
    """`sample_rate` as a positive int; ValueError naming it otherwise."""
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or sample_rate <= 0:
        raise ValueError(f"{name} must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def check_waveform(wav, name: str, *, silent_ok: bool = True) -> np.ndarray:
    """A mono float waveform `[samples]` as float32; ValueError naming `name` for a wrong rank,
    integer samples, no samples, NaN/inf, or (unless `silent_ok`) silence."""
    x = np.asarray(wav)
    if x.ndim != 1:
        raise ValueError(
            f"{name} must be mono audio [samples], got shape {x.shape} "
            "(take one channel, or average the channels, first)"
        )
    if x.size == 0:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name} must hold float samples in [-1, 1], got dtype {x.dtype} "
            "(for 16-bit PCM divide by 32768)"
        )
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"{name} holds {bad} NaN or infinite samples of {x.size}")
    x = x.astype(np.float32)
    if not silent_ok:
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        if rms < SILENCE_RMS:
            level = 20 * np.log10(rms) if rms > 0 else -np.inf
            raise ValueError(
                f"{name} is silent (RMS {rms:.3g}, {level:.0f} dBFS, shape {x.shape}): "
                "a reference must hold sound for this metric to mean anything"
            )
    return x


def check_pair(ref, est) -> tuple[np.ndarray, np.ndarray]:
    """(ref, est) checked as mono float waveforms of equal length, `ref` not silent."""
    r = check_waveform(ref, "ref", silent_ok=False)
    e = check_waveform(est, "est")
    if r.shape != e.shape:
        raise ValueError(
            f"ref {r.shape} and est {e.shape} differ in length: this metric compares them "
            "sample for sample (trim or pad est to the reference's length)"
        )
    return r, e


def mel_distance(ref, est, sample_rate: int) -> float:
    """Multi-scale log-mel L1 distance between `est` and `ref`: the mean over STFT windows of
    2^6 .. 2^11 samples (hop 1/4 window, 64 Slaney mel bins, magnitudes clamped at 1e-5) of
    |log10 mel(ref) - log10 mel(est)| (`dsp.mel_distance`, the form DAC reports, Kumar et al.
    2023, "High-Fidelity Audio Compression with Improved RVQGAN"; the scales of SoundStream's
    loss, Zeghidour et al. 2021). Range [0, inf), 0 for identical signals; lower is better.
    Compiles once per signal length (about a second on a CPU)."""
    sr = check_rate(sample_rate)
    r, e = check_pair(ref, est)
    need = max(dsp.MEL_SCALES) // 2 + 1
    if r.size < need:
        raise ValueError(f"mel_distance needs at least {need} samples, got ref {r.shape}")
    return float(dsp.mel_distance(r[None], e[None], sr)[0])


def si_sdr(ref, est) -> float:
    """Scale-invariant signal-to-distortion ratio of `est` against `ref`, in dB (Le Roux,
    Wisdom, Erdogan, Hershey 2019, "SDR - half-baked or well done?", ICASSP): both made
    zero-mean, `est` projected on `ref`; 10 log10 of the projection's energy over the rest's.
    Range (-inf, inf), higher is better; white noise added at an SNR of s dB scores about s.
    Identical (or rescaled) signals give a large finite value (a 1e-12 floor: ~167 dB at unit
    variance) rather than inf, so means over many clips stay finite (`dsp.si_sdr`, the codec's
    own metric)."""
    r, e = check_pair(ref, est)
    return float(dsp.si_sdr(r[None], e[None])[0])


def stoi(ref, est, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility of `est` given the clean `ref` (Taal, Hendriks,
    Heusdens, Jensen 2011, IEEE TASLP 19(7); with `extended`, ESTOI, Jensen & Taal 2016), via
    `pystoi.stoi` (resamples to 10 kHz, drops silent frames). Range about [0, 1] (it can dip just
    below 0), 1 for identical signals; higher is better."""
    sr = check_rate(sample_rate)
    r, e = check_pair(ref, est)
    pystoi = _import("pystoi", "pystoi")
    return float(pystoi.stoi(r.astype(np.float64), e.astype(np.float64), sr, extended=extended))


@functools.lru_cache(maxsize=1)
def _visqol_api():
    visqol = _import("visqol", "visqol-python")
    api = visqol.VisqolApi()
    # The polynomial MOS mapping ships with the wheel; the lattice model needs ai-edge-litert
    # and would make scores depend on what else is installed.
    api.create(mode="speech", use_lattice_model=False)
    return api


def visqol(ref, est, sample_rate: int) -> float:
    """ViSQOL v3 speech-mode MOS-LQO of `est` against `ref` (Chinen, Lim, Skoglund, Gureev,
    O'Gorman, Hines 2020, "ViSQOL v3: an open source production ready objective speech and audio
    metric", QoMEX), via `visqol-python` with its polynomial MOS mapping. Both signals are
    resampled to 16 kHz (speech mode's rate). Range [1, 5], 5 for identical signals; higher is
    better."""
    sr = check_rate(sample_rate)
    r, e = check_pair(ref, est)
    r, e = dsp.resample(r, sr, 16000), dsp.resample(e, sr, 16000)
    result = _visqol_api().measure_from_arrays(r.astype(np.float64), e.astype(np.float64), 16000)
    return float(result.moslqo)


def dnsmos(wav, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 of `wav` alone (no reference; Reddy, Gopal, Cutler 2022, "DNSMOS P.835: a
    non-intrusive perceptual objective speech quality metric to evaluate noise suppressors",
    ICASSP), via `speechmos` (ONNX models in its wheel; onnxruntime). Keys: `dnsmos_sig` (speech
    signal), `dnsmos_bak` (background noise), `dnsmos_ovrl` (overall), and `dnsmos_p808` (the
    P.808 single-score model). Each a MOS in about [1, 5]; higher is better. Audio is resampled
    to 16 kHz; clips shorter than the model's 9.01 s window are repeated to fill it (speechmos'
    behaviour), longer ones are scored in 1 s hops and averaged."""
    sr = check_rate(sample_rate)
    x = check_waveform(wav, "wav", silent_ok=False)
    peak = float(np.max(np.abs(x)))
    if peak > 1.0:
        raise ValueError(f"wav must lie in [-1, 1] for DNSMOS, got a peak of {peak:.3g}")
    x = np.clip(dsp.resample(x, sr, 16000), -1.0, 1.0)  # resampling may overshoot slightly
    mos = _import("speechmos.dnsmos", "speechmos onnxruntime").run(x, 16000)
    return {f"dnsmos_{k}": float(mos[f"{k}_mos"]) for k in ("sig", "bak", "ovrl", "p808")}


# --- word error rate ------------------------------------------------------------------------------


def normalize_text(text: str) -> list[str]:
    """Words of `text` for scoring: Unicode NFKC, lower case, typographic apostrophes made plain,
    every character other than a letter, digit or in-word apostrophe a separator ("Hello,
    world!" -> ["hello", "world"]; "don't" stays one word; "twenty-one" is two). Numbers are not
    spelled out: "5" and "five" differ."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}: {text!r}")
    t = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"[^\w']+|_", " ", t)
    return [w for w in (w.strip("'") for w in t.split()) if w]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) of the word-level Levenshtein
    alignment of two normalised texts (`normalize_text`); sum both over a corpus for its WER."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    prev = list(range(len(hyp) + 1))  # edits of ref[:0] against each prefix of hyp
    for i, r in enumerate(ref, 1):
        row = [i]
        for j, h in enumerate(hyp, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = row
    return prev[-1], len(ref)


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """Word error rate, (S + D + I) / N, of `hypothesis` against `reference` over normalised
    words (`normalize_text`; the standard definition, e.g. NIST's sclite). Two lists of texts
    give the corpus WER: edits summed over pairs over words summed. Range [0, inf) (insertions can
    push it past 1), 0 for a perfect transcript; lower is better."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(refs) != len(hyps):
        raise ValueError(
            f"reference has {len(refs)} texts and hypothesis {len(hyps)}: pair them one to one"
        )
    edits = words = 0
    for r, h in zip(refs, hyps):
        e, n = word_errors(r, h)
        edits, words = edits + e, words + n
    if words == 0:
        raise ValueError(f"reference has no words to score against: {reference!r}")
    return edits / words
