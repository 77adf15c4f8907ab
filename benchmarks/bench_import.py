"""Imported checkpoints run in our modules against the same checkpoints in `transformers` (issue 6),
as real-time factors (seconds of audio per second of wall time; higher is faster).

- EnCodec: `transformers.EncodecModel(EncodecConfig())` (the released 24 kHz architecture,
  14.9M params, 32 x 1024 RVQ) with seeded random weights and codebooks (transformers initialises
  the codebooks to zeros), saved with `save_pretrained`, imported with
  `audiolm_jax.importers.encodec` into our codec. Encode at 6 kbps (8 levels: our jitted
  `codec.encode(c, wav, levels=8)` against `model.encode(x, bandwidth=6.0)`) and decode
  (`codec.decode` against `model.decode`) timed separately. A sanity check (not timed): our codes
  equal transformers' on >= 90% of frames (the rest are float32 near-ties).
- HuBERT: `transformers.HubertModel(HubertConfig())` (HuBERT base, random weights), imported with
  `audiolm_jax.importers.hubert`; features of layer 9 (the reference tokenizer's layer): our
  jitted `semantic.truncated_features` on the model truncated to 9 layers against
  `model(x, output_hidden_states=True).hidden_states[9]` with the encoder cut to its first 9
  layers (the full 12-layer forward is also timed, reported in the JSON row). Ours pads 40 zeros
  each side (250 frames per 5 s, one per 320 samples), transformers does not (249).

Same audio for both: the first `--seconds` of the embedded corpus (train split, concatenated),
cut into 5 s clips, one clip at a time (batch 1); CPU torch with 2 threads under
`torch.inference_mode()`. An untimed warm-up pass over every clip (our compilation), then the
median of `--repeats` passes.

    python benchmarks/bench_import.py [--seconds 20] [--repeats 5] [--malloc off|on]

`--malloc on`: `audiolm_jax.host.tune_malloc` for the whole process, so transformers' torch
runs under the same glibc settings as our modules.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# tests/reference_models.py: the stand-in models the tests use too.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

import numpy as np  # noqa: E402
from reference_models import fill_encodec_codebooks  # noqa: E402

from benchmarks.common import add_malloc_flag, median_time, report, setup_malloc  # noqa: E402

CLIP_S = 5.0
HOP = 320
LAYER = 9


def corpus_clips(seconds: float, sample_rate: int) -> np.ndarray:
    """`[n_clips, 5 s]` float32: the train corpus concatenated in order, cut into 5 s clips
    (zero-padded at the end); 5 s is a whole number of 320-sample hops at 16 and 24 kHz."""
    from audiolm_jax import dsp
    from audiolm_jax.data import audio

    n_clips = max(1, int(round(seconds / CLIP_S)))
    n = int(CLIP_S * sample_rate) // HOP * HOP
    parts, total = [], 0
    for entry in audio.corpus_entries("train"):
        wav, _ = dsp.read_audio(entry["path"], sample_rate)
        parts.append(np.asarray(wav, np.float32))
        total += len(wav)
        if total >= n_clips * n:
            break
    cat = np.concatenate(parts)
    cat = np.pad(cat, (0, max(0, n_clips * n - len(cat))))[: n_clips * n]
    return cat.reshape(n_clips, n)


def bench_encodec(seconds: float, repeats: int, tmp: str) -> dict:
    import torch
    import transformers

    from audiolm_jax import codec
    from audiolm_jax.codec.model import CodecConfig
    from audiolm_jax.importers.encodec import import_checkpoint

    clips = corpus_clips(seconds, 24000)
    audio_s = clips.shape[0] * clips.shape[1] / 24000
    torch.manual_seed(0)
    model = transformers.EncodecModel(transformers.EncodecConfig()).eval()
    fill_encodec_codebooks(model, clips[:1], seed=1)
    n_params = sum(p.numel() for p in model.parameters())
    path = os.path.join(tmp, "encodec")
    model.save_pretrained(path)
    config, params, state = import_checkpoint(path)
    c = codec.from_state(CodecConfig.from_config(config.codec), params, state)
    levels = codec.levels_for_bitrate(c, 6.0)
    assert levels == 8, levels

    wavs = [clips[i : i + 1] for i in range(len(clips))]
    xs = [torch.from_numpy(w)[:, None] for w in wavs]  # [1, 1, n]

    def ours_encode():
        return [codec.encode(c, w, levels=levels).block_until_ready() for w in wavs]

    def theirs_encode():
        with torch.inference_mode():
            return [model.encode(x, bandwidth=6.0) for x in xs]

    codes_ours = ours_encode()
    outs = theirs_encode()
    # Sanity (not timed): the same codes on most frames; `[1, frames, 8]` from `[1, 1, 8, frames]`.
    codes_hf = [np.transpose(o.audio_codes[0].numpy(), (0, 2, 1)) for o in outs]
    same = np.concatenate(
        [np.all(np.asarray(a) == b, -1).ravel() for a, b in zip(codes_ours, codes_hf)]
    )
    assert codes_ours[0].shape == codes_hf[0].shape, (codes_ours[0].shape, codes_hf[0].shape)
    assert same.mean() >= 0.9, f"codes equal on only {same.mean():.1%} of frames"

    def ours_decode():
        for k in codes_ours:
            codec.decode(c, k).block_until_ready()

    def theirs_decode():
        with torch.inference_mode():
            for o in outs:
                model.decode(o.audio_codes, o.audio_scales)

    t_enc, enc_times = median_time(ours_encode, repeats)
    t_enc_hf, enc_times_hf = median_time(theirs_encode, repeats)
    t_dec, dec_times = median_time(ours_decode, repeats)
    t_dec_hf, dec_times_hf = median_time(theirs_decode, repeats)
    return {
        "audio_s": audio_s,
        "clips": len(wavs),
        "params": int(n_params),
        "levels": levels,
        "codes_equal_frames": float(same.mean()),
        "encode_rtf": audio_s / t_enc,
        "encode_rtf_transformers": audio_s / t_enc_hf,
        "encode_ratio": t_enc_hf / t_enc,
        "decode_rtf": audio_s / t_dec,
        "decode_rtf_transformers": audio_s / t_dec_hf,
        "decode_ratio": t_dec_hf / t_dec,
        "encode_times": enc_times,
        "encode_times_transformers": enc_times_hf,
        "decode_times": dec_times,
        "decode_times_transformers": dec_times_hf,
    }


def bench_hubert(seconds: float, repeats: int, tmp: str) -> dict:
    import jax
    import jax.numpy as jnp
    import torch
    import transformers

    from audiolm_jax import semantic
    from audiolm_jax.importers.hubert import import_checkpoint

    clips = corpus_clips(seconds, 16000)
    audio_s = clips.shape[0] * clips.shape[1] / 16000
    torch.manual_seed(0)
    model = transformers.HubertModel(transformers.HubertConfig()).eval()
    path = os.path.join(tmp, "hubert")
    model.save_pretrained(path)
    config, params, _ = import_checkpoint(path)
    cfg_l, params_l = semantic.truncate(semantic.model_config(config), params["model"], LAYER)
    n_params = sum(x.size for x in jax.tree.leaves(params_l))
    feats = jax.jit(semantic.truncated_features, static_argnums=0)

    wavs = [jnp.asarray(clips[i : i + 1]) for i in range(len(clips))]
    xs = [torch.from_numpy(clips[i : i + 1]) for i in range(len(clips))]

    def ours():
        return [feats(cfg_l, params_l, w).block_until_ready() for w in wavs]

    def theirs():
        with torch.inference_mode():
            return [model(x, output_hidden_states=True).hidden_states[LAYER] for x in xs]

    # Sanity (not timed): ours = transformers on the wave padded with 40 zeros each side.
    padded = torch.from_numpy(np.pad(clips[:1], ((0, 0), (40, 40))))
    with torch.inference_mode():
        ref = model(padded, output_hidden_states=True).hidden_states[LAYER].numpy()
    got = np.asarray(ours()[0])
    assert got.shape == ref.shape, (got.shape, ref.shape)
    rel_err = float(np.abs(got - ref).max() / max(1.0, np.abs(ref).max()))
    assert rel_err < 1e-3, rel_err
    frames = (got.shape[1], theirs()[0].shape[1])

    t_full, full_times = median_time(theirs, repeats)  # all 12 layers run
    t_ours, times = median_time(ours, repeats)
    model.encoder.layers = model.encoder.layers[:LAYER]
    t_hf, times_hf = median_time(theirs, repeats)
    return {
        "audio_s": audio_s,
        "clips": len(wavs),
        "params_to_layer": int(n_params),
        "frames_per_clip_ours_transformers": frames,
        "max_rel_err_vs_padded": rel_err,
        "rtf": audio_s / t_ours,
        "rtf_transformers": audio_s / t_hf,
        "ratio": t_hf / t_ours,
        "rtf_transformers_12_layers": audio_s / t_full,
        "times": times,
        "times_transformers": times_hf,
        "times_transformers_12_layers": full_times,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=5)
    add_malloc_flag(parser)
    args = parser.parse_args()
    # Before any JAX computation; torch runs in this process too, under the same settings.
    malloc_tuned = bool(setup_malloc(args.malloc))

    import torch
    import transformers

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        enc = bench_encodec(args.seconds, args.repeats, tmp)
        hub = bench_hubert(args.seconds, args.repeats, tmp)
    row = {
        "what": (
            f"imported EnCodec 24 kHz (6 kbps) and HuBERT base (layer {LAYER}) against "
            f"transformers {transformers.__version__}, {enc['clips']} x {CLIP_S:g} s clips, batch 1"
        ),
        "encodec": enc,
        "hubert": hub,
        "malloc_tuned": malloc_tuned,
    }
    report("import_rtf", row)
    print()
    print("| what | audiolm-jax | transformers | ratio |")
    print("| --- | --- | --- | --- |")
    for name, ours, theirs, ratio in (
        (
            "EnCodec encode, 6 kbps",
            enc["encode_rtf"],
            enc["encode_rtf_transformers"],
            enc["encode_ratio"],
        ),
        ("EnCodec decode", enc["decode_rtf"], enc["decode_rtf_transformers"], enc["decode_ratio"]),
        (f"HuBERT layer-{LAYER} features", hub["rtf"], hub["rtf_transformers"], hub["ratio"]),
    ):
        print(f"| {name} | {ours:.1f} s/s | {theirs:.1f} s/s | **{ratio:.2f}x** |")


if __name__ == "__main__":
    main()
