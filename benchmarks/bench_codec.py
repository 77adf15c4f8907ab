"""Encode and decode speed of the paper-size SoundStream (16 kHz, C = 32, D = 128, 12 x 1024 RVQ)
as real-time factors (seconds of audio per second of compute; higher is faster).

audiolm-jax's jitted `codec.encode` / `codec.decode` against audiolm-pytorch's SoundStream of the
same size (`tokenize` / `decode_from_codebook_indices`, CPU torch, 2 threads, its local attention
off); the peer runs first, in its own venv. Both have random weights (speed does not depend on
them).

    python benchmarks/bench_codec.py [--seconds 10] [--repeats 5] [--no-peer]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import median_time, report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()

    peer = None
    if not args.no_peer:
        from benchmarks.peer_env import run_peer

        peer = run_peer(
            "peer_audiolm_pytorch.py",
            "codec",
            "--seconds",
            str(args.seconds),
            "--batch",
            str(args.batch),
            "--repeats",
            str(args.repeats),
        )

    import flax.linen as nn

    from audiolm_jax import codec
    from audiolm_jax.codec.model import CodecConfig, init_generator
    from audiolm_jax.config import load_config

    config = load_config("soundstream_tpu")
    config.codec.seanet.dtype = "float32"  # bf16 is for accelerators; CPU computes fp32
    cfg = CodecConfig.from_config(config.codec)
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal((args.batch, int(args.seconds * cfg.sample_rate)))).astype(
        np.float32
    )
    params, qstate = jax.jit(lambda w: init_generator(cfg, jax.random.key(0), w))(wav[:, :32000])
    c = codec.from_state(cfg, {"generator": nn.unbox(params)}, {"quantizer": qstate})
    n_params = sum(x.size for x in jax.tree.leaves(c.params)) + qstate["codebook"].size
    enc, dec = jax.jit(codec.encode), jax.jit(codec.decode)
    codes = enc(c, wav).block_until_ready()
    t_enc, enc_times = median_time(lambda: enc(c, wav).block_until_ready(), args.repeats)
    t_dec, dec_times = median_time(lambda: dec(c, codes).block_until_ready(), args.repeats)
    audio = args.batch * args.seconds
    row = {
        "what": f"paper-size SoundStream encode/decode, batch {args.batch} x {args.seconds:g} s",
        "params_with_codebooks": int(n_params),
        "encode_rtf": audio / t_enc,
        "decode_rtf": audio / t_dec,
        "encode_times": enc_times,
        "decode_times": dec_times,
    }
    if peer:
        row["peer"] = peer
        row["encode_speedup"] = row["encode_rtf"] / peer["encode_rtf"]
        row["decode_speedup"] = row["decode_rtf"] / peer["decode_rtf"]
    report("codec_rtf", row)


if __name__ == "__main__":
    main()
