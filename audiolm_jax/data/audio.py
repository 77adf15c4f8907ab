"""Batches of fixed-length audio clips from a folder of files held in memory: the codec's training
data for corpora that fit in RAM (the embedded corpus, a few hours of a user's own audio).
Corpus-scale reading goes through the tfds pipeline instead.

Each batch is a function of (seed, split, batch index, process), so the position saved with a
checkpoint is one integer and a resumed run sees the same clips.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from audiolm_jax import dsp

log = logging.getLogger("audiolm_jax")

CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def corpus_entries(split: str | None = None) -> list[dict]:
    """The embedded corpus' manifest entries (file, text, speaker, accent, split), with the
    file's absolute path; `split` = "train" | "eval" | None (all)."""
    with open(os.path.join(CORPUS_DIR, "corpus.json")) as f:
        files = json.load(f)["files"]
    out = []
    for e in files:
        if split is None or e["split"] == split:
            out.append({**e, "path": os.path.join(CORPUS_DIR, e["file"])})
    return out


def split_files(files: list[str], split: str, eval_every: int = 10) -> list[str]:
    """A folder's files divided by position: every `eval_every`-th file (sorted) is held out."""
    if split == "eval":
        return files[::eval_every]
    return [f for i, f in enumerate(files) if i % eval_every]


def load_clips(
    paths: list[str], sample_rate: int, normalize_db: float | None = -20.0
) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    """Reads files (mono, resampled, RMS-normalised to `normalize_db` dBFS); returns (waveforms,
    [(path, reason)] for files that could not be used). A bad file never stops the rest."""
    waves, bad = [], []
    for p in paths:
        try:
            wav, _ = dsp.read_audio(p, sample_rate)
        except ValueError as e:
            bad.append((p, str(e)))
            continue
        if normalize_db is not None:
            if float(np.sqrt(np.mean(wav**2))) < 1e-6:
                bad.append((p, "silent"))
                continue
            wav = dsp.normalize_loudness(wav, normalize_db)
        waves.append(wav.astype(np.float32))
    for p, why in bad:
        log.warning("Skipped audio file %s: %s", p, why)
    return waves, bad


class AudioClips:
    """Endless batches {"wav": [rows, clip_samples]}: random crops of random files (weighted by
    length); files shorter than a clip are zero-padded at the end.

    `rows` = batch_size / process_count: each process yields its own rows.

    `speed_perturb` = s > 0: each row is played at a random speed in [1 - s, 1 + s] (a longer or
    shorter piece resampled to the clip by linear interpolation, so pitch and tempo change
    together, as `sox speed` does; Ko et al. 2015, "Audio augmentation for speech
    recognition"). Training clips only: the eval split passes 0.
    """

    def __init__(
        self,
        waves: list[np.ndarray],
        *,
        clip_samples: int,
        batch_size: int,
        seed: int,
        split: str,
        process_index: int = 0,
        process_count: int = 1,
        speed_perturb: float = 0.0,
    ):
        if not 0.0 <= speed_perturb < 1.0:
            raise ValueError(f"data.speed_perturb must be in [0, 1), got {speed_perturb}")
        if not waves:
            raise ValueError(f"no usable audio for the {split} split")
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} not divisible by {process_count} processes")
        self.waves, self.clip = waves, int(clip_samples)
        self.rows = batch_size // process_count
        self.seed, self.split, self.process_index = seed, split, process_index
        lengths = np.array([len(w) for w in waves], np.float64)
        self.weights = lengths / lengths.sum()
        self.speed_perturb = float(speed_perturb)
        self.index = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        split_id = {"train": 0, "eval": 1}.get(self.split, 2)
        rng = np.random.default_rng([self.seed, split_id, self.index, self.process_index])
        out = np.zeros((self.rows, self.clip), np.float32)
        for r, i in enumerate(rng.choice(len(self.waves), self.rows, p=self.weights)):
            w = self.waves[i]
            speed = 1.0
            if self.speed_perturb:
                speed = float(rng.uniform(1 - self.speed_perturb, 1 + self.speed_perturb))
            span = int(np.ceil(self.clip * speed))
            start = int(rng.integers(0, max(len(w) - span, 0) + 1))
            piece = w[start : start + span]
            if speed != 1.0:
                at = np.arange(int(len(piece) / speed)) * speed
                piece = np.interp(at, np.arange(len(piece)), piece).astype(np.float32)
            piece = piece[: self.clip]
            out[r, : len(piece)] = piece
        self.index += 1
        return {"wav": out}

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])
