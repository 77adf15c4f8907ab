"""Semantic tokenization speed (seconds of audio tokenized per second of wall time).

audiolm-jax's jitted `semantic.encode` (w2v-BERT features of one layer -> per-dimension
normalisation -> nearest of K = 1024 centroids) against `transformers`' HuBERT base up to the
same layer + scikit-learn `MiniBatchKMeans.predict` (CPU torch, 2 threads; the peer runs first,
in its own venv: benchmarks/peer_hubert_tokens.py). Same audio for both: the first `--seconds`
of the embedded corpus, one file at a time (batch 1), an untimed warm-up pass over every file
(compilation; torch's first pass over new lengths), then the median of `--repeats` passes.

Sizes: our w2v-BERT at HuBERT-base width (d_model 768, 12 heads, FFN 3072, 6 + 6 layers, layer
6 = the last contrastive block) against HuBERT base cut at its layer 6. Random weights for both
(speed does not depend on them). w2v-BERT runs at 25 frames/s, HuBERT at 50: part of the
design being compared, reported in the row.

    python benchmarks/bench_semantic.py [--seconds 60] [--repeats 5] [--no-peer]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_time, report  # noqa: E402

LAYER = 6
K = 1024


def corpus_audio(seconds: float) -> list[np.ndarray]:
    """Whole corpus files, in order, until `seconds` of audio."""
    from audiolm_jax import dsp
    from audiolm_jax.data import audio

    out, total = [], 0.0
    for entry in audio.corpus_entries():
        wav, _ = dsp.read_audio(entry["path"], 16000)
        out.append(wav)
        total += len(wav) / 16000
        if total >= seconds:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    files = corpus_audio(args.seconds)
    seconds = sum(len(w) for w in files) / 16000

    peer = None
    if not args.no_peer:
        from benchmarks.peer_env import run_peer

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "audio.npz")
            np.savez(path, *files)
            peer = run_peer(
                "peer_hubert_tokens.py",
                path,
                "--seconds",
                str(seconds),
                "--layer",
                str(LAYER),
                "--k",
                str(K),
                "--repeats",
                str(args.repeats),
            )

    import flax.linen as nn
    import jax.numpy as jnp

    from audiolm_jax import semantic
    from audiolm_jax.config import load_config
    from audiolm_jax.semantic import w2v_bert

    config = load_config("w2v_bert_tpu")
    config.w2v_bert.update(
        dtype="float32", remat="none", d_model=768, num_heads=12, d_ff=3072, code_dim=768
    )
    config.w2v_bert.update(contrastive_layers=6, mlm_layers=6)
    cfg = w2v_bert.W2VBertConfig.from_config(config.w2v_bert)
    model = w2v_bert.W2VBert(cfg)
    params, _ = jax.jit(model.init)(jax.random.key(0), {"wav": jnp.zeros((1, 16000))})
    centroids = jax.random.normal(jax.random.key(1), (K, cfg.d_model))
    tok = semantic.from_parts(cfg, nn.unbox(params)["model"], LAYER, centroids)
    n_params = sum(x.size for x in jax.tree.leaves(tok.params))

    def tokenize_all():
        for w in files:
            semantic.encode(tok, w).block_until_ready()

    tokenize_all()  # compile every length
    t, times = median_time(tokenize_all, args.repeats)
    row = {
        "what": f"semantic tokenization, {len(files)} corpus files = {seconds:.1f} s, batch 1",
        "ours": f"w2v-BERT d768 to layer {LAYER} ({n_params / 1e6:.1f}M params), K={K}, 25 ids/s",
        "audio_s_per_s": seconds / t,
        "times": times,
    }
    if peer:
        row["peer"] = peer
        row["speedup"] = row["audio_s_per_s"] / peer["audio_s_per_s"]
    report("semantic_tokenize", row)


if __name__ == "__main__":
    main()
