"""A procedural piano-melody corpus: no download, deterministic by seed.

Used to train a tiny AudioLM piano pipeline and to test that its continuations stay in the
prompt's key (`audiolm_jax.eval.key` estimates the key of audio). Every piece is a melody in one
of the 24 major/minor keys, drawn from that key's scale, and rendered by a small additive
piano-like synth, so a piece's chroma clearly expresses its key.

    import numpy as np
    from audiolm_jax.data import piano

    notes = piano.melody("E minor", 8.0, np.random.default_rng(0))
    wav = piano.render(notes, 16000, seconds=8.0)  # float32 [128000], RMS -20 dBFS
    entries = piano.write_corpus("/tmp/piano", n_pieces=48, seconds=10.0, seed=0)

Melodies (`melody`): 4/4 phrases of two bars over a simple harmony (I or IV, then I, IV or V7;
a phrase ends on the tonic, or on the fifth over V7); notes move mostly by step along the scale,
with occasional leaps (a leap is usually followed by a step back), downbeat notes are often chord
tones, and everything stays in MIDI 55-84 (G3-C6). About half the bar downbeats carry a softer
dyad or triad of the bar's chord; the piece ends on the tonic, melody and chord. Minor melodies
use the natural or the harmonic minor scale (one per piece); their chords use the harmonic minor
(V7 has the leading tone), as in common-practice music. With 7 s pieces,
`audiolm_jax.eval.key.estimate_key` names the right key of about 95% of pieces (the misses are
mostly the relative or parallel key).

Corpus layout (`write_corpus`): `<directory>/<key with "_" for " ">/piece_<i:04d>.wav` (16-bit
PCM, mono) and `<directory>/corpus.json`, a JSON list of {"path" (relative to directory), "key",
"seconds", "tempo_bpm"}. Read with `audiolm_jax.data.sources` (layout "folder"), each file's
speaker id is its key folder, e.g. "C#_major": the speaker split (`split_speakers`) holds out
whole keys, so validation pieces are in keys the training pieces never use. Piece i is in key
`keys[i % len(keys)]`, so keys are used evenly, and its notes depend only on (seed, i).
"""

from __future__ import annotations

import json
import os

import numpy as np

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KEYS = tuple(f"{p} major" for p in PITCH_CLASSES) + tuple(f"{p} minor" for p in PITCH_CLASSES)

# Semitones above the tonic of each scale degree.
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
HARMONIC_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)  # raised 7th: the leading tone

_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E"}
_FLATS.update({"E#": "F", "B#": "C"})

LOW_MIDI, HIGH_MIDI = 55, 84  # G3-C6: a comfortable right-hand range
_TONIC_LOW = 62  # melodies wander around their tonic in D4-C#5
_BEATS_PER_BAR = 4
_PHRASE_BARS = 2
# Note lengths in beats and how often each is drawn (mostly quarters and eighths).
_DURATIONS = np.array([0.5, 1.0, 1.5, 2.0])
_DURATION_P = np.array([0.35, 0.4, 0.1, 0.15])
# Melodic intervals in scale steps (sign chosen separately) and their probabilities: mostly
# steps, some repeats and thirds, a few fourths/fifths.
_INTERVALS = np.array([0, 1, 2, 3, 4])
_INTERVAL_P = np.array([0.1, 0.62, 0.18, 0.06, 0.04])
_LEGATO = 0.92  # a note sounds for this fraction of its written length (then the release)
_CHORD_P = 0.5  # chance of a chord on a bar's downbeat
_CHORD_TONE_P = 0.6  # chance that a downbeat's melody note is moved to the nearest chord tone
_TONIC_ENDING_P = 0.7  # phrases end on the tonic, else on the fifth (the last always on the tonic)

# Synth (`render`).
_HARMONICS = 8
_INHARMONICITY = 1e-4  # B in f_n = n f0 sqrt(1 + B n^2) (piano strings: 1e-4-ish mid-range)
_ATTACK_S = 0.005
_RELEASE_S = 0.05
_TAU1_S = 1.2  # decay time constant of the fundamental at middle C; lower notes ring longer
_PEAK_DBFS = -1.0  # the peak never goes above this
_RMS_DBFS = -20.0  # target loudness (the level `sources` normalises examples to)


