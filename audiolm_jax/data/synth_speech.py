"""A synthesised speech corpus: random sentences read by flite and espeak-ng voices, no download.

The embedded corpus (audiolm_jax/data/corpus/, 94 s of training speech: 10 sentences) is too
little for self-supervised pretraining: `w2v_bert_tiny` trained on it gave tokens whose
cross-synthesiser ABX error depended on the seed (lr 2e-3: 40-62 % over four seeds; lr 5e-4:
29-46 % over eight, against 36 % for k-means on log-mel frames). This module writes as much
speech as asked for, deterministically:

    from audiolm_jax.data import synth_speech

    root = synth_speech.ensure("/tmp/speech", utterances=600, seed=0)  # 29 min, ~6 s

Utterance i is read by voice `VOICES[i % len(VOICES)]` (five flite voices, ten espeak-ng
English voices and variants) and says 5-10 words drawn from `VOCABULARY` (common English words;
none of the ABX test's words, `audiolm_jax.semantic.abx.WORDS`, so that test stays on unseen
words); the text depends only on (seed, i). Files are `<root>/<synth>_<voice>/<i:05d>.flac`
(16 kHz, -20 dBFS RMS) beside `<root>/corpus.json` ({"utterances", "seed", "voices", "files":
[{"file", "text", "speaker", "seconds"}]}). Read it as a folder (`config.data.source="synth"`
does, `audiolm_jax.tasks.audio_sources`); a folder's speaker is its first sub-folder, the voice.

The corpus is built in a temporary folder next to `root` and renamed into place when complete,
so a killed build leaves no half corpus; `ensure` reuses a complete one with the same
parameters and refuses a `root` that holds anything else.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np

from audiolm_jax import dsp
from audiolm_jax.data.make_corpus import level, speak

log = logging.getLogger("audiolm_jax")

RATE = 16000

# (synthesiser, voice): every flite voice Debian's flite ships but the slow awb_time, and
# espeak-ng's English voices with some of its voice variants (+f1 .. +m7 change pitch and
# formants).
VOICES = (
    ("flite", "slt"),
    ("flite", "awb"),
    ("flite", "kal16"),
    ("flite", "kal"),
    ("flite", "rms"),
    ("espeak-ng", "en-us+f3"),
    ("espeak-ng", "en-us+m3"),
    ("espeak-ng", "en-gb+m3"),
    ("espeak-ng", "en-gb-scotland+m1"),
    ("espeak-ng", "en-029+f2"),
    ("espeak-ng", "en-us+f1"),
    ("espeak-ng", "en-us+m1"),
    ("espeak-ng", "en-gb-x-rp+f4"),
    ("espeak-ng", "en-gb+m7"),
    ("espeak-ng", "en-us-nyc+m2"),
)

VOCABULARY = tuple(
    """the a of and to in is was he she it they we you his her that with for on as at by from
    this have had not are but or one all were when there can an your which their said if do
    will each about how up out them then many some so these would other into has more two time
    could no way people my than first been who now find long down day did get come made may
    part over new sound take only little work know place year live me back give most very after
    thing our just name good sentence man think say great where help through much before line
    too mean old any same tell boy follow came want show also around form three small set put
    end does another well large must big even such because turn here why ask went men read need
    land different home us move try kind hand picture again change off play spell air away
    animal house point page letter mother answer found study still learn should world high every
    near add food between own below country plant last school father keep tree never start city
    earth eye thought head under story saw left few while along might close something seem next
    hard open example begin life always those both paper together got group often run important
    until children side car mile night walk white sea began grow took river four carry state
    once book hear stop without second later miss idea enough eat face watch far really almost
    let above girl sometimes mountain cut young talk soon list song being leave family body
    music color stand sun question area mark horse bird problem complete room knew since ever
    piece told usually friend easy heard order red door sure become top whole king space best
    hour better true during hundred five remember step early hold west ground interest reach
    fast verb sing listen six table travel less morning ten simple several toward war lay
    against pattern slow center love person money serve appear road rule pull cold notice voice
    power town fine drive plane stood green quick develop ocean warm free minute strong special
    mind behind clear tail produce fact street inch nothing course stay wheel full force blue
    object decide surface deep island foot system busy test record boat common gold possible ago
    dry wonder laugh thousand ran check game shape yes hot brought heat snow tire bring distant
    fill east weight language among""".split()
)


def sentences(utterances: int, seed: int = 0) -> list[str]:
    """The corpus' texts: utterance i is 5-10 words of `VOCABULARY`, from (seed, i) alone."""
    out = []
    for i in range(utterances):
        rng = np.random.default_rng([seed, i])
        out.append(" ".join(rng.choice(VOCABULARY, size=int(rng.integers(5, 11)))))
    return out


