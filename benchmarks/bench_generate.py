"""Seconds to generate 10 s of audio with a trained pipeline (the quickstart's by default):
unconditional and as a continuation of a 1.5 s held-out prompt, batch 1, the paper's
temperatures. Medians of 3 runs after one warm-up (compilation excluded; reported apart).

    python launch.py --config=quickstart --workdir=runs/quickstart   # once
    python benchmarks/bench_generate.py [--pipeline runs/quickstart/pipeline] [--seconds 10]
        [--matmul-dtype bfloat16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks.common import median_time, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", default="runs/quickstart/pipeline")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--matmul-dtype",
        default=None,
        choices=("float32", "bfloat16"),
        help="sample(matmul_dtype=): the stages' Dense matmuls in this dtype",
    )
    args = parser.parse_args()

    from audiolm_jax import dsp
    from audiolm_jax.data import audio
    from audiolm_jax.sampling.pipeline import load_pipeline, sample

    pipe = load_pipeline(args.pipeline)
    wav, _ = dsp.read_audio(audio.corpus_entries("eval")[0]["path"], pipe.sample_rate)
    prompt = wav[: int(1.5 * pipe.sample_rate)]
    mm = args.matmul_dtype
    for name, p in (("unconditional", None), ("continuation of 1.5 s", prompt)):
        t0 = time.perf_counter()
        sample(pipe, p, seconds=args.seconds, rng=jax.random.key(0), matmul_dtype=mm)
        first = time.perf_counter() - t0
        t, times = median_time(
            lambda p=p: sample(
                pipe, p, seconds=args.seconds, rng=jax.random.key(1), matmul_dtype=mm
            ),
            args.repeats,
            warmup=0,
        )
        row = {
            "what": f"generate {args.seconds:g} s, tiny pipeline, {name}"
            + (f", {mm} matmuls" if mm else ""),
            "seconds": t,
            "runs_s": times,
            "first_call_s": first,
            "real_time_factor": args.seconds / t,
            "pipeline": os.path.abspath(args.pipeline),
        }
        report("generate", row)
        print(f"{name}: {t:.2f} s for {args.seconds:g} s ({args.seconds / t:.2f}x real time)")


if __name__ == "__main__":
    main()
