"""Train-step speed of a 6-layer, 512-wide stage LM (batch 8 x 256), three ways in one run:

1. audiolm-jax's train step (`audiolm_jax.train.trainer.make_train_step`, AdamW, T5 bias);
2. audiolm-pytorch's `SemanticTransformer` of the same size, CPU torch, 2 threads (peer venv);
3. this machine's jitted 2048^3 fp32 matmul (the practical FLOP/s peak).

Model FLOPs come from the config's shapes (`train_flops_per_token`), not XLA's cost analysis,
which counts a scanned layer once. The JAX step and the matmul are interleaved round by round so
that both see the same machine; medians are reported.

    python benchmarks/bench_lm_train.py [--rounds 5] [--no-peer] [--dropout 0.1]
        [--malloc auto|on|off] [--config.lm.scan_layers=false]

`--malloc` (default off, as launch.py): `audiolm_jax.host.tune_malloc` in this process and the
same glibc settings in the peer's.

Both models run with the same dropout (default 0.1, the stage configs'; the peer's own default
is 0, which is what its rows before 2026-11-28 ran with against our 0.1).

Targets (issue 2): >= 1.5x the PyTorch reference's tokens/s, >= 75% of the matmul peak.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    add_malloc_flag,
    matmul_peak_fn,
    median_time,
    report,
    setup_malloc,
)

SIZE = dict(num_layers=6, d_model=512, num_heads=8, d_ff=2048)
BATCH, SEQ = 8, 256


def jax_step(overrides: list[str], dropout: float):
    from audiolm_jax import tasks
    from audiolm_jax.config import apply_override, load_config
    from audiolm_jax.train.trainer import init_state, make_optimizers, make_train_step

    c = load_config("semantic_tiny")
    c.lm.update(dropout=dropout, **SIZE)
    c.data.update(batch_size=BATCH, seq_len=SEQ)
    for item in overrides:
        key, value = item.removeprefix("--config.").split("=", 1)
        apply_override(c, key, value)
    model, source, _ = tasks.build(c)
    batch = next(source)
    txs, schedules = make_optimizers(c, model.groups, 1000)
    state = init_state(model, txs, batch, seed=0)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    step = jax.jit(make_train_step(model, txs, schedules), donate_argnums=0)
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready(metrics)

    return run, model.flops_per_step(batch), n_params, dict(c.lm)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="JAX steps per round")
    parser.add_argument("--peer-steps", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.1,
        help="dropout of both models (ours: lm.dropout; the peer: attn_dropout and ff_dropout, "
        "whose defaults are 0)",
    )
    add_malloc_flag(parser)
    args, overrides = parser.parse_known_args()
    malloc_env = setup_malloc(args.malloc)

    # The peer runs first, before any XLA work: XLA's CPU thread pool keeps spinning for a while
    # after a computation, which would slow a peer process running beside it.
    peer = None
    if not args.no_peer:
        from benchmarks.peer_env import run_peer

        peer = run_peer(
            "peer_audiolm_pytorch.py",
            "train",
            "--depth",
            "6",
            "--dim",
            "512",
            "--heads",
            "8",
            "--vocab",
            "1024",
            "--batch",
            str(BATCH),
            "--seq",
            str(SEQ),
            "--steps",
            str(args.peer_steps),
            "--warmup",
            "1",
            "--dropout",
            str(args.dropout),
            env=malloc_env,
        )

    run, flops, n_params, lm = jax_step(overrides, args.dropout)
    # The peak of the dtype the Dense matmuls run in: with lm.matmul_dtype=bfloat16 the model's
    # FLOPs are set against the bf16 matmul (fp32 accumulation), not the fp32 one.
    peak_dtype = lm.get("matmul_dtype") or lm.get("dtype", "float32")
    peak_fn, peak_flops = matmul_peak_fn(dtype=peak_dtype)
    run()  # compile
    step_times, peak_times = [], []
    for _ in range(args.rounds):
        step_times.append(median_time(run, args.steps, warmup=0)[0])
        peak_times.append(median_time(peak_fn, 5, warmup=0)[0])
    step_s, peak_s = float(np.median(step_times)), float(np.median(peak_times))
    tokens = BATCH * SEQ
    row = {
        "what": "LM train step, 6 x 512, batch 8 x 256",
        "jax_params": n_params,
        "jax_step_s": step_s,
        "jax_tokens_per_s": tokens / step_s,
        "model_gflops_per_s": flops / step_s / 1e9,
        "matmul_peak_gflops_per_s": peak_flops / peak_s / 1e9,
        "matmul_peak_dtype": peak_dtype,
        "fraction_of_peak": (flops / step_s) / (peak_flops / peak_s),
        "jax_step_s_rounds": step_times,
        "malloc_tuned": bool(malloc_env),
        "lm": {
            k: v
            for k, v in lm.items()
            if k
            in (
                "scan_layers",
                "remat",
                "dtype",
                "matmul_dtype",
                "position",
                "attention_impl",
                "dropout",
            )
        },
    }
    if peer is not None:
        row.update(
            peer_params=peer["params"],
            peer_step_s=peer["median_step_s"],
            peer_tokens_per_s=peer["tokens_per_s"],
            peer_torch=peer.get("torch"),
            peer_notes=peer.get("notes"),
            speedup_vs_peer=(tokens / step_s) / peer["tokens_per_s"],
        )
    report("lm_train", row)
    print(
        f"\njax: {tokens / step_s:,.0f} tok/s ({step_s:.3f} s/step), "
        f"{row['model_gflops_per_s']:.1f} model GFLOP/s = {100 * row['fraction_of_peak']:.0f}% of "
        f"the {row['matmul_peak_gflops_per_s']:.1f} GFLOP/s {peak_dtype} matmul peak"
        + (
            ""
            if args.no_peer
            else f"; audiolm-pytorch: {row['peer_tokens_per_s']:,.0f} tok/s -> "
            f"{row['speedup_vs_peer']:.2f}x"
        )
    )


if __name__ == "__main__":
    main()
