"""EnCodec (Defossez et al. 2022, arXiv:2210.13438) from a Hugging Face `EncodecModel`
checkpoint into our codec (`audiolm_jax.codec`), with the same codes and audio.

    python launch.py --mode=import --from=encodec --checkpoint=path/to/encodec_24khz \\
        --workdir=runs/encodec_24khz
    c = codec.load("runs/encodec_24khz")          # then encode/decode as any trained codec
    codes = codec.encode(c, wav, levels=codec.levels_for_bitrate(c, 6.0))   # 6 kbps: 8 levels

What maps: the SEANet encoder and decoder (weight-normalised causal convolutions with reflect
padding, one residual unit per block narrowing to width / 2 with a 1x1 skip convolution, the
two-layer residual LSTM at the bottleneck) and the 32-level residual quantizer (1024 codes of
dim 128, nearest by Euclidean distance). Weight norm stays a parametrisation (kernel = v and
scale = g), so an imported codec can be fine-tuned like one trained here; the codebooks and
their EMA statistics (cluster_size, embed_avg) become the RVQ state.

What does not: the 48 kHz model (stereo, 1 s chunks with overlap-add, per-chunk loudness
normalisation, time-group norm) and non-causal variants; these raise CheckpointImportError.
Our `encode` pads the end of the audio with zeros to whole frames where EnCodec reflects it, so
the last frame's codes can differ for audio that is not a multiple of the hop (320 samples).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from audiolm_jax.importers.common import (
    CheckpointImportError,
    Tensors,
    check_model_type,
    read_hf_config,
    read_state_dict,
)

log = logging.getLogger("audiolm_jax")


def codec_section(hf: dict, source: str = "config.json") -> dict:
    """The fields of our `config.codec` an EnCodec config.json sets, over configs/base.py's
    soundstream() (raises for what our codec cannot run)."""
    get = lambda key, default=None: hf.get(key, default)
    unsupported = {
        "audio_channels": (get("audio_channels", 1), 1),
        "norm_type": (get("norm_type", "weight_norm"), "weight_norm"),
        "use_causal_conv": (get("use_causal_conv", True), True),
        "normalize": (get("normalize", False), False),
        "chunk_length_s": (get("chunk_length_s"), None),
        "trim_right_ratio": (float(get("trim_right_ratio", 1.0)), 1.0),
    }
    for key, (value, want) in unsupported.items():
        if value != want:
            raise CheckpointImportError(
                f"{source}: {key}={value!r} is not supported (the 24 kHz EnCodec has {want!r}; "
                "the 48 kHz stereo model with chunking and normalisation does not map)"
            )
    if get("kernel_size", 7) != get("last_kernel_size", 7):
        raise CheckpointImportError(
            f"{source}: kernel_size {get('kernel_size')} != last_kernel_size "
            f"{get('last_kernel_size')}: our decoder's last convolution uses kernel_size"
        )
    hidden = int(get("hidden_size", 128))
    codebook_dim = get("codebook_dim") or hidden
    if int(codebook_dim) != hidden:
        raise CheckpointImportError(
            f"{source}: codebook_dim {codebook_dim} != hidden_size {hidden}"
        )
    ratios = [int(r) for r in get("upsampling_ratios", [8, 5, 4, 2])]
    rate = int(get("sampling_rate", 24000))
    hop = math.prod(ratios)
    frame_rate = math.ceil(rate / hop)
    bandwidths = get("target_bandwidths", [1.5, 3.0, 6.0, 12.0, 24.0])
    size = int(get("codebook_size", 1024))
    # HF EncodecConfig.num_quantizers: the most levels the top bandwidth allows.
    levels = int(1000 * bandwidths[-1] // (frame_rate * math.log2(size)))
    growth, n_res = int(get("dilation_growth_rate", 2)), int(get("num_residual_layers", 1))
    return dict(
        sample_rate=rate,
        seanet=dict(
            channels=int(get("num_filters", 32)),
            dim=hidden,
            strides=list(reversed(ratios)),
            dilations=[growth**j for j in range(n_res)],
            kernel_size=int(get("kernel_size", 7)),
            residual_kernel_size=int(get("residual_kernel_size", 3)),
            last_kernel_size=int(get("last_kernel_size", 7)),
            compress=int(get("compress", 2)),
            conv_shortcut=bool(get("use_conv_shortcut", True)),
            lstm_layers=int(get("num_lstm_layers", 2)),
            weight_norm=True,
            pad_mode=str(get("pad_mode", "reflect")),
        ),
        # The rest of the quantizer section is configs/base.py soundstream()'s; fine-tuning an
        # imported codec starts from its trained codebooks, so no k-means restart.
        quantizer=dict(levels=levels, codebook_size=size, kmeans_init=False),
    )


def _wn(t: Tensors, name: str, v_shape: tuple, g_size: int) -> tuple[np.ndarray, np.ndarray]:
    parts = t.weight_norm_parts(f"{name}.conv", v_shape)
    if parts is None:
        raise CheckpointImportError(
            f"{t.source}: {name}.conv has no weight-norm tensors (parametrizations.weight."
            "original0/1 or weight_g/weight_v); EnCodec's norm_type is weight_norm"
        )
    g, v = parts
    if g.size != g_size:
        raise CheckpointImportError(
            f"{t.source}: tensor {name}.conv weight-norm g has {g.size} entries, want {g_size}"
        )
    return g.reshape(g_size), v


def _conv(t: Tensors, name: str, cin: int, cout: int, k: int) -> dict:
    """A weight-normalised Conv1d [out, in, k] -> our {kernel [k, in, out], scale [out], bias}."""
    g, v = _wn(t, name, (cout, cin, k), cout)
    bias = t.take(f"{name}.conv.bias", (cout,))
    return {"kernel": np.transpose(v, (2, 1, 0)), "scale": g, "bias": bias}


def _conv_transpose(t: Tensors, name: str, cin: int, cout: int, k: int) -> dict:
    """ConvTranspose1d [in, out, k] (weight norm over dim 0 = in) -> {kernel [k, in, out],
    scale [in], bias}."""
    g, v = _wn(t, name, (cin, cout, k), cin)
    bias = t.take(f"{name}.conv.bias", (cout,))
    return {"kernel": np.transpose(v, (2, 0, 1)), "scale": g, "bias": bias}


def _lstm(t: Tensors, name: str, dim: int, layers: int) -> dict:
    out = {}
    for i in range(layers):
        out[f"wi_{i}"] = t.take(f"{name}.lstm.weight_ih_l{i}", (4 * dim, dim)).T
        out[f"wh_{i}"] = t.take(f"{name}.lstm.weight_hh_l{i}", (4 * dim, dim)).T
        out[f"bias_{i}"] = t.take(f"{name}.lstm.bias_ih_l{i}", (4 * dim,)) + t.take(
            f"{name}.lstm.bias_hh_l{i}", (4 * dim,)
        )
    return out


def _resblock(t: Tensors, name: str, dim: int, seanet: dict) -> dict:
    hidden = dim // seanet["compress"]
    out = {
        "conv": _conv(t, f"{name}.block.1", dim, hidden, seanet["residual_kernel_size"]),
        "proj": _conv(t, f"{name}.block.3", hidden, dim, 1),
    }
    if seanet["conv_shortcut"]:
        out["shortcut"] = _conv(t, f"{name}.shortcut", dim, dim, 1)
    return out


def hf_to_params(t: Tensors, section: dict) -> tuple[dict, dict]:
    """(generator params {encoder, decoder, quantizer}, RVQ state) from EnCodec's tensors."""
    s = section["seanet"]
    strides, c, n_res = s["strides"], s["channels"], len(s["dilations"])
    k, lk = s["kernel_size"], s["last_kernel_size"]
    enc: dict[str, Any] = {"conv_in": _conv(t, "encoder.layers.0", 1, c, k)}
    width, idx = c, 1
    for i, stride in enumerate(strides):
        for j in range(n_res):
            enc[f"block{i}_res{j}"] = _resblock(t, f"encoder.layers.{idx}", width, s)
            idx += 1
        idx += 1  # ELU
        enc[f"block{i}_down"] = _conv(t, f"encoder.layers.{idx}", width, 2 * width, 2 * stride)
        width, idx = 2 * width, idx + 1
    enc["lstm"] = _lstm(t, f"encoder.layers.{idx}", width, s["lstm_layers"])
    enc["conv_out"] = _conv(t, f"encoder.layers.{idx + 2}", width, s["dim"], lk)

    dec: dict[str, Any] = {"conv_in": _conv(t, "decoder.layers.0", s["dim"], width, k)}
    dec["lstm"] = _lstm(t, "decoder.layers.1", width, s["lstm_layers"])
    idx = 2
    for i, stride in enumerate(reversed(strides)):
        idx += 1  # ELU
        dec[f"block{i}_up"] = _conv_transpose(
            t, f"decoder.layers.{idx}", width, width // 2, 2 * stride
        )
        width, idx = width // 2, idx + 1
        for j in range(n_res):
            dec[f"block{i}_res{j}"] = _resblock(t, f"decoder.layers.{idx}", width, s)
            idx += 1
    dec["conv_out"] = _conv(t, f"decoder.layers.{idx + 1}", width, 1, lk)

    q = section["quantizer"]
    size, dim = q["codebook_size"], s["dim"]
    books, sizes, sums = [], [], []
    for lvl in range(q["levels"]):
        name = f"quantizer.layers.{lvl}.codebook"
        books.append(t.take(f"{name}.embed", (size, dim)))
        sizes.append(t.take(f"{name}.cluster_size", (size,)))
        sums.append(t.take(f"{name}.embed_avg", (size, dim)))
    state = {
        "codebook": np.stack(books),
        "cluster_size": np.stack(sizes),
        "embed_sum": np.stack(sums),
    }
    return {"encoder": enc, "decoder": dec, "quantizer": {}}, state


