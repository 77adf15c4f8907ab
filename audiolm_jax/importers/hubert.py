"""HuBERT from a Hugging Face checkpoint (`HubertModel`, or a model that wraps it under
`hubert.`, such as `HubertForCTC`), saved with `save_pretrained`, into
`audiolm_jax.semantic.hubert`.

    python launch.py --mode=import --source=path/to/hubert-base-ls960 --workdir=runs/hubert
    python launch.py --mode=fit_kmeans --workdir=runs/hubert         # layer 9, K = 500

Tensor map (HF -> ours, linear weights transposed to [in, out], convs to [k, in, out]):

    feature_extractor.conv_layers.i.conv.{weight,bias}   feature_encoder/conv_i[_bias]
    feature_extractor.conv_layers.0.layer_norm ("group") feature_encoder/norm_0_{scale,bias}
    feature_extractor.conv_layers.i.layer_norm ("layer") feature_encoder/norm_i
    feature_projection.layer_norm / .projection          proj_norm / proj
    encoder.pos_conv_embed.conv (weight norm over dim 2, folded) [+ .batch_norm]   pos_conv
    encoder.layer_norm                                   encoder_norm
    encoder.layers.i.attention.{q,k,v,out}_proj          layers/{query,key,value,out}[i]
    encoder.layers.i.layer_norm / final_layer_norm       layers/attn_norm / ffn_norm [i]
    encoder.layers.i.feed_forward.{intermediate,output}_dense   layers/wi / wo [i]

`masked_spec_embed` (SpecAugment, training only) and the heads of wrapping models (`lm_head`,
...) are not imported.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from audiolm_jax.importers.common import (
    CheckpointImportError,
    Tensors,
    check_model_type,
    read_hf_config,
    read_state_dict,
)
from audiolm_jax.semantic.hubert import HubertConfig, param_shapes

log = logging.getLogger("audiolm_jax")

# The audiolm-pytorch reference's HuBERT-base tokenizer: layer 9, 500 k-means clusters.
SEMANTIC_LAYER = 9
SEMANTIC_K = 500


def _linear(t: Tensors, name: str, d_in: int, d_out: int) -> dict:
    w = t.take(f"{name}.weight", (d_out, d_in))
    return {"kernel": w.T, "bias": t.take(f"{name}.bias", (d_out,))}


def _norm(t: Tensors, name: str, d: int) -> dict:
    return {"scale": t.take(f"{name}.weight", (d,)), "bias": t.take(f"{name}.bias", (d,))}


def hf_to_params(tensors: Tensors, cfg: HubertConfig) -> dict:
    """Flax params of `HubertNet(cfg)` from the tensors of a transformers `HubertModel`. Raises
    CheckpointImportError naming the tensor that is missing or of the wrong shape."""
    t = tensors
    fe: dict[str, Any] = {}
    c_in = 1
    for i, (c, k) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel)):
        base = f"feature_extractor.conv_layers.{i}"
        fe[f"conv_{i}"] = t.take(f"{base}.conv.weight", (c, c_in, k)).transpose(2, 1, 0)
        if cfg.conv_bias:
            fe[f"conv_{i}_bias"] = t.take(f"{base}.conv.bias", (c,))
        if cfg.feat_extract_norm == "layer":
            fe[f"norm_{i}"] = _norm(t, f"{base}.layer_norm", c)
        elif i == 0:
            norm = _norm(t, f"{base}.layer_norm", c)
            fe["norm_0_scale"], fe["norm_0_bias"] = norm["scale"], norm["bias"]
        c_in = c
    d, f = cfg.hidden_size, cfg.intermediate_size
    params: dict[str, Any] = {"feature_encoder": fe}
    if cfg.feat_proj_layer_norm:
        params["proj_norm"] = _norm(t, "feature_projection.layer_norm", cfg.conv_dim[-1])
    params["proj"] = _linear(t, "feature_projection.projection", cfg.conv_dim[-1], d)

    k, g = cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
    pc = "encoder.pos_conv_embed"
    w = t.weight_norm(f"{pc}.conv", (d, d // g, k), axis=2)
    pos: dict[str, Any] = {"kernel": w.transpose(2, 1, 0), "bias": t.take(f"{pc}.conv.bias", (d,))}
    if cfg.conv_pos_batch_norm:
        bn = f"{pc}.batch_norm"
        pos.update(
            bn_scale=t.take(f"{bn}.weight", (d,)),
            bn_bias=t.take(f"{bn}.bias", (d,)),
            bn_mean=t.take(f"{bn}.running_mean", (d,)),
            bn_var=t.take(f"{bn}.running_var", (d,)),
        )
    params["pos_conv"] = pos
    params["encoder_norm"] = _norm(t, "encoder.layer_norm", d)

    h, hd = cfg.num_attention_heads, cfg.head_dim
    layers = []
    for i in range(cfg.num_hidden_layers):
        base = f"encoder.layers.{i}"
        layer = {}
        for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            lin = _linear(t, f"{base}.attention.{theirs}", d, d)
            layer[ours] = {
                "kernel": lin["kernel"].reshape(d, h, hd),
                "bias": lin["bias"].reshape(h, hd),
            }
        lin = _linear(t, f"{base}.attention.out_proj", d, d)
        layer["out"] = {"kernel": lin["kernel"].reshape(h, hd, d), "bias": lin["bias"]}
        layer["attn_norm"] = _norm(t, f"{base}.layer_norm", d)
        layer["ffn_norm"] = _norm(t, f"{base}.final_layer_norm", d)
        layer["wi"] = _linear(t, f"{base}.feed_forward.intermediate_dense", d, f)
        layer["wo"] = _linear(t, f"{base}.feed_forward.output_dense", f, d)
        layers.append(layer)
    if layers:
        params["layers"] = _stack(layers)
    params = _float32(params)
    _check_tree(params, cfg)
    return params


def _stack(layers: list[dict]) -> dict:
    if isinstance(layers[0], dict):
        return {k: _stack([layer[k] for layer in layers]) for k in layers[0]}
    return np.stack(layers)


def _float32(tree):
    if isinstance(tree, dict):
        return {k: _float32(v) for k, v in tree.items()}
    return np.ascontiguousarray(tree, dtype=np.float32)


def _check_tree(params: dict, cfg: HubertConfig) -> None:
    """The imported tree has exactly the structure and shapes `HubertNet(cfg)` initialises."""
    import jax

    want = param_shapes(cfg)
    got_shapes = jax.tree.map(lambda a: tuple(a.shape), params)
    want_shapes = jax.tree.map(lambda a: tuple(a.shape), want)
    if got_shapes != want_shapes:
        raise CheckpointImportError(
            f"imported HuBERT params do not match the model's: {got_shapes} vs {want_shapes}"
        )


def project_config(cfg: HubertConfig) -> Any:
    """The project config of an imported HuBERT (configs/base.py `imported_feature_model`):
    model "hubert", its HubertConfig fields, k-means over layer 9 with K = 500 (clamped to the
    model's depth), the embedded corpus."""
    from audiolm_jax.config import base_configs

    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    layer = min(SEMANTIC_LAYER, cfg.num_hidden_layers)
    return base_configs().imported_feature_model("hubert", fields, layer, SEMANTIC_K)


def import_checkpoint(path: str) -> tuple[Any, dict, dict]:
    """(project config, {"model": params}, {}) of the transformers HuBERT checkpoint at `path`
    (a `save_pretrained` folder, or its weights file with `config.json` beside it). Raises
    CheckpointImportError for another model type, a missing tensor or a wrong shape."""
    hf = read_hf_config(path)
    check_model_type(hf, ("hubert",), path)
    try:
        cfg = HubertConfig.from_hf(hf)
    except ValueError as e:
        raise CheckpointImportError(f"{path}: {e}") from e
    state = read_state_dict(path)
    # HubertModel saves its tensors at the top level; HubertForCTC & co. under `hubert.`.
    prefix = "" if "encoder.layer_norm.weight" in state else "hubert."
    if prefix and not any(k.startswith(prefix) for k in state):
        prefix = ""
    tensors = Tensors(state, path, prefix)
    params = hf_to_params(tensors, cfg)
    tensors.finish(
        ignore=(
            prefix + "masked_spec_embed",
            prefix + "encoder.pos_conv_embed.batch_norm.num_batches_tracked",
        )
    )
    log.info(
        "Imported HuBERT from %s: %d layers, d %d, %s norm%s",
        path,
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.feat_extract_norm,
        ", pre-LN" if cfg.do_stable_layer_norm else "",
    )
    return project_config(cfg), {"model": params}, {}