def parse_key(name: str) -> tuple[int, str]:
    """(tonic pitch class 0-11 with C = 0, "major" | "minor") of a key name such as "C# major",
    "Db major", "a minor" or the folder form "C#_major". Raises ValueError otherwise."""
    parts = name.replace("_", " ").split()
    if len(parts) != 2 or parts[1].lower() not in ("major", "minor"):
        raise ValueError(f"not a key name: {name!r} (expected e.g. 'C# major' or 'A minor')")
    tonic = parts[0][:1].upper() + parts[0][1:]
    tonic = _FLATS.get(tonic, tonic)
    if tonic not in PITCH_CLASSES:
        raise ValueError(f"unknown tonic {parts[0]!r} in key name {name!r}")
    return PITCH_CLASSES.index(tonic), parts[1].lower()


def key_name(tonic: int, mode: str) -> str:
    """The canonical name (as in KEYS) of a tonic pitch class and mode."""
    return f"{PITCH_CLASSES[tonic % 12]} {mode}"


def scale_pitch_classes(key: str, *, leading_tone: bool = True) -> frozenset[int]:
    """The key's scale as pitch classes: natural major, or natural minor plus (with
    `leading_tone`) the harmonic minor's raised 7th, since minor melodies use both."""
    tonic, mode = parse_key(key)
    steps = set(MAJOR_SCALE if mode == "major" else NATURAL_MINOR_SCALE)
    if mode == "minor" and leading_tone:
        steps.add(11)
    return frozenset((tonic + s) % 12 for s in steps)


def _folder(key: str) -> str:
    return key_name(*parse_key(key)).replace(" ", "_")


