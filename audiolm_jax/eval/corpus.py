"""A labelled English test corpus from Debian's speech synthesisers, for reports by group.

AudioLM's continuations were judged best for US English accents (arXiv:2209.03143, sec. 6);
to see such a gap in one's own model, every clip here carries a speaker, an accent and a
language label. espeak-ng speaks several English accents with one engine; flite's four voices
are three US speakers and one Scottish one (awb). Sentences are not in the quickstart's
training corpus (audiolm_jax/data/make_corpus.py), and their text is kept for word error rates.

    entries = write_labelled_corpus("runs/eval/corpus")   # writes WAVs + labels.json
    entries[0]  # {"clip", "path", "text", "speaker", "accent", "language", "synthesizer"}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from audiolm_jax import dsp
from audiolm_jax.data.make_corpus import level, speak

# (synthesizer, voice, accent): flite voices by their speakers (slt, rms, kal: US English;
# awb: Scottish English, CMU ARCTIC's documentation), espeak-ng by its English accents.
ACCENT_VOICES: tuple[tuple[str, str, str], ...] = (
    ("flite", "slt", "en-us"),
    ("flite", "rms", "en-us"),
    ("flite", "kal", "en-us"),
    ("flite", "awb", "en-gb-scotland"),
    ("espeak-ng", "en-us", "en-us"),
    ("espeak-ng", "en-gb", "en-gb"),
    ("espeak-ng", "en-gb-x-rp", "en-gb"),
    ("espeak-ng", "en-gb-scotland", "en-gb-scotland"),
    ("espeak-ng", "en-029", "en-029"),
)

# Short, common-word sentences (about 2 s each) that a small recogniser knows.
EVAL_SENTENCES: tuple[str, ...] = (
    "the boy was there when the sun rose",
    "a rod is used to catch pink salmon",
    "the birch canoe slid on the smooth planks",
    "glue the sheet to the dark blue background",
    "it is easy to tell the depth of a well",
    "these days a chicken leg is a rare dish",
)


def write_labelled_corpus(
    out_dir: str,
    *,
    voices: Sequence[tuple[str, str, str]] = ACCENT_VOICES,
    sentences: Sequence[str] = EVAL_SENTENCES,
    per_voice: int = 2,
    sample_rate: int = 16000,
) -> list[dict]:
    """Synthesises `per_voice` sentences with each (synthesizer, voice, accent) of `voices`
    (sentence i of voice v is sentences[(v + i) % len], so every sentence gets several voices),
    resampled to `sample_rate`, at -20 dBFS, into `out_dir/<clip>.wav`, and writes
    `out_dir/labels.json`. An existing labels.json with the same request is reused. Returns
    one entry per clip: {clip, path, text, speaker, accent, language, synthesizer}."""
    request = {
        "voices": [list(v) for v in voices],
        "sentences": list(sentences),
        "per_voice": per_voice,
        "sample_rate": sample_rate,
    }
    labels = os.path.join(out_dir, "labels.json")
    if os.path.exists(labels):
        with open(labels) as f:
            saved = json.load(f)
        if saved.get("request") == request and all(
            os.path.exists(e["path"]) for e in saved["entries"]
        ):
            return saved["entries"]
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for v, (synth, voice, accent) in enumerate(voices):
        speaker = f"{synth.split('-')[0]}_{voice}"
        for i in range(per_voice):
            text = sentences[(v + i) % len(sentences)]
            wav = level(speak(synth, voice, text, sample_rate))
            clip = f"{speaker}_{i}"
            path = os.path.abspath(os.path.join(out_dir, f"{clip}.wav"))
            dsp.write_audio(path, wav, sample_rate)
            entries.append(
                dict(
                    clip=clip,
                    path=path,
                    text=text,
                    speaker=speaker,
                    accent=accent,
                    language="en",
                    synthesizer=synth,
                )
            )
    with open(labels, "w") as f:
        json.dump({"request": request, "entries": entries}, f, indent=2)
    return entries
