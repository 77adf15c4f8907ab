"""Sampling speed of a 6-layer, 512-wide stage LM: 256 new tokens at batch 1 and 8.

audiolm-jax's `sample_tokens` (KV cache preallocated, one compiled while_loop) against
audiolm-pytorch's `SemanticTransformerWrapper.generate(use_kv_cache=True)` (one Python step per
token), same sizes, CPU torch with 2 threads; the peer runs first, in its own venv.

    python benchmarks/bench_lm_sample.py [--repeats 3] [--no-peer] [--peer-bf16]

JAX is measured before and after the peer and its runs pooled (medians of 2 x repeats).

At batch 1 each token reads every weight (and the KV cache so far) once: the row also gives
the achieved bytes/s against this machine's memory bandwidth measured in the same run, both
as a jitted matrix-vector product streams a matrix as large as the weights
(`common.read_bandwidth`, the limit) and as a one-thread `numpy.copyto` counts it
(`common.copy_bandwidth`, the rows before 2026-11-28's second run), and the same model with
bf16 weights and compute (half the bytes).

Rows with "bfloat16 matmuls" keep the compute dtype fp32 and run only the Dense matmuls on
bf16 kernels (`TransformerConfig.matmul_dtype`); `--peer-bf16` also times the peer under
`torch.autocast("cpu", dtype=torch.bfloat16)`, its bf16 option.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import copy_bandwidth, median_time, read_bandwidth, report  # noqa: E402

LENGTH = 256


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--peer-bf16",
        action="store_true",
        help="also time the peer under torch.autocast(bfloat16) (slower than its fp32 here)",
    )
    args = parser.parse_args()

    peers: dict = {}

    def measure_peers() -> None:
        """The peer at both batch sizes; its runs are pooled over the calls."""
        from benchmarks.peer_env import run_peer

        for batch in (1, 8):
            for dtype in ("float32", "bfloat16") if args.peer_bf16 else ("float32",):
                r = run_peer(
                    "peer_audiolm_pytorch.py",
                    "sample",
                    "--length",
                    str(LENGTH),
                    "--batch",
                    str(batch),
                    "--repeats",
                    str(args.repeats),
                    "--dtype",
                    dtype,
                )
                peers.setdefault((batch, dtype), []).append(r)

    from audiolm_jax.lm.transformer import Transformer, TransformerConfig
    from audiolm_jax.sampling import sample_tokens
    from audiolm_jax.sampling.lm import cache_lengths, default_cache_blocks

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
    bandwidth = copy_bandwidth()
    # Streaming as many bytes as the fp32 weights (they may sit in the last-level cache).
    weight_mb = sum(x.size for x in jax.tree.leaves(params)) * 4 // 2**20
    read_bw = read_bandwidth(weight_mb)
    print(
        f"memory copy bandwidth {bandwidth / 1e9:.1f} GB/s, matrix-vector read "
        f"{read_bw / 1e9:.1f} GB/s ({weight_mb} MB, the weights' size)"
    )
    # (dtype, matmul_dtype, batch, cache_blocks): dtype is the compute dtype (the weights are
    # cast to it); matmul_dtype "bfloat16" runs only the Dense matmuls on bf16 kernels
    # (`TransformerConfig.matmul_dtype`), attention and KV cache in fp32. cache_blocks None is
    # the sampler's default (at batch 8, 4 parts of the loop attending over a growing cache
    # prefix); 1 reads the whole preallocated cache at every step.
    cases = [
        ("float32", None, 1, None),
        ("float32", None, 8, None),
        ("float32", "bfloat16", 1, None),
        ("float32", "bfloat16", 8, None),
        ("bfloat16", None, 1, None),
        ("float32", None, 8, 1),
    ]
    runs: dict = {case: [] for case in cases}

    def model(dtype: str, mm: str | None):
        """The case's config and params (cast to its compute dtype)."""
        c = dataclasses.replace(cfg, dtype=dtype, matmul_dtype=mm)
        return c, jax.tree.map(lambda x: x.astype(dtype), params)

    def measure_jax() -> None:
        for dtype, mm, batch, blocks in cases:
            c, p = model(dtype, mm)
            prompt = jnp.ones((batch, 1), jnp.int32)

            def run(c=c, p=p, prompt=prompt):
                out = sample_tokens(
                    c,
                    p,
                    prompt,
                    max_len=LENGTH + 1,
                    rng=jax.random.key(0),
                    temperature=1.0,
                    cache_blocks=blocks,
                )
                out.block_until_ready()

            runs[(dtype, mm, batch, blocks)] += median_time(run, args.repeats, warmup=1)[1]

    # JAX before and after the peer, pooled: a machine that drifts during the run (it does
    # here, by up to 1.4x) biases neither side.
    measure_jax()
    if not args.no_peer:
        measure_peers()
        measure_jax()
    from audiolm_jax.lm.transformer import decode_layout

    for dtype, mm, batch, blocks in cases:
        times = runs[(dtype, mm, batch, blocks)]
        c, p = model(dtype, mm)
        if blocks is None:
            blocks = default_cache_blocks(c, p, batch, LENGTH + 1)
        parts = len(cache_lengths(LENGTH + 1, blocks))
        t = float(np.median(times))
        # The weights as the decoding loop reads them (Dense kernels in matmul_dtype).
        weight_bytes = sum(x.nbytes for x in jax.tree.leaves(decode_layout(c, p)[1]))
        # Per step: every weight once, plus the keys and values cached so far (on average
        # half the cache), in the compute dtype.
        kv = 2 * cfg.num_layers * batch * cfg.d_model * (LENGTH / 2) * jnp.dtype(dtype).itemsize
        achieved = (weight_bytes + kv) * LENGTH / t
        label = dtype if mm is None else f"{dtype}, {mm} matmuls"
        row = {
            "what": f"LM sampling, 6 x 512, {LENGTH} tokens, batch {batch}, {label}, "
            f"{parts} cache part(s)",
            "dtype": dtype,
            "matmul_dtype": mm,
            "cache_parts": parts,
            "jax_s": t,
            "jax_tokens_per_s": batch * LENGTH / t,
            "jax_runs_s": times,
            "bytes_per_s": achieved,
            "copy_bandwidth_bytes_per_s": bandwidth,
            "fraction_of_bandwidth": achieved / bandwidth,
            "read_bandwidth_bytes_per_s": read_bw,
            "fraction_of_read_bandwidth": achieved / read_bw,
        }
        for peer_dtype, suffix in (("float32", ""), ("bfloat16", "_bf16")):
            got = peers.get((batch, peer_dtype))
            if not got:
                continue
            peer_runs = [x for r in got for x in r["run_times_s"]]
            peer_s = float(np.median(peer_runs))
            peer_tps = batch * got[0]["generated_length"] / peer_s
            row.update(
                {
                    f"peer{suffix}_s": peer_s,
                    f"peer{suffix}_runs_s": peer_runs,
                    f"peer{suffix}_tokens_per_s": peer_tps,
                    f"speedup_vs_peer{suffix}": row["jax_tokens_per_s"] / peer_tps,
                    f"peer{suffix}_notes": got[0].get("notes"),
                }
            )
        report("lm_sample", row)
        print(
            f"batch {batch} {label} ({parts} cache parts): "
            f"jax {row['jax_tokens_per_s']:.0f} tok/s, "
            f"{achieved / 1e9:.1f} GB/s = {100 * achieved / read_bw:.0f}% of the read bandwidth "
            f"({100 * achieved / bandwidth:.0f}% of copy)"
            + (
                f", audiolm-pytorch {row['peer_tokens_per_s']:.0f} tok/s -> "
                f"{row['speedup_vs_peer']:.1f}x"
                if "peer_tokens_per_s" in row
                else ""
            )
            + (
                f", its bf16 autocast {row['peer_bf16_tokens_per_s']:.0f} tok/s"
                if "peer_bf16_tokens_per_s" in row
                else ""
            )
        )


if __name__ == "__main__":
    main()
