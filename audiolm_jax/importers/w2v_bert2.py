"""Imports a transformers `Wav2Vec2BertModel` checkpoint (w2v-BERT 2.0, facebook/w2v-bert-2.0,
model_type "wav2vec2-bert") as a semantic feature model (audiolm_jax.semantic.w2v_bert2).

    config, params, model_state = import_checkpoint("path/to/w2v-bert-2.0")

The folder is what `save_pretrained` writes (config.json + model.safetensors); the weights of
a task model (`Wav2Vec2BertForCTC` ...) are read too, their `wav2vec2_bert.` prefix dropped and
the head left out. Supported: position_embeddings_type "relative_key" (w2v-bert-2.0's) or None,
no adapter, no intermediate FFN (transformers' defaults, which its docs say match
facebook/w2v-bert-2.0; that model card's config is not read here). Anything else raises
CheckpointImportError naming the field; see semantic/w2v_bert2.py for what maps and what not.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections
import numpy as np

from audiolm_jax.config import base_configs
from audiolm_jax.importers.common import (
    CheckpointImportError,
    Tensors,
    check_model_type,
    read_hf_config,
    read_state_dict,
)
from audiolm_jax.semantic.w2v_bert2 import (
    FBANK_BINS,
    FBANK_STACK,
    HF_ACTIVATIONS,
    POSITIONS,
    W2VBert2Config,
    W2VBert2Net,
)

MODEL_TYPES = ("wav2vec2-bert",)
TASK_PREFIX = "wav2vec2_bert."  # Wav2Vec2BertFor* wrap the model under this name


def default_layer(num_layers: int) -> int:
    """The layer k-means clusters by default: 17 of 24, scaled to other depths. Upper-middle
    layers of speech SSL models are the most phonetic (AudioLM takes w2v-BERT's 19 of 24);
    MaskGCT (Wang et al. 2024) clusters layer 17 of w2v-BERT 2.0."""
    return min(max(round(num_layers * 17 / 24), 1), num_layers)


def _check_supported(hf: dict, path: str) -> None:
    def fail(why: str):
        raise CheckpointImportError(f"{path}: {why} (config.json); not supported by this importer")

    if hf.get("add_adapter", False):
        fail("add_adapter is true: the adapter layers after the encoder")
    if hf.get("use_intermediate_ffn_before_adapter", False):
        fail("use_intermediate_ffn_before_adapter is true: the intermediate FFN")
    pos = hf.get("position_embeddings_type", "relative_key")
    if pos not in POSITIONS:
        fail(
            f"position_embeddings_type={pos!r} (only 'relative_key' or null map onto our conformer)"
        )
    act = hf.get("hidden_act", "swish")
    if act not in HF_ACTIVATIONS:
        fail(f"hidden_act={act!r} (known: {sorted(HF_ACTIVATIONS)})")
    dim = hf.get("feature_projection_input_dim", FBANK_BINS * FBANK_STACK)
    if dim != FBANK_BINS * FBANK_STACK:
        fail(f"feature_projection_input_dim={dim}: the fbank front end gives 160")
    if hf.get("conv_depthwise_kernel_size", 31) % 2 != 1:
        fail("conv_depthwise_kernel_size is even")
    if hf.get("hidden_size", 1024) % hf.get("num_attention_heads", 16):
        fail("hidden_size is not a multiple of num_attention_heads")


def project_config(cfg: W2VBert2Config) -> ml_collections.ConfigDict:
    """The project config of an imported w2v-BERT 2.0 (configs/base.py
    `imported_feature_model`): model "w2v_bert2", its W2VBert2Config fields, k-means over
    `default_layer` with K = 1024, the embedded corpus."""
    fields = dataclasses.asdict(cfg)
    for name in ("attention_impl", "position_embeddings_type"):  # may be None: keep them settable
        fields[name] = ml_collections.FieldReference(fields[name], field_type=str)
    layer = default_layer(cfg.num_hidden_layers)
    return base_configs().imported_feature_model("w2v_bert2", fields, layer, 1024)


def _linear(t: Tensors, name: str, d_in: int, d_out: int) -> dict:
    return {
        "kernel": t.take(f"{name}.weight", (d_out, d_in)).T,
        "bias": t.take(f"{name}.bias", (d_out,)),
    }


def _norm(t: Tensors, name: str, d: int) -> dict:
    return {"scale": t.take(f"{name}.weight", (d,)), "bias": t.take(f"{name}.bias", (d,))}


def _layer(t: Tensors, i: int, cfg: W2VBert2Config) -> dict:
    e, f, h = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    d, k = e // h, cfg.conv_depthwise_kernel_size
    p = f"encoder.layers.{i}."
    out: dict = {}
    for ours, theirs in (("ffn_1", "ffn1"), ("ffn_2", "ffn2")):
        out[ours] = {
            "norm": _norm(t, f"{p}{theirs}_layer_norm", e),
            "wi": _linear(t, f"{p}{theirs}.intermediate_dense", e, f),
            "wo": _linear(t, f"{p}{theirs}.output_dense", f, e),
        }
    out["attn_norm"] = _norm(t, f"{p}self_attn_layer_norm", e)
    for ours, theirs in (("query", "linear_q"), ("key", "linear_k"), ("value", "linear_v")):
        lin = _linear(t, f"{p}self_attn.{theirs}", e, e)
        out[ours] = {"kernel": lin["kernel"].reshape(e, h, d), "bias": lin["bias"].reshape(h, d)}
    lin = _linear(t, f"{p}self_attn.linear_out", e, e)
    out["out"] = {"kernel": lin["kernel"].reshape(h, d, e), "bias": lin["bias"]}
    if cfg.position_embeddings_type == "relative_key":
        n = cfg.left_max_position_embeddings + cfg.right_max_position_embeddings + 1
        out["distance_embedding"] = t.take(f"{p}self_attn.distance_embedding.weight", (n, d))
    c = f"{p}conv_module."
    out["conv"] = {
        "norm": _norm(t, f"{c}layer_norm", e),
        "pointwise_in": {"kernel": t.take(f"{c}pointwise_conv1.weight", (2 * e, e, 1))[:, :, 0].T},
        "depthwise": t.take(f"{c}depthwise_conv.weight", (e, 1, k))[:, 0, :].T,
        "depthwise_norm": _norm(t, f"{c}depthwise_layer_norm", e),
        "pointwise_out": {"kernel": t.take(f"{c}pointwise_conv2.weight", (e, e, 1))[:, :, 0].T},
    }
    out["final_norm"] = _norm(t, f"{p}final_layer_norm", e)
    return out


def convert(state: dict[str, np.ndarray], cfg: W2VBert2Config, source: str) -> dict:
    """Flax params of `W2VBert2Net` from a Wav2Vec2BertModel state dict (names without or with
    the `wav2vec2_bert.` prefix)."""
    prefix = TASK_PREFIX if f"{TASK_PREFIX}feature_projection.projection.weight" in state else ""
    t = Tensors(state, source, prefix)
    d_in = cfg.feature_projection_input_dim
    params: dict = {
        "feature_norm": _norm(t, "feature_projection.layer_norm", d_in),
        "feature_proj": _linear(t, "feature_projection.projection", d_in, cfg.hidden_size),
    }
    if cfg.num_hidden_layers:
        params["encoder"] = {
            "layers": _stack([_layer(t, i, cfg) for i in range(cfg.num_hidden_layers)])
        }
    if t.has(f"encoder.layers.{cfg.num_hidden_layers}.final_layer_norm.weight"):
        raise CheckpointImportError(
            f"{source}: holds more encoder layers than config.json's num_hidden_layers="
            f"{cfg.num_hidden_layers}"
        )
    t.finish(ignore=(prefix + "masked_spec_embed",))
    params = _float32(params)
    _check_tree(params, cfg, source)
    return params


def _check_tree(params: dict, cfg: W2VBert2Config, source: str) -> None:
    """The imported tree has exactly the structure and shapes `W2VBert2Net(cfg)` initialises."""
    import flax.linen as nn
    import jax

    feats = jax.ShapeDtypeStruct((1, 2, cfg.feature_projection_input_dim), jnp.float32)
    want = jax.eval_shape(lambda x: nn.unbox(W2VBert2Net(cfg).init(jax.random.key(0), x)), feats)
    want = jax.tree.map(lambda a: tuple(a.shape), want["params"])
    got = jax.tree.map(lambda a: tuple(a.shape), params)
    if got != want:
        raise CheckpointImportError(
            f"{source}: imported params do not match W2VBert2Net's: {got} vs {want}"
        )


def _stack(trees: list[dict]) -> dict:
    first = trees[0]
    if isinstance(first, dict):
        return {k: _stack([tr[k] for tr in trees]) for k in first}
    return np.stack(trees)


def _float32(tree):
    if isinstance(tree, dict):
        return {k: _float32(v) for k, v in tree.items()}
    return np.ascontiguousarray(tree, dtype=np.float32)


def import_checkpoint(path: str) -> tuple[ml_collections.ConfigDict, dict, dict]:
    """(project config, {"model": params}, model_state {}) of the Wav2Vec2BertModel checkpoint
    at `path` (a save_pretrained folder, or its weights file with config.json beside it).
    Raises CheckpointImportError for another model type, an unsupported config, a missing
    tensor or a tensor of the wrong shape (naming it)."""
    hf = read_hf_config(path)
    check_model_type(hf, MODEL_TYPES, path)
    _check_supported(hf, path)
    try:
        cfg = W2VBert2Config.from_hf(hf)
        cfg.conformer  # noqa: B018 (validates the options)
    except (TypeError, ValueError) as e:
        raise CheckpointImportError(f"{path}: {e}") from e
    params = convert(read_state_dict(path), cfg, path)
    return project_config(cfg), {"model": params}, {}