def import_checkpoint(path: str) -> tuple[Any, dict, dict]:
    """(project config, params, model_state) of the EnCodec checkpoint at `path` (a folder
    with config.json and model.safetensors / pytorch_model.bin), in the layout the trainer
    saves SoundStream: params {"generator": ...}, model_state {"quantizer": ..., "step"}."""
    from audiolm_jax.config import base_configs

    hf = read_hf_config(path)
    check_model_type(hf, ("encodec",), path)
    section = codec_section(hf, f"{path}/config.json")
    t = Tensors(read_state_dict(path), path)
    gen, qstate = hf_to_params(t, section)
    t.finish(ignore=tuple(f"quantizer.layers.{i}.codebook.inited" for i in range(1000)))
    config = base_configs().get_base_config()
    config.update(base_configs().soundstream())
    config.codec.update(section)
    config.name = "encodec"
    rate, seanet = section["sample_rate"], section["seanet"]
    log.info(
        "EnCodec %s: %d Hz, hop %d, %d levels x %d codes",
        path,
        rate,
        math.prod(seanet["strides"]),
        section["quantizer"]["levels"],
        section["quantizer"]["codebook_size"],
    )
    step = np.zeros((), np.int32)
    return config, {"generator": gen}, {"quantizer": qstate, "step": step}
