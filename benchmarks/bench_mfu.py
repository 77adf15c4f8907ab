"""MFU of the paper-size semantic stage's train step on this machine's accelerator (issue 10).

    python benchmarks/bench_mfu.py                              # GPU/TPU: bf16, best attention
    python benchmarks/bench_mfu.py --batch 8 --attention cudnn --remat none
    python benchmarks/bench_mfu.py --layers 2 --batch 2 --seq 256   # a CPU smoke run

The model is `semantic_tpu`'s (12 layers, d 1024, 16 heads, FFN 4096, vocab 1028, context 768)
on random token batches, bf16 compute with fp32 params, one device. MFU = model FLOPs from
shapes (`train_flops_per_token`, no credit for recompute) / median step time / the chip's peak
(audiolm_jax.train.perf.PEAK_FLOPS). On a CPU, where no vendor peak applies, the peak is this
machine's jitted 2048^3 fp32 matmul measured in the same run. Target (issue 10): >= 45% on one
H100/H200, ahead of the 35% levanter publishes for a 345M model.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import matmul_peak_fn, median_time, report  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=16, help="sequences per step (one device)")
    p.add_argument("--seq", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--remat", default="none")
    p.add_argument("--attention", default=None, help="einsum | xla | cudnn | pallas (+ rope)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    from audiolm_jax import tasks
    from audiolm_jax.config import load_config
    from audiolm_jax.lm.transformer import TransformerConfig
    from audiolm_jax.train import perf
    from audiolm_jax.train.trainer import init_state, make_optimizers, make_train_step

    c = load_config("semantic_tpu")
    c.lm.update(num_layers=args.layers, dtype=args.dtype, remat=args.remat)
    if args.attention:
        c.lm.attention_impl = args.attention
        if args.attention == "pallas":
            c.lm.position = "rope"
    c.data.update(batch_size=args.batch, seq_len=args.seq)
    cfg = TransformerConfig.from_config(c.lm)
    model, shapes, _ = tasks.build(c, shapes_only=True)
    # The stage's batch (shape-only source: one unpacked example per row), random token ids.
    batch = dict(next(shapes))
    rng = np.random.default_rng(0)
    for key in ("inputs", "targets"):
        if key in batch:
            batch[key] = rng.integers(4, cfg.vocab_size, batch[key].shape).astype(np.int32)
    txs, schedules = make_optimizers(c, model.groups, 1000)
    state = init_state(model, txs, batch, seed=0)
    step = jax.jit(make_train_step(model, txs, schedules), donate_argnums=0)
    holder = {"state": state}
    device_batch = jax.device_put(batch)

    def run():
        holder["state"], metrics = step(holder["state"], device_batch)
        jax.block_until_ready(metrics)

    run()  # compile
    dev = jax.devices()[0]
    peak = perf.peak_flops_per_device(dev.device_kind)
    peak_fn = None
    if peak is None:
        peak_fn, peak_flops = matmul_peak_fn()
    times, peaks = [], []
    for _ in range(args.rounds):
        times.append(median_time(run, args.steps, warmup=0)[0])
        if peak_fn is not None:
            peaks.append(peak_flops / median_time(peak_fn, 5, warmup=0)[0])
    step_s = float(np.median(times))
    peak = peak or float(np.median(peaks))
    flops = model.flops_per_step(batch)
    row = {
        "what": f"semantic stage train step, {args.layers} x 1024, batch {args.batch} x {args.seq}",
        "device": f"{dev.platform} {dev.device_kind}",
        "peak_tflops": peak / 1e12,
        "peak_source": "vendor bf16" if peak_fn is None else "measured fp32 matmul",
        "step_s": step_s,
        "tokens_per_s": args.batch * args.seq / step_s,
        "model_tflops_per_s": flops / step_s / 1e12,
        "mfu": perf.mfu(flops, step_s, peak, 1),
        "lm": {k: c.lm[k] for k in ("dtype", "remat", "attention_impl", "position", "scan_layers")},
        "rounds_s": times,
    }
    report("mfu", row)
    print(
        f"\n{row['device']}: {row['tokens_per_s']:,.0f} tok/s, {row['model_tflops_per_s']:.2f} "
        f"model TFLOP/s = MFU {100 * row['mfu']:.1f}% of {row['peak_tflops']:.3g} TFLOP/s "
        f"({row['peak_source']})"
    )


if __name__ == "__main__":
    main()
