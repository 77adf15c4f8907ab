"""A token-cache job over a small cut of the embedded corpus with tiny numpy tokenizers, run by
tests/test_token_cache.py as its own OS process (alone, under the 2-process harness, or killed
part-way). Also the home of the fake tokenizers and examples the tests share.

    python tests/token_cache_job.py CACHE_DIR [--num-shards 6] [--shards-per-pass 2]
        [--die-after N]

Under tests/multihost.py's `run_job` (JAX_COORDINATOR_ADDRESS etc. set) the process joins the
JAX job and takes its process index and count from it. Prints `RESULT {summary json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

RATE = 16000
SEMANTIC_VOCAB, SEMANTIC_HOP = 32, 640  # 25 ids/s
LEVELS, CODEBOOK, ACOUSTIC_HOP = 2, 16, 320  # 50 frames/s
NUM_SHARDS = 6


def _frames(wav: np.ndarray, hop: int) -> np.ndarray:
    assert wav.ndim == 2 and wav.shape[1] % hop == 0, wav.shape
    return wav.reshape(wav.shape[0], -1, hop)


def fake_semantic(wav: np.ndarray) -> np.ndarray:
    """Frame energy (dB) in 32 bins, 25 ids/s."""
    db = 10 * np.log10(np.mean(_frames(wav, SEMANTIC_HOP) ** 2, -1) + 1e-10)
    return np.clip(((db + 80) / 80 * SEMANTIC_VOCAB).astype(np.int64), 0, SEMANTIC_VOCAB - 1)


def fake_acoustic(wav: np.ndarray) -> np.ndarray:
    """Two levels at 50 frames/s: zero-crossing rate and peak amplitude, 16 bins each."""
    f = _frames(wav, ACOUSTIC_HOP)
    zcr = np.mean(np.abs(np.diff(np.sign(f), axis=-1)) > 0, -1)
    peak = np.max(np.abs(f), -1)
    q = [np.clip((x * CODEBOOK).astype(np.int32), 0, CODEBOOK - 1) for x in (zcr, peak)]
    return np.stack(q, -1)


def fake_tokenizers(**overrides):
    from audiolm_jax.data.token_cache import Tokenizers

    kw = dict(
        semantic=fake_semantic,
        acoustic=fake_acoustic,
        sample_rate=RATE,
        semantic_vocab=SEMANTIC_VOCAB,
        semantic_hop=SEMANTIC_HOP,
        acoustic_levels=LEVELS,
        acoustic_codebook_size=CODEBOOK,
        acoustic_hop=ACOUSTIC_HOP,
        semantic_checkpoint="fake/semantic",
        acoustic_checkpoint=None,
        semantic_describe="frame energy, 32 bins",
        acoustic_describe="zero crossings and peaks, 2 x 16 bins",
    )
    return Tokenizers(**{**kw, **overrides})


def corpus_examples(files: int = 14) -> list[dict]:
    """~20 utterances of real speech: the first `files` corpus files at 16 kHz, every third one
    cut in two, and one pair cut to the same frame count (so batches form)."""
    from audiolm_jax import dsp
    from audiolm_jax.data import audio

    out = []
    for i, e in enumerate(audio.corpus_entries()[:files]):
        wav, _ = dsp.read_audio(e["path"], RATE)
        stem = os.path.splitext(e["file"])[0]
        if i % 3 == 0:
            half = len(wav) // 2
            out.append({"id": f"{stem}/a", "speaker": e["speaker"], "audio": wav[:half]})
            out.append({"id": f"{stem}/b", "speaker": e["speaker"], "audio": wav[half:]})
        elif i in (1, 2):
            out.append({"id": stem, "speaker": e["speaker"], "audio": wav[: 16000 - 7 * i]})
        else:
            out.append({"id": stem, "speaker": e["speaker"], "audio": wav})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache_dir")
    ap.add_argument("--num-shards", type=int, default=NUM_SHARDS)
    ap.add_argument("--shards-per-pass", type=int, default=None)
    ap.add_argument("--die-after", type=int, default=None, help="os._exit after N examples")
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()

    from audiolm_jax.train.distributed import maybe_initialize

    maybe_initialize()
    from audiolm_jax.data import token_cache

    examples = corpus_examples()
    seen = [0]

    def stream():
        for ex in examples:
            if args.die_after is not None and seen[0] >= args.die_after:
                sys.stdout.flush()
                os._exit(3)  # a hard kill: no cleanup, open .tmp files stay behind
            seen[0] += 1
            yield ex

    summary = token_cache.write_cache(
        stream,
        "train",
        args.cache_dir,
        fake_tokenizers(),
        num_shards=args.num_shards,
        batch_size=args.batch_size,
        shards_per_pass=args.shards_per_pass,
        wait_timeout=120,
        poll_interval=0.2,
    )
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
