"""Evaluation of generated audio (e.g. `key`: does a piano continuation stay in the prompt's
key). No TensorFlow here.

Offline metrics over NumPy waveforms (`metrics`, `asr`, `speaker`; pystoi, visqol-python,
speechmos and pocketsphinx load on first use) and their grouping for the eval report (`report`):

    from audiolm_jax.eval import mel_distance, si_sdr, stoi, visqol, dnsmos, wer, transcribe
    from audiolm_jax.eval import speaker_similarity, group_metrics
"""

from audiolm_jax.eval.asr import transcribe
from audiolm_jax.eval.metrics import (
    DIRECTIONS,
    dnsmos,
    mel_distance,
    normalize_text,
    si_sdr,
    stoi,
    visqol,
    wer,
    word_errors,
)
from audiolm_jax.eval.report import group_metrics
from audiolm_jax.eval.speaker import speaker_similarity, speaker_statistics

__all__ = [
    "DIRECTIONS",
    "dnsmos",
    "group_metrics",
    "mel_distance",
    "normalize_text",
    "si_sdr",
    "speaker_similarity",
    "speaker_statistics",
    "stoi",
    "transcribe",
    "visqol",
    "wer",
    "word_errors",
]