def _speaker(synth: str, voice: str) -> str:
    return f"{synth}_{voice.replace('+', '-')}"


def _manifest_params(utterances: int, seed: int) -> dict:
    return {"utterances": utterances, "seed": seed, "voices": [list(v) for v in VOICES]}


def _built_with(root: str, want: dict) -> dict | None:
    """The `want` keys of the corpus.json in `root` (None: there is none readable)."""
    try:
        with open(os.path.join(root, "corpus.json")) as f:
            have = json.load(f)
    except (OSError, ValueError):
        return None
    return {k: have.get(k) for k in want}


def ensure(root: str, utterances: int = 600, seed: int = 0, workers: int = 4) -> str:
    """The corpus of `utterances` at `root`, built there if it is not yet (module docstring).
    Returns `root`. Raises ValueError for a `root` that holds other files or a corpus built
    with other parameters (the message names both), FileNotFoundError when flite or espeak-ng
    is missing (with the package to install)."""
    if utterances < 2:
        raise ValueError(f"synthesised speech needs at least 2 utterances, got {utterances}")
    want = _manifest_params(utterances, seed)
    if os.path.isdir(root) and os.listdir(root):
        have = _built_with(root, want)
        if have == want:
            return root
        raise ValueError(
            f"{root} is not empty and does not hold synthesised speech with {want} "
            f"(found: {'no corpus.json' if have is None else have}); point data.path at an "
            "empty or absent folder"
        )
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".synth_speech_", dir=parent)
    texts = sentences(utterances, seed)
    t0 = time.perf_counter()

    def one(i: int) -> dict:
        synth, voice = VOICES[i % len(VOICES)]
        speaker = _speaker(synth, voice)
        wav = level(speak(synth, voice, texts[i], RATE))
        name = os.path.join(speaker, f"{i:05d}.flac")
        os.makedirs(os.path.join(tmp, speaker), exist_ok=True)
        dsp.write_audio(os.path.join(tmp, name), wav, RATE)
        return {"file": name, "text": texts[i], "speaker": speaker, "seconds": len(wav) / RATE}

    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            files = list(pool.map(one, range(utterances)))
        with open(os.path.join(tmp, "corpus.json"), "w") as f:
            json.dump({**want, "files": files}, f, indent=1)
        if os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)
        try:
            os.replace(tmp, root)
        except OSError:
            # Another process finished the same corpus first (tests run side by side): use it.
            if _built_with(root, want) != want:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return root
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(e["seconds"] for e in files)
    log.info(
        "Synthesised %d utterances (%.1f min of speech, %d voices) into %s in %.1f s",
        utterances,
        total / 60,
        len(VOICES),
        root,
        time.perf_counter() - t0,
    )
    return root


def default_root(utterances: int, seed: int) -> str:
    """Where `config.data.source="synth"` keeps its corpus when `data.path` is empty:
    $AUDIOLM_JAX_CACHE (default ~/.cache/audiolm_jax)/synth_speech/n<utterances>_s<seed>."""
    base = os.environ.get("AUDIOLM_JAX_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "audiolm_jax"
    )
    return os.path.join(base, "synth_speech", f"n{utterances}_s{seed}")
