"""AudioLM's piano coherence on the tiny piano pipeline: how often continuations of held-out
pieces stay in their prompt's key (chroma key estimate, relative major/minor counted as the
same scale), against continuations whose coarse stage is given another prompt's semantic
tokens (a prompt in another key). Also how often the codec alone keeps the key (encode +
decode of the same prompts): the ceiling any continuation can reach.

    python launch.py --config=piano_quickstart --workdir=runs/piano_quickstart   # ~17 min
    python benchmarks/bench_piano_coherence.py --workdir runs/piano_quickstart [--prompts 60]
    python launch.py --config=piano_coherence --workdir=runs/piano_coherence     # ~23 min
    python benchmarks/bench_piano_coherence.py --workdir runs/piano_coherence --prompts 240 \
        --samples 3 [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="runs/piano_quickstart")
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--pipeline", default="", help="default: <workdir>/pipeline")
    parser.add_argument("--prompt_seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--samples", type=int, default=1, help="continuations per prompt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from audiolm_jax import codec
    from audiolm_jax.eval.coherence import held_out_pieces, key_coherence, wilson_interval
    from audiolm_jax.eval.key import estimate_key, same_key
    from audiolm_jax.sampling.pipeline import load_pipeline

    pipe = load_pipeline(args.pipeline or os.path.join(args.workdir, "pipeline"))
    prompts = held_out_pieces(args.workdir, args.prompts)
    result = key_coherence(
        pipe,
        prompts,
        prompt_seconds=args.prompt_seconds,
        seconds=args.seconds,
        samples=args.samples,
        seed=args.seed,
    )
    n = int(round((args.prompt_seconds + args.seconds) * pipe.sample_rate))
    kept = 0
    for wav, key in prompts:
        x = wav[:n]
        recon = np.asarray(codec.decode(pipe.codec, codec.encode(pipe.codec, x[None])))[0]
        kept += same_key(estimate_key(recon, pipe.sample_rate)[0], key, relative_ok=True)
    result["codec_keeps_key"] = {
        "in_key": kept,
        "rate": kept / len(prompts),
        "ci95": wilson_interval(kept, len(prompts)),
    }
    report("piano_coherence", {"what": "piano key coherence, tiny pipeline", **result})
    for name in ("pipeline", "shuffled", "codec_keeps_key"):
        r = result[name]
        total = len(prompts) * (args.samples if name != "codec_keeps_key" else 1)
        print(f"{name}: {r['in_key']}/{total} = {r['rate']:.3f} (95% CI {r['ci95']})")
    print(f"one-sided p (pipeline > shuffled): {result['p_value']:.3g}")
    print(
        "share of chroma on the key's scale: pipeline "
        f"{result['pipeline']['in_key_fraction']:.4f}, shuffled "
        f"{result['shuffled']['in_key_fraction']:.4f}, paired one-sided p "
        f"{result['in_key_fraction_p']:.3g}"
    )


if __name__ == "__main__":
    main()
