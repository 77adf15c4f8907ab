"""Regenerates the embedded speech corpus (audiolm_jax/data/corpus/) with flite and espeak-ng.

    python -m audiolm_jax.data.make_corpus      # needs Debian's flite and espeak-ng

The corpus is committed, so nothing here runs at training time: the quickstart and the tests read
the FLAC files. Eight voices from two synthesisers (four flite voices, four espeak-ng English
accents) read Harvard sentences (IEEE 1969 recommended practice, public domain); two voices are
held out for evaluation. `corpus.json` lists every file with its text, voice and accent, so
evaluation can group results by speaker and score recognisers against the text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from audiolm_jax import dsp

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
RATE = 16000

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
]

# (synthesiser, voice, accent label)
VOICES = [
    ("flite", "slt", "en-us"),
    ("flite", "awb", "en-gb-scotland"),
    ("flite", "kal16", "en-us"),
    ("flite", "rms", "en-us"),
    ("espeak-ng", "en-us+f3", "en-us"),
    ("espeak-ng", "en-gb+m3", "en-gb"),
    ("espeak-ng", "en-gb-scotland+m1", "en-gb-scotland"),
    ("espeak-ng", "en-029+f2", "en-029"),
]
HELD_OUT = {"flite_rms", "espeak-ng_en-029+f2"}
PER_VOICE = 6  # sentences each voice reads (a rotating subset: every sentence is read)


def synthesize(synth: str, voice: str, text: str, path: str) -> None:
    """Speaks `text` with Debian's `flite` (voice: slt, rms, ...) or `espeak-ng` (voice: en-us,
    en-gb+m3, ...) into the WAV `path`. A missing program is a FileNotFoundError with the
    package to install, an unknown synthesiser a ValueError, a failed run a RuntimeError with
    the program's message."""
    if synth == "flite":
        cmd = ["flite", "-voice", voice, "-t", text, "-o", path]
    elif synth == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", "150", "-w", path, text]
    else:
        raise ValueError(f"unknown synthesizer {synth!r}; use 'flite' or 'espeak-ng'")
    if shutil.which(synth) is None:
        raise FileNotFoundError(f"{synth} is not installed (Debian: apt-get install {synth})")
    out = subprocess.run(cmd, capture_output=True)
    if out.returncode != 0 or not os.path.exists(path):
        msg = out.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{synth} -v {voice} failed on {text!r}: {msg}")


def speak(synth: str, voice: str, text: str, sample_rate: int) -> np.ndarray:
    """`text` spoken by `synth`/`voice` (see `synthesize`), float32 at `sample_rate`."""
    with tempfile.TemporaryDirectory() as scratch:
        raw = os.path.join(scratch, "raw.wav")
        synthesize(synth, voice, text, raw)
        return dsp.read_audio(raw, sample_rate)[0]


def level(wav: np.ndarray, db: float = -20.0) -> np.ndarray:
    """`wav` scaled to `db` dBFS RMS and clipped to +-0.99, as every synthesised file is."""
    return np.clip(dsp.normalize_loudness(wav, db), -0.99, 0.99)


def main() -> None:
    os.makedirs(HERE, exist_ok=True)
    entries = []
    for v, (synth, voice, accent) in enumerate(VOICES):
        speaker = f"{synth}_{voice}"
        for j in range(PER_VOICE):
            s = (v * 3 + j) % len(SENTENCES)
            wav = level(speak(synth, voice, SENTENCES[s], RATE))
            name = f"{speaker.replace('+', '-')}_{s:02d}.flac"
            dsp.write_audio(os.path.join(HERE, name), wav, RATE)
            entries.append(
                dict(
                    file=name,
                    text=SENTENCES[s],
                    speaker=speaker,
                    synthesizer=synth,
                    accent=accent,
                    seconds=round(len(wav) / RATE, 3),
                    split="eval" if speaker in HELD_OUT else "train",
                )
            )
    with open(os.path.join(HERE, "corpus.json"), "w") as f:
        json.dump({"sample_rate": RATE, "files": entries}, f, indent=1)
    total = sum(e["seconds"] for e in entries)
    print(f"wrote {len(entries)} files, {total:.0f} s, to {HERE}")


if __name__ == "__main__":
    main()
