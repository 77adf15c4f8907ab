"""Sampling speed of a 6-layer, 512-wide stage LM: 256 new tokens at batch 1 and 8.

audiolm-jax's `sample_tokens` (KV cache preallocated, one compiled while_loop) against
audiolm-pytorch's `SemanticTransformerWrapper.generate(use_kv_cache=True)` (one Python step per
token), same sizes, CPU torch with 2 threads; the peer runs first, in its own venv.

    python benchmarks/bench_lm_sample.py [--repeats 3] [--no-peer]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.common import median_time, report  # noqa: E402

LENGTH = 256


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()

    peers = {}
    if not args.no_peer:
        from benchmarks.peer_env import run_peer

        for batch in (1, 8):
            peers[batch] = run_peer(
                "peer_audiolm_pytorch.py",
                "sample",
                "--length",
                str(LENGTH),
                "--batch",
                str(batch),
                "--repeats",
                str(args.repeats),
            )

    from audiolm_jax.lm.transformer import Transformer, TransformerConfig
    from audiolm_jax.sampling import sample_tokens

    cfg = TransformerConfig(
        vocab_size=1028,
        num_layers=6,
        num_heads=8,
        d_model=512,
        d_ff=2048,
        dropout=0.0,
        scan_layers=False,
    )
    params = nn.unbox(
        Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    )
    for batch in (1, 8):
        prompt = jnp.ones((batch, 1), jnp.int32)

        def run():
            out = sample_tokens(
                cfg,
                params,
                prompt,
                max_len=LENGTH + 1,
                rng=jax.random.key(0),
                temperature=1.0,
                top_k=0,
            )
            out.block_until_ready()

        t, times = median_time(run, args.repeats, warmup=1)
        row = {
            "what": f"LM sampling, 6 x 512, {LENGTH} tokens, batch {batch}",
            "jax_s": t,
            "jax_tokens_per_s": batch * LENGTH / t,
            "jax_runs_s": times,
        }
        if batch in peers:
            p = peers[batch]
            row.update(
                peer_s=p["median_run_s"],
                peer_tokens_per_s=p["tokens_per_s"],
                speedup_vs_peer=(batch * LENGTH / t) / p["tokens_per_s"],
                peer_notes=p.get("notes"),
            )
        report("lm_sample", row)
        print(
            f"batch {batch}: jax {row['jax_tokens_per_s']:.0f} tok/s"
            + (
                f", audiolm-pytorch {row['peer_tokens_per_s']:.0f} tok/s -> "
                f"{row['speedup_vs_peer']:.1f}x"
                if batch in peers
                else ""
            )
        )


if __name__ == "__main__":
    main()
