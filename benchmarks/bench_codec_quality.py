"""Codec quality after a fixed CPU budget, beside Opus at the same bitrate (6 kbps).

Trains a small SoundStream at 6 kbps (soundstream_tiny with 20 RVQ levels x 64 codes: 50 frames/s
x 20 x 6 bits) on the embedded corpus for a fixed number of steps, then reconstructs held-out
speech: the corpus' two held-out voices and, where present, ../shared/audio/conversation_16k.wav
(real telephone speech the codec never saw). Each clip also goes through Opus at 6 kbps
(Debian's opus-tools: `opusenc --bitrate 6`, the non-learned anchor the SoundStream paper
compares with). Metrics: multi-scale mel distance (lower is better), SI-SDR in dB and ViSQOL
(speech mode, MOS-LQO 1-5; visqol-python) (higher is better).

    python benchmarks/bench_codec_quality.py [--steps 600] [--workdir runs/bench_codec_quality]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.common import report  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "audio")


def opus_roundtrip(wav: np.ndarray, rate: int, kbps: float) -> np.ndarray:
    from audiolm_jax import dsp

    with tempfile.TemporaryDirectory() as d:
        src, enc, out = (os.path.join(d, n) for n in ("in.wav", "x.opus", "out.wav"))
        dsp.write_audio(src, wav, rate)
        subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), src, enc], check=True)
        subprocess.run(["opusdec", "--quiet", "--rate", str(rate), enc, out], check=True)
        dec, _ = dsp.read_audio(out, rate)
    dec = dec[: len(wav)]
    return np.pad(dec, (0, len(wav) - len(dec)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--workdir", default="runs/bench_codec_quality")
    args = parser.parse_args()

    import jax

    from audiolm_jax import codec, dsp, tasks
    from audiolm_jax.config import load_config
    from audiolm_jax.data import audio
    from audiolm_jax.eval import metrics
    from audiolm_jax.train.trainer import train

    config = load_config("soundstream_tiny")
    config.name = "bench_codec_quality"
    config.codec.quantizer.update(levels=20, codebook_size=64)
    config.train.update(steps=args.steps, eval_every=args.steps, checkpoint_every=args.steps)
    config.loss.adversarial_start = int(0.75 * args.steps)
    t0 = time.time()
    model, train_src, eval_src = tasks.build(config)
    result = train(config, args.workdir, model, train_src, eval_src)
    train_s = time.time() - t0
    c = codec.from_state(model.cfg, result.state.params, result.state.model_state)
    kbps = c.cfg.bitrate / 1000

    clips = {"corpus held-out voices": [], "conversation_16k (real speech)": []}
    for e in audio.corpus_entries("eval"):
        clips["corpus held-out voices"].append(dsp.read_audio(e["path"], c.sample_rate)[0])
    conv = os.path.join(SHARED, "conversation_16k.wav")
    if os.path.exists(conv):
        wav, _ = dsp.read_audio(conv, c.sample_rate)
        wav = dsp.normalize_loudness(wav, -20.0)  # the corpus' level
        clips["conversation_16k (real speech)"] = [
            wav[i : i + 80000] for i in range(0, 400000, 80000)
        ]
    else:
        del clips["conversation_16k (real speech)"]

    rows = {}
    for name, waves in clips.items():
        scores = {"ours": [], "opus": []}
        for wav in waves:
            ours = np.asarray(codec.decode(c, codec.encode(c, wav)))[0, : len(wav)]
            opus = opus_roundtrip(wav, c.sample_rate, kbps)
            for key, y in (("ours", ours), ("opus", opus)):
                y = y.astype(np.float32)
                scores[key].append(
                    {
                        "mel_distance": metrics.mel_distance(wav, y, c.sample_rate),
                        "si_sdr": metrics.si_sdr(wav, y),
                        "visqol": metrics.visqol(wav, y, c.sample_rate),
                    }
                )
        rows[name] = {
            k: {m: float(np.mean([s[m] for s in v])) for m in v[0]} for k, v in scores.items()
        }
        rows[name]["clips"] = len(waves)
    report(
        "codec_quality",
        {
            "what": f"soundstream_tiny at {kbps:g} kbps (20 x 64 codes) after {args.steps} steps "
            f"({train_s / 60:.1f} min of CPU training incl. compile) vs Opus {kbps:g} kbps",
            "train_seconds": train_s,
            "devices": str(jax.devices()[0].platform),
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
