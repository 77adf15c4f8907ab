"""Speech to text for word error rates, offline.

    from audiolm_jax.eval import asr, metrics

    text = asr.transcribe(wav, 16000)                        # pocketsphinx, English
    text = asr.transcribe(wav, 16000, recognizer=my_asr)     # any (wav, sr) -> str
    metrics.wer("the quick brown fox", text)

The default recogniser is CMU PocketSphinx 5 (Huggins-Daines et al. 2006, "PocketSphinx: a free,
real-time continuous speech recognition system for hand-held devices", ICASSP) with the US
English acoustic model, language model and CMUdict that ship in its wheel: nothing is
downloaded. It is a small HMM recogniser: it transcribes clean read speech such as flite's `slt`
voice almost perfectly, but other synthesisers, accents and telephone speech poorly, so its WER
compares systems on the same speech rather than measuring intelligibility in absolute terms. For
that, pass your own recogniser (e.g. a Whisper wrapper) as `recognizer`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from audiolm_jax import dsp
from audiolm_jax.eval.metrics import _import, check_rate, check_waveform

Recognizer = Callable[[np.ndarray, int], str]

_RATE = 16000  # the rate of pocketsphinx's bundled acoustic model


@functools.lru_cache(maxsize=1)
def _decoder():
    pocketsphinx = _import("pocketsphinx", "pocketsphinx")
    # Default hmm / lm / dict: the en-us models in the wheel.
    return pocketsphinx.Decoder(samprate=_RATE, loglevel="FATAL")


def pocketsphinx_recognizer(wav: np.ndarray, sample_rate: int) -> str:
    """Lower-case words PocketSphinx hears in mono float `wav` ("" for none): resampled to
    16 kHz, 16-bit PCM (clipped to [-1, 1]), decoded as one utterance. One decoder is shared
    per process: call it from one thread at a time."""
    x = dsp.resample(np.asarray(wav, np.float32), sample_rate, _RATE)
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


def transcribe(wav, sample_rate: int, recognizer: Recognizer | None = None) -> str:
    """The words spoken in mono float `wav` `[samples]` at `sample_rate`, as text.

    `recognizer` is any callable `(wav: float32 [samples], sample_rate: int) -> str`; None uses
    `pocketsphinx_recognizer` (offline, English). Silence is not an error: it transcribes to
    whatever the recogniser says (usually ""). Raises ValueError for a wrong rank, integer or
    non-finite samples, and TypeError if the recogniser returns something other than a str."""
    sr = check_rate(sample_rate)
    x = check_waveform(wav, "wav")
    text = (recognizer or pocketsphinx_recognizer)(x, sr)
    if not isinstance(text, str):
        raise TypeError(f"recognizer must return a str, returned {type(text).__name__}: {text!r}")
    return text