def _phrase_lengths(total_beats: float) -> list[float]:
    """Phrase lengths in beats filling the whole beats of a piece: two-bar phrases, the rest a
    shorter last phrase (at least a bar) or added to the one before; the piece always ends with
    a phrase's final note."""
    whole = int(np.floor(total_beats + 1e-9))
    if whole < 1:
        return [total_beats]
    full = _BEATS_PER_BAR * _PHRASE_BARS
    lengths = [float(full)] * (whole // full)
    rest = whole % full
    if rest >= _BEATS_PER_BAR or not lengths:
        lengths.append(float(rest))
    elif rest:
        lengths[-1] += rest
    return lengths


def melody(
    key: str, seconds: float, rng: np.random.Generator, tempo_bpm: float = 100.0
) -> list[tuple[int, float, float, int]]:
    """A melody in `key` filling `seconds`: [(midi_pitch, start_s, dur_s, velocity)] sorted by
    start (chord notes share their start). See the module docstring for the style. The piece
    ends on the tonic (melody and chord) at the last whole beat; sound is cut at `seconds`."""
    if seconds <= 0 or tempo_bpm <= 0:
        raise ValueError(f"need seconds > 0 and tempo_bpm > 0, got {seconds}, {tempo_bpm}")
    tonic, mode = parse_key(key)
    if mode == "major":
        scale = harmony_scale = MAJOR_SCALE
    else:  # the melody's minor scale is drawn; chords always use the leading tone (V, not v)
        scale = HARMONIC_MINOR_SCALE if rng.random() < 0.5 else NATURAL_MINOR_SCALE
        harmony_scale = HARMONIC_MINOR_SCALE
    beat = 60.0 / tempo_bpm
    # Degree 0 is the tonic in D4-C#5, the middle of the range: the melody wanders around it.
    base = _TONIC_LOW + (tonic - _TONIC_LOW) % 12

    def pitch(degree: int, scale=scale) -> int:
        return base + 12 * (degree // 7) + scale[degree % 7]

    degrees = [d for d in range(-21, 22) if LOW_MIDI <= pitch(d) <= HIGH_MIDI]
    lo, hi = degrees[0], degrees[-1]
    half_range = max(1.0, (hi - lo) / 2)
    centre = 0.0

    def nearest(targets: tuple[int, ...], near: int) -> int:
        """The degree in [lo, hi] nearest `near` whose scale step is one of `targets`."""
        return min((d for d in degrees if d % 7 in targets), key=lambda d: (abs(d - near), d))

    def chord(root_degree: int, triad: bool) -> list[int]:
        """A close-position triad or a root-and-third dyad on a scale step, root in G3-F#4. The
        dominant's triad is a seventh chord without its fifth (V7: root, third, seventh): its
        leading tone and 4th degree pin the key down against the neighbouring keys."""
        root = LOW_MIDI + (pitch(root_degree, harmony_scale) - LOW_MIDI) % 12
        steps = ((0, 2, 6) if root_degree == 4 else (0, 2, 4)) if triad else (0, 2)
        return [
            root + pitch(root_degree + s, harmony_scale) - pitch(root_degree, harmony_scale)
            for s in steps
        ]

    notes: list[tuple[int, float, float, int]] = []
    phrases = _phrase_lengths(seconds / beat)
    degree = nearest((0, 2, 4), 0)  # start on the tonic
    prev, last_leap = degree, 0
    phrase_start = 0.0
    for k, length in enumerate(phrases):
        last_phrase = k == len(phrases) - 1
        n_bars = max(1, int(np.ceil(length / _BEATS_PER_BAR)))
        # The phrase's goal and harmony (a chord's root scale step per bar): a full cadence
        # (melody to the tonic) or a half cadence (melody to the fifth, over the dominant). The
        # first bar is the tonic or the subdominant, later ones any of I, IV, V. The subdominant
        # and V7 keep the 4th degree and the leading tone in the chroma, so the key is not
        # mistaken for its neighbours on the circle of fifths.
        cadence = 0 if last_phrase or rng.random() < _TONIC_ENDING_P else 4
        harmony = [0 if rng.random() < 0.65 else 3]
        harmony += [int(rng.choice([0, 3, 4], p=[0.45, 0.25, 0.3])) for _ in range(n_bars - 1)]
        if cadence == 4:
            harmony[-1] = 4
        if last_phrase:
            harmony[-1] = 0
        # Rhythm: (start beat, length) pairs; the last note fills the phrase (1 to 3 beats).
        pos, line = 0.0, []
        while True:
            d = float(rng.choice(_DURATIONS, p=_DURATION_P))
            if length - pos - d < 1.0:
                break
            line.append((pos, d))
            pos += d
        line.append((pos, length - pos))
        for j, (pos, d) in enumerate(line):
            downbeat = pos % _BEATS_PER_BAR == 0
            if j == len(line) - 1:
                degree = nearest((cadence,), degree)
            else:
                if j > 0 or k > 0:
                    step = int(rng.choice(_INTERVALS, p=_INTERVAL_P))
                    if abs(last_leap) >= 2 and rng.random() < 0.7:
                        up = last_leap < 0  # a leap is usually followed by a step back
                        step = 1
                    else:  # pulled back towards the middle of the range
                        up = rng.random() < 0.5 - 0.35 * (degree - centre) / half_range
                    new = degree + (step if up else -step)
                    if not lo <= new <= hi:
                        new = degree - (step if up else -step)
                    degree = min(max(new, lo), hi)
                if downbeat and rng.random() < _CHORD_TONE_P:
                    root = harmony[int(pos // _BEATS_PER_BAR)]  # a chord tone on the downbeat
                    degree = nearest(tuple((root + s) % 7 for s in (0, 2, 4)), degree)
            last_leap, prev = degree - prev, degree
            velocity = int(np.clip(rng.integers(64, 92) + (10 if downbeat else 0), 1, 127))
            start = (phrase_start + pos) * beat
            notes.append((pitch(degree), start, d * beat * _LEGATO, velocity))
        # Soft chords on some bar downbeats; the piece's last bar always has the tonic chord.
        for bar, root in enumerate(harmony):
            final = last_phrase and bar == n_bars - 1
            if not (final or rng.random() < _CHORD_P):
                continue
            at = bar * _BEATS_PER_BAR
            held = min(length - at, _BEATS_PER_BAR if final or rng.random() < 0.5 else 2)
            velocity = int(rng.integers(56, 76))
            for p in chord(root, triad=rng.random() < 0.6):
                notes.append((p, (phrase_start + at) * beat, held * beat * _LEGATO, velocity))
        phrase_start += length

    out = []
    for p, start, dur, vel in sorted(notes, key=lambda n: (n[1], n[0])):
        if start < seconds:
            out.append((int(p), float(start), float(min(dur, seconds - start)), int(vel)))
    return out


def render(
    notes: list[tuple[int, float, float, int]],
    sample_rate: int = 16000,
    seconds: float | None = None,
) -> np.ndarray:
    """Float32 [samples] audio of `notes` by a piano-like additive synth: each note is 8
    slightly inharmonic partials (f_n = n f0 sqrt(1 + B n^2), B = 1e-4) with per-partial
    exponential decay (higher partials decay faster, lower notes ring longer), a 5 ms attack and a
    50 ms release after the note's end. Louder notes are brighter. The mix is scaled to -20 dBFS
    RMS unless that would put its peak above -1 dBFS (then the peak sits at -1 dBFS). Length:
    `seconds` if given (later sound is cut), else up to the end of the last release."""
    if seconds is not None:
        n_out = int(round(seconds * sample_rate))
    else:
        n_out = int(np.ceil(max((s + d for _, s, d, _ in notes), default=0.0) * sample_rate))
        n_out += int(round(_RELEASE_S * sample_rate)) if notes else 0
    out = np.zeros(n_out, np.float64)
    n = np.arange(1, _HARMONICS + 1, dtype=np.float64)[:, None]  # [H, 1]
    attack = max(1, int(round(_ATTACK_S * sample_rate)))
    release = max(1, int(round(_RELEASE_S * sample_rate)))
    for pitch, start, dur, velocity in notes:
        a = int(round(start * sample_rate))
        if a >= n_out or dur <= 0:
            continue
        held = max(1, int(round(dur * sample_rate)))
        length = min(held + release, n_out - a)
        t = np.arange(length, dtype=np.float64)[None, :] / sample_rate  # [1, L]
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
        freqs = n * f0 * np.sqrt(1 + _INHARMONICITY * n**2)
        v = min(max(velocity, 1), 127) / 127
        amps = n ** -(1.8 - 0.8 * v)  # louder: flatter spectrum
        amps = np.where(freqs < 0.45 * sample_rate, amps, 0.0)  # nothing near Nyquist
        tau1 = _TAU1_S * np.clip((261.63 / f0) ** 0.6, 0.4, 2.5)
        taus = tau1 / (1 + 0.7 * (n - 1))  # higher partials decay faster
        partials = np.sin(2 * np.pi * freqs * t) * np.exp(-t / taus)  # [H, L]
        wave = (amps[:, 0] * v**1.5) @ partials
        env = np.ones(length)
        ramp = min(attack, length)
        env[:ramp] = np.linspace(0.0, 1.0, ramp, endpoint=False)
        if held < length:  # the release: a raised-cosine fade over 50 ms after the note's end
            k = np.arange(length - held)
            env[held:] = 0.5 * (1 + np.cos(np.pi * np.minimum(k / release, 1.0)))
        out[a : a + length] += wave * env
    rms = float(np.sqrt(np.mean(out**2))) if n_out else 0.0
    if rms > 0:
        peak = float(np.max(np.abs(out)))
        gain = min(10 ** (_RMS_DBFS / 20) / rms, 10 ** (_PEAK_DBFS / 20) / peak)
        out *= gain
    return out.astype(np.float32)


def write_corpus(
    directory: str,
    *,
    n_pieces: int = 96,
    seconds: float = 10.0,
    sample_rate: int = 16000,
    seed: int = 0,
    keys=KEYS,
) -> list[dict]:
    """Writes `n_pieces` rendered melodies and `corpus.json` under `directory` (layout in the
    module docstring; existing files of the same names are overwritten) and returns the
    corpus.json entries {"path", "key", "seconds", "tempo_bpm"}. Piece i is in key
    `keys[i % len(keys)]` at a tempo drawn from 84-120 bpm; its audio depends only on
    (seed, i, seconds, sample_rate)."""
    import soundfile

    keys = [key_name(*parse_key(k)) for k in keys]
    if not keys:
        raise ValueError("keys is empty")
    if n_pieces < 0 or seconds <= 0:
        raise ValueError(f"need n_pieces >= 0 and seconds > 0, got {n_pieces}, {seconds}")
    os.makedirs(directory, exist_ok=True)
    entries = []
    for i in range(n_pieces):
        key = keys[i % len(keys)]
        rng = np.random.default_rng([seed, i])
        tempo = float(round(rng.uniform(84.0, 120.0), 1))
        wav = render(melody(key, seconds, rng, tempo_bpm=tempo), sample_rate, seconds=seconds)
        rel = f"{_folder(key)}/piece_{i:04d}.wav"
        path = os.path.join(directory, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        soundfile.write(path, np.clip(wav, -1.0, 1.0), sample_rate, "PCM_16")
        entries.append({"path": rel, "key": key, "seconds": float(seconds), "tempo_bpm": tempo})
    with open(os.path.join(directory, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=1)
    return entries
