"""Musical key of audio from its chroma: does a piano continuation stay in the prompt's key?

    from audiolm_jax.eval import key

    name, r = key.estimate_key(wav, 16000)       # e.g. ("E minor", 0.91)
    key.same_key(name, "G major", relative_ok=True)
    key.in_key_fraction(wav, 16000, "E minor")   # share of chroma on the key's scale

`estimate_key` is the Krumhansl-Schmuckler method: the time-summed chroma is correlated with the
Krumhansl-Kessler major and minor key profiles rotated to each of the 12 tonics; the best of the
24 wins. Relative keys (C major / A minor) share a scale, so they are the usual confusion; pass
`relative_ok=True` to `same_key` to count them as one. Key names are those of
`audiolm_jax.data.piano.KEYS` ("C# major", "A minor"); flats are accepted as input.

Needs librosa (numba: its first use in a fresh environment compiles for a while, later runs load
numba's cache). No TensorFlow or JAX.
"""

from __future__ import annotations

import numpy as np

from audiolm_jax.data.piano import KEYS, key_name, parse_key, scale_pitch_classes

# Krumhansl & Kessler (1982), "Tracing the dynamic changes in perceived tonal organization in a
# spatial representation of musical keys", Psychological Review 89(4): probe-tone ratings of the
# 12 pitch classes from the tonic up, for major and minor key contexts.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# Chroma: constant-Q (librosa.feature.chroma_cqt) rather than STFT chroma. The CQT resolves a
# third of a semitone at every pitch, where a 16 kHz STFT needs a long window to separate
# semitones at G3 (~11 Hz apart); and with this hop and range it is cheap enough: measured
# ~0.05 s for 8 s of 16 kHz audio on one CPU core (chroma_stft, n_fft 4096: ~0.03 s). C2-C8
# holds the piano corpus' fundamentals (G3-C6) and their strong partials and stays below 8 kHz,
# the Nyquist at 16 kHz. Tuning is estimated per clip (librosa's default), so slightly detuned
# generated audio still maps onto the right pitch classes.
_HOP = 1024  # 64 ms at 16 kHz: keys change slowly
_FMIN_NOTE = "C2"
_OCTAVES = 6


def chroma(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Unnormalised constant-Q chroma [12, frames] (C = row 0) of mono audio: the CQT's
    magnitudes summed per pitch class, so louder frames weigh more."""
    import librosa

    wav = np.asarray(wav, np.float32).reshape(-1)
    if wav.size == 0 or not np.all(np.isfinite(wav)):
        raise ValueError("chroma needs non-empty, finite audio")
    octaves = _OCTAVES
    fmin = librosa.note_to_hz(_FMIN_NOTE)
    while octaves > 1 and fmin * 2**octaves > sample_rate / 2:  # low rates: fewer octaves
        octaves -= 1
    return librosa.feature.chroma_cqt(
        y=wav, sr=sample_rate, hop_length=_HOP, fmin=fmin, n_octaves=octaves, norm=None
    )


def key_correlations(profile: np.ndarray) -> dict[str, float]:
    """Pearson correlation of a 12-bin pitch-class profile (C first) with each of the 24 key
    profiles, keyed by the names in KEYS."""
    profile = np.asarray(profile, np.float64).reshape(12)
    out = {}
    for name in KEYS:
        tonic, mode = parse_key(name)
        template = np.roll(KK_MAJOR if mode == "major" else KK_MINOR, tonic)
        if np.std(profile) == 0:
            out[name] = 0.0  # silence or a flat profile: no key
        else:
            out[name] = float(np.corrcoef(profile, template)[0, 1])
    return out


def profile_key(profile: np.ndarray) -> tuple[str, float]:
    """(key name, Pearson correlation) of the best of the 24 Krumhansl-Kessler key profiles for
    a 12-bin pitch-class profile (C first), e.g. time-summed chroma."""
    scores = key_correlations(profile)
    best = max(KEYS, key=lambda k: scores[k])  # ties: the first in KEYS
    return best, scores[best]


def estimate_key(wav: np.ndarray, sample_rate: int) -> tuple[str, float]:
    """(key name, Pearson correlation) of the best of the 24 Krumhansl-Kessler key profiles for
    the audio's time-summed chroma."""
    return profile_key(chroma(wav, sample_rate).sum(axis=1))


def relative_key(key: str) -> str:
    """The relative minor of a major key, or the relative major of a minor key."""
    tonic, mode = parse_key(key)
    return key_name(tonic - 3, "minor") if mode == "major" else key_name(tonic + 3, "major")


def same_key(a: str, b: str, *, relative_ok: bool = False) -> bool:
    """Whether key names `a` and `b` are the same key (enharmonic spellings and "_" for " "
    allowed); with `relative_ok`, a major key and its relative minor count as the same."""
    if parse_key(a) == parse_key(b):
        return True
    return relative_ok and parse_key(relative_key(a)) == parse_key(b)


def in_key_fraction(wav: np.ndarray, sample_rate: int, key: str) -> float:
    """The fraction of the audio's chroma (CQT magnitude summed over time) on the key's scale
    pitch classes: natural major, or natural minor plus the leading tone (8 classes; see
    `piano.scale_pitch_classes`). About 7/12 for noise; near 1 for music in the key."""
    return profile_in_key_fraction(chroma(wav, sample_rate).sum(axis=1), key)


def profile_in_key_fraction(profile: np.ndarray, key: str) -> float:
    """`in_key_fraction` of a 12-bin pitch-class profile (C first), e.g. time-summed chroma."""
    total = np.asarray(profile, np.float64).reshape(12)
    if total.sum() <= 0:
        return 0.0
    scale = sorted(scale_pitch_classes(key))
    return float(total[scale].sum() / total.sum())
