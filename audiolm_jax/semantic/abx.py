"""ABX discriminability of speech representations: do they carry phonetics, not the voice?

AudioLM's semantic tokens are meant to encode *what* is said, not *who* (or what) says it. This
module measures that with an ABX test on isolated English words read by two different speech
synthesisers (Debian's ``flite`` and ``espeak-ng``, two voices each by default):

    items = synthesize_words(WORDS, "/tmp/abx")            # one WAV per (word, voice)
    for it in items:
        it["rep"] = my_tokenizer(dsp.read_audio(it["path"])[0])
    print(abx_error(items, token_dtw))                     # {"across": ..., "within": ...}

A triplet (A, B, X) scores an error when X is closer to B (a different word) than to A (the same
word); sequences of unequal length are compared with dynamic time warping (`dtw_distance`), its
cost averaged along the alignment path, over token ids (`token_dtw`) or frame vectors
(`feature_dtw`). `abx_error` documents the triplets exactly. Chance is 50 %; lower is better.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import dsp
from audiolm_jax.data.make_corpus import level, speak

# Short English words: minimal pairs (one phoneme apart: voicing, place, vowel) plus a few that
# differ everywhere, so that a representation has to resolve single phonemes to score well.
WORDS = [
    "bat", "pat", "bit", "pit", "bet", "bed", "bad", "pad",
    "cat", "cap", "cup", "cop", "dog", "dig", "fish", "dish",
    "ship", "sheep", "seat", "sit", "feet", "fit", "map", "mat",
    "rain", "lane", "light", "right", "thin", "tin", "van", "fan",
    "moon", "noon", "zoo", "sue", "water", "yellow",
]  # fmt: skip

# (synthesiser, voice): two US-English voices from each synthesiser, one female and one male.
DEFAULT_VOICES = [
    ("flite", "slt"),
    ("flite", "rms"),
    ("espeak-ng", "en-us+f3"),
    ("espeak-ng", "en-us+m3"),
]
SYNTHESIZERS = ("flite", "espeak-ng")

# Silence trimming: 10 ms frames, kept from the first to the last frame within TRIM_DB of the
# loudest frame, with TRIM_PAD_S of context on each side.
TRIM_FRAME_S = 0.010
TRIM_DB = 35.0
TRIM_PAD_S = 0.020
LOUDNESS_DB = -20.0


# --- synthesis -----------------------------------------------------------------------------------


def _require_binary(name: str) -> None:
    if shutil.which(name) is None:
        raise FileNotFoundError(
            f"ABX word synthesis needs the `{name}` program, which is not on PATH "
            f"(Debian/Ubuntu: apt-get install {name})"
        )


def _flite_voices() -> set[str]:
    # `flite -voice UNKNOWN` silently falls back to its default voice, so check names up front.
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    return set(out.split(":", 1)[-1].split())


def trim_silence(
    wav: np.ndarray,
    sample_rate: int,
    threshold_db: float = TRIM_DB,
    pad_s: float = TRIM_PAD_S,
) -> np.ndarray:
    """Cut leading and trailing silence from a mono waveform.

    Frames of 10 ms whose RMS is within `threshold_db` of the loudest frame count as speech; the
    waveform is kept from the first to the last such frame, plus `pad_s` seconds either side.
    Raises ValueError on an all-zero waveform.
    """
    wav = np.asarray(wav, np.float32)
    hop = max(1, int(round(TRIM_FRAME_S * sample_rate)))
    n = max(1, len(wav) // hop)
    frames = wav[: n * hop].reshape(n, hop) if len(wav) >= hop else wav[None]
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    if db.max() <= -190:
        raise ValueError("trim_silence: the waveform is silent")
    loud = np.flatnonzero(db >= db.max() - threshold_db)
    pad = int(round(pad_s * sample_rate))
    start = max(0, loud[0] * hop - pad)
    end = min(len(wav), (loud[-1] + 1) * hop + pad)
    return wav[start:end]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def synthesize_words(
    words: Sequence[str],
    out_dir: str,
    sample_rate: int = 16000,
    voices: Sequence[tuple[str, str]] | None = None,
) -> list[dict]:
    """Synthesise every word with every voice; one trimmed, loudness-normalised WAV each.

    `voices` is a list of (synthesiser, voice) with synthesiser "flite" (voices as listed by
    `flite -lv`: slt, awb, rms, kal16, ...) or "espeak-ng" (e.g. en-us+f3, en-gb+m3); the default
    is `DEFAULT_VOICES`, two of each. Audio is resampled to `sample_rate`, trimmed of leading and
    trailing silence (`trim_silence`) and scaled to -20 dBFS RMS (clipped to +-0.99), then
    written to `out_dir/{synth}_{voice}_{word}.wav`.

    Returns one dict per file, words in the outer loop: {path, word, synth, voice}. A missing
    synthesiser program, an unknown synthesiser or flite voice raises (never skipped); a voice
    espeak-ng does not know makes it fail, raised as RuntimeError with its message.
    """
    voices = list(DEFAULT_VOICES if voices is None else voices)
    if not voices:
        raise ValueError("synthesize_words: no voices given")
    for synth, _ in voices:
        if synth not in SYNTHESIZERS:
            raise ValueError(f"unknown synthesiser {synth!r}; expected one of {SYNTHESIZERS}")
    for synth in sorted({s for s, _ in voices}):
        _require_binary(synth)
    if any(s == "flite" for s, _ in voices):
        known = _flite_voices()
        for synth, voice in voices:
            if synth == "flite" and voice not in known:
                raise ValueError(f"flite has no voice {voice!r} (it has: {sorted(known)})")

    os.makedirs(out_dir, exist_ok=True)
    jobs = [(word, synth, voice) for word in words for synth, voice in voices]

    def one(job: tuple[str, str, str]) -> dict:
        word, synth, voice = job
        wav = speak(synth, voice, word, sample_rate)  # a failure: RuntimeError with its message
        wav = level(trim_silence(wav, sample_rate), LOUDNESS_DB)
        path = os.path.join(out_dir, f"{synth}_{_slug(voice)}_{_slug(word)}.wav")
        dsp.write_audio(path, wav, sample_rate)
        return dict(path=path, word=word, synth=synth, voice=voice)

    # The synthesisers are separate processes that mostly wait on I/O: run a few at once.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, jobs))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _mel_jit(wav: jax.Array, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> jax.Array:
    return dsp.mel_spectrogram(wav, sample_rate, n_fft, hop, n_mels)


def log_mel_frames(
    wav: np.ndarray, sample_rate: int = 16000, n_mels: int = 40, win_s: float = 0.025
) -> np.ndarray:
    """A plain spectral baseline for ABX: log-mel frames `[frames, n_mels]` (float32).

    Windows of `win_s` seconds every 10 ms (`dsp.mel_spectrogram`, centred frames: 1 + samples
    // hop of them), log of the magnitudes (floored at 1e-5), mean over the utterance
    subtracted per mel bin, so that `feature_dtw`'s cosine distance compares spectral shapes
    rather than the overall level. The waveform is zero-padded to a whole number of seconds
    before the (jitted) transform, so that words of any length share a few compiled shapes.
    """
    wav = np.asarray(wav, np.float32).reshape(-1)
    n_fft = int(round(win_s * sample_rate))
    hop = int(round(0.010 * sample_rate))
    frames = 1 + len(wav) // hop
    padded = np.zeros(-(-len(wav) // sample_rate) * sample_rate + n_fft, np.float32)
    padded[: len(wav)] = wav
    mel = np.asarray(_mel_jit(jnp.asarray(padded[None]), sample_rate, n_fft, hop, n_mels))
    logmel = np.log(np.maximum(mel[0, :frames], 1e-5))
    return (logmel - logmel.mean(axis=0, keepdims=True)).astype(np.float32)


# --- dynamic time warping ------------------------------------------------------------------------


def token_frame_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cost matrix `[len(a), len(b)]` between two token-id sequences: 0 where equal, else 1."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    return (a[:, None] != b[None, :]).astype(np.float64)


def cosine_frame_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cost matrix `[len(a), len(b)]` of cosine distances (1 - cos, in [0, 2]) between frame
    vectors `a [n, d]` and `b [m, d]`; an all-zero frame has cosine 0 with everything."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(1.0 - a @ b.T, 0.0, 2.0)


_FRAME_DISTANCES = {"token": token_frame_distance, "cosine": cosine_frame_distance}


def dtw_costs(costs: Sequence[np.ndarray], chunk: int = 256) -> np.ndarray:
    """DTW (see `dtw_distance`) over many precomputed cost matrices `[n_p, m_p]` at once.

    Matrices are sorted by size and zero-padded into chunks of `chunk`; the dynamic programme
    runs over anti-diagonals, vectorised over each diagonal and over the chunk. Padding never
    reaches a real cell, because a cell only depends on cells above and to its left.
    Returns the distances `[len(costs)]` (float64), in the order given.
    """
    costs = [np.asarray(c, np.float64) for c in costs]
    for c in costs:
        if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
            raise ValueError(f"dtw needs non-empty [n, m] cost matrices, got shape {c.shape}")
    out = np.empty(len(costs))
    order = sorted(range(len(costs)), key=lambda q: costs[q].shape)
    for lo in range(0, len(order), chunk):
        idx = order[lo : lo + chunk]
        out[idx] = _dtw_chunk([costs[q] for q in idx])
    return out


def _dtw_chunk(costs: list[np.ndarray]) -> np.ndarray:
    p = len(costs)
    ns = np.array([c.shape[0] for c in costs])
    ms = np.array([c.shape[1] for c in costs])
    n, m = int(ns.max()), int(ms.max())
    padded = np.zeros((p, n, m))
    for q, c in enumerate(costs):
        padded[q, : c.shape[0], : c.shape[1]] = c
    # Anti-diagonal k holds the cells (i, k - i) of the 1-based accumulated matrix, stored at
    # index i (0..n). Its three predecessors are then plain slices of diagonals k-1 and k-2:
    # (i-1, j) -> prev1[i-1], (i, j-1) -> prev1[i], (i-1, j-1) -> prev2[i-1].
    i = np.arange(1, n + 1)
    prev2 = np.full((p, n + 1), np.inf)  # diagonal 0: only (0, 0), the start, with cost 0
    prev2[:, 0] = 0.0
    prev1 = np.full((p, n + 1), np.inf)  # diagonal 1: (0, 1) and (1, 0), both outside
    len2 = np.zeros((p, n + 1))
    len1 = np.zeros((p, n + 1))
    cur = np.full((p, n + 1), np.inf)
    result = np.empty(p)
    ends = ns + ms
    for k in range(2, n + m + 1):
        j = k - i
        valid = (j >= 1) & (j <= m)
        row = np.where(valid, padded[:, i - 1, np.clip(j - 1, 0, m - 1)], np.inf)
        up, left, diag = prev1[:, :-1], prev1[:, 1:], prev2[:, :-1]
        best = np.minimum(np.minimum(up, left), diag)
        # Ties between equally cheap predecessors go to the longest path: a deterministic rule
        # that does not depend on the argument order, so the distance stays symmetric.
        blen = np.maximum(
            np.maximum(
                np.where(up == best, len1[:, :-1], -1.0), np.where(left == best, len1[:, 1:], -1.0)
            ),
            np.where(diag == best, len2[:, :-1], -1.0),
        )
        cur = np.full((p, n + 1), np.inf)
        cur[:, 1:] = row + best
        curlen = np.zeros((p, n + 1))
        curlen[:, 1:] = blen + 1.0
        done = np.flatnonzero(ends == k)
        if len(done):
            result[done] = cur[done, ns[done]] / curlen[done, ns[done]]
        prev2, prev1, len2, len1 = prev1, cur, len1, curlen
    return result


def dtw_cost(cost: np.ndarray) -> float:
    """DTW over one precomputed cost matrix `[n, m]`; see `dtw_distance` for the definition."""
    return float(dtw_costs([cost])[0])


def dtw_distance(
    a: np.ndarray,
    b: np.ndarray,
    frame_dist: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "cosine",
) -> float:
    """Dynamic-time-warping distance between two sequences, averaged along the path.

    The frame cost matrix is C = frame_dist(a, b) `[len(a), len(b)]`, where `frame_dist` is
    "token" (0 where two token ids are equal, else 1), "cosine" (1 - cosine similarity of frame
    vectors) or a callable returning that matrix. A path runs from (0, 0) to (n-1, m-1) in steps
    (1, 0), (0, 1) or (1, 1); DTW takes the path of least summed cost (ties to the longer path)
    and returns that sum divided by the number of cells on the path. So identical and merely
    time-stretched sequences score 0, the result is symmetric in (a, b), and lies in the range
    of the frame costs ([0, 1] for tokens, [0, 2] for cosine).
    """
    fn = _FRAME_DISTANCES[frame_dist] if isinstance(frame_dist, str) else frame_dist
    if len(a) == 0 or len(b) == 0:
        raise ValueError("dtw_distance: both sequences must be non-empty")
    return dtw_cost(fn(a, b))


def dtw_distances(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    frame_dist: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "cosine",
) -> np.ndarray:
    """`dtw_distance` of many (a, b) pairs at once, batched (`dtw_costs`): `[len(pairs)]`."""
    fn = _FRAME_DISTANCES[frame_dist] if isinstance(frame_dist, str) else frame_dist
    for a, b in pairs:
        if len(a) == 0 or len(b) == 0:
            raise ValueError("dtw_distances: all sequences must be non-empty")
    return dtw_costs([fn(a, b) for a, b in pairs])


def token_dtw(ids_a: np.ndarray, ids_b: np.ndarray) -> float:
    """DTW distance between two token-id sequences, 0/1 frame cost (see `dtw_distance`).

    `token_dtw.batched(pairs)` is the batched form (`dtw_distances`), which `abx_error` uses."""
    return dtw_distance(ids_a, ids_b, "token")


def feature_dtw(fa: np.ndarray, fb: np.ndarray) -> float:
    """DTW distance between two frame sequences `[n, d]`, `[m, d]`, cosine frame cost (see
    `dtw_distance`). `feature_dtw.batched(pairs)` is the batched form, used by `abx_error`."""
    return dtw_distance(fa, fb, "cosine")


token_dtw.batched = lambda pairs: dtw_distances(pairs, "token")
feature_dtw.batched = lambda pairs: dtw_distances(pairs, "cosine")


# --- ABX -----------------------------------------------------------------------------------------


def _score(d_ax: np.ndarray, d_bx: np.ndarray) -> tuple[float, int]:
    """(errors, triplets) over all A x B pairs for one X."""
    diff = d_ax[:, None] - d_bx[None, :]
    return float(np.sum(diff > 0) + 0.5 * np.sum(diff == 0)), diff.size


def abx_error(
    items: Sequence[dict],
    distance: Callable[[object, object], float],
    key: str = "rep",
) -> dict:
    """ABX error rates (%) of a representation on synthesised words; 0 is perfect, 50 chance.

    `items` are dicts with "word", "synth", "voice" and the representation under `key` (a token
    sequence, frames, ... whatever `distance(rep_1, rep_2) -> float` compares; `distance` is
    assumed symmetric, each unordered pair is evaluated once, and where it has an attribute
    `batched` (as `token_dtw` and `feature_dtw` do) all pairs go to `distance.batched(pairs)`
    in one call, which must return their distances in order). Every triplet (A, B, X) of
    distinct items below counts an error when d(A, X) > d(B, X), and half an error on a tie.

    "across" (same word across synthesisers vs different words within one): for each ordered
    pair of synthesisers S1 != S2, X is any item of S2 (word w), A any item of S1 with word w
    (any voice), B any item of S2 with a word w' != w (any voice of S2, X's included). The error
    of a direction "S1->S2" is the mean over its triplets; the reported error is the mean over
    directions (each direction weighted equally).

    "within" (same word in another voice of the same synthesiser): for each synthesiser S, X is
    any item of S (word w, voice v), A any item of S with word w and a voice other than v, B any
    item of S with a word w' != w (any voice of S). Per synthesiser the mean over its triplets;
    the reported error is the mean over synthesisers.

    Returns {"across": {"error": %, "triplets": n, "per_direction": {"S1->S2": %}},
    "within": {"error": %, "triplets": n, "per_synth": {S: %}}}; an error is nan when a task has
    no triplets (e.g. one voice per synthesiser for "within").
    """
    items = list(items)
    for n, it in enumerate(items):
        missing = [k for k in ("word", "synth", "voice", key) if k not in it]
        if missing:
            raise KeyError(f"abx_error: item {n} lacks {missing}")
    synths = sorted({it["synth"] for it in items})
    by_synth = {s: [n for n, it in enumerate(items) if it["synth"] == s] for s in synths}

    # (group, X, A candidates, B candidates) for every X of both tasks.
    across_plan, within_plan = [], []
    for s1, s2 in itertools.permutations(synths, 2):
        for x in by_synth[s2]:
            w = items[x]["word"]
            a_idx = [n for n in by_synth[s1] if items[n]["word"] == w]
            b_idx = [n for n in by_synth[s2] if items[n]["word"] != w]
            across_plan.append((f"{s1}->{s2}", x, a_idx, b_idx))
    for s in synths:
        for x in by_synth[s]:
            w, v = items[x]["word"], items[x]["voice"]
            a_idx = [n for n in by_synth[s] if items[n]["word"] == w and items[n]["voice"] != v]
            b_idx = [n for n in by_synth[s] if items[n]["word"] != w]
            within_plan.append((s, x, a_idx, b_idx))

    # Every unordered pair that some scored triplet needs, evaluated once (batched if possible).
    needed = set()
    for _, x, a_idx, b_idx in across_plan + within_plan:
        if a_idx and b_idx:
            needed.update((min(o, x), max(o, x)) for o in a_idx + b_idx)
    pairs = sorted(needed)
    batched = getattr(distance, "batched", None)
    if batched is not None:
        values = batched([(items[p][key], items[q][key]) for p, q in pairs])
    else:
        values = [distance(items[p][key], items[q][key]) for p, q in pairs]
    cache = {pq: float(v) for pq, v in zip(pairs, values)}

    def dists(others: list[int], x: int) -> np.ndarray:
        return np.array([cache[(min(o, x), max(o, x))] for o in others], np.float64)

    def tally(plan: list, groups: list[str]) -> dict[str, tuple[float, int]]:
        totals = {g: (0.0, 0) for g in groups}
        for g, x, a_idx, b_idx in plan:
            if a_idx and b_idx:
                e, c = _score(dists(a_idx, x), dists(b_idx, x))
                totals[g] = (totals[g][0] + e, totals[g][1] + c)
        return totals

    across = tally(across_plan, [f"{a}->{b}" for a, b in itertools.permutations(synths, 2)])
    within = tally(within_plan, synths)

    def summary(groups: dict[str, tuple[float, int]], name: str) -> dict:
        rates = {g: 100.0 * e / c for g, (e, c) in groups.items() if c}
        return {
            "error": float(np.mean(list(rates.values()))) if rates else float("nan"),
            "triplets": int(sum(c for _, c in groups.values())),
            name: rates,
        }

    return {
        "across": summary(across, "per_direction"),
        "within": summary(within, "per_synth"),
    }


# --- scoring a tokenizer --------------------------------------------------------------------------


def encode_words(
    fn: Callable[[np.ndarray], Any], wavs: Sequence[np.ndarray], frame: int, bucket: int = 8
) -> list[np.ndarray]:
    """`fn(wav [samples]) -> [1, frames, ...]` over words of any length with few compiles: each
    word is zero-padded to a multiple of `bucket` frames of `frame` samples, and the output cut
    back to the word's own ceil(samples / frame) frames."""
    out = []
    for w in wavs:
        n = -(-len(w) // frame)
        padded = np.pad(np.asarray(w, np.float32), (0, -len(w) % (bucket * frame)))
        out.append(np.asarray(fn(padded))[0, :n])
    return out


def read_items(items: Sequence[dict], sample_rate: int = 16000) -> list[np.ndarray]:
    """The waveforms of `synthesize_words`' items."""
    return [dsp.read_audio(it["path"], sample_rate)[0] for it in items]


def tokenizer_abx(tok: Any, items: Sequence[dict], wavs: Sequence[np.ndarray]) -> dict:
    """`abx_error` of a semantic tokenizer's ids (audiolm_jax.semantic) with `token_dtw`."""
    from audiolm_jax import semantic

    reps = encode_words(lambda w: semantic.encode(tok, w), wavs, tok.samples_per_frame)
    return abx_error([{**it, "rep": r} for it, r in zip(items, reps)], token_dtw)


def logmel_kmeans_abx(
    items: Sequence[dict],
    wavs: Sequence[np.ndarray],
    train_wavs: Sequence[np.ndarray],
    k: int,
    seed: int = 0,
    n_mels: int = 40,
) -> dict:
    """The spectral baseline a semantic tokenizer must beat: k-means (K = `k`, k-means++ and
    Lloyd) over `log_mel_frames` of `train_wavs` (100 frames/s), each word's frames replaced
    by their nearest centroid's id, `abx_error` with `token_dtw`."""
    from audiolm_jax import kmeans

    train = np.concatenate([log_mel_frames(w, n_mels=n_mels) for w in train_wavs])
    centroids, _ = jax.jit(kmeans.fit, static_argnums=(1, 3))(
        jnp.asarray(train), k, jax.random.key(seed), 20
    )
    assign = jax.jit(kmeans.assign)
    reps = [
        np.asarray(assign(jnp.asarray(log_mel_frames(w, n_mels=n_mels)), centroids)) for w in wavs
    ]
    return abx_error([{**it, "rep": r} for it, r in zip(items, reps)], token_dtw)
