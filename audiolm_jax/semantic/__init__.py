"""Semantic tokens: one layer of a self-supervised speech model, each dimension normalised to
zero mean and unit variance over a corpus, then the id of the nearest k-means centroid
(AudioLM, arXiv:2209.03143 sec. 3.2; ../shared/PAPER.md).

    from audiolm_jax import semantic
    tok = semantic.load("runs/w2v_bert_tiny")      # w2v-BERT checkpoint + its fitted k-means
    ids = semantic.encode(tok, wav)                 # [batch, frames] int32, 25 frames/s

    python launch.py --config=w2v_bert_tiny                          # pretrain w2v-BERT
    python launch.py --config=w2v_bert_tiny --mode=fit_kmeans        # fit k-means on one layer

`Tokenizer` is a pytree (arrays: the model's params up to the chosen layer, the normalisation
and the centroids; static: the config), so `jax.jit(semantic.encode)(tok, wav)` works. No
TensorFlow is imported on this path.

Feature models. Any module of this package with a frozen config dataclass and two pure
functions plugs in: `truncate(cfg, params, layer) -> (cfg, params)` and
`features(cfg, params, wav) -> [batch, frames, d]`, the config giving `sample_rate`,
`frame_rate`, `samples_per_frame`, `d_model`, `num_layers` and `name`. The module is found
from the config's class, so a Tokenizer of any of them is used the same way. `MODELS` maps a
training config's `model` field to its module and config section: our own w2v-BERT, and
imported HuBERT and w2v-BERT 2.0 (`launch.py --mode=import`).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from audiolm_jax import dsp, kmeans

log = logging.getLogger("audiolm_jax")

KMEANS_DIR = "kmeans"  # where fit_kmeans saves, inside the model's workdir

# config.model -> (module, config class); the module's config section is config.<model>.
MODELS = {
    "w2v_bert": ("audiolm_jax.semantic.w2v_bert", "W2VBertConfig"),
    "hubert": ("audiolm_jax.semantic.hubert", "HubertConfig"),
    "w2v_bert2": ("audiolm_jax.semantic.w2v_bert2", "W2VBert2Config"),
}


def model_module(cfg: Any):
    """The module that computes features for a feature-model config (its class's module)."""
    return sys.modules[type(cfg).__module__]


@flax.struct.dataclass
class Tokenizer:
    """Audio -> semantic ids. `params` are the feature model's params that compute `cfg`'s
    last layer (see its module's `truncate`); `mean`/`std` `[d]` normalise each feature
    dimension; `centroids` `[k, d]` live in the normalised space."""

    params: dict
    mean: jax.Array
    std: jax.Array
    centroids: jax.Array
    cfg: Any = flax.struct.field(pytree_node=False)
    layer: int = flax.struct.field(pytree_node=False, default=0)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        """Ids per second (25 for w2v-BERT, 50 for HuBERT and w2v-BERT 2.0, at 16 kHz)."""
        return self.cfg.frame_rate

    @property
    def samples_per_frame(self) -> int:
        return self.cfg.samples_per_frame

    @property
    def vocab_size(self) -> int:
        """k: ids lie in [0, k)."""
        return int(self.centroids.shape[0])


def features(tok: Tokenizer, wav: Any, sample_rate: int | None = None) -> jax.Array:
    """Normalised features `[batch, frames, d]` of the tokenizer's layer (what k-means sees).
    Audio as for `encode`."""
    return _normalised(tok, prepare(tok, wav, sample_rate))


def prepare(tok: Tokenizer, wav: Any, sample_rate: int | None = None) -> jax.Array:
    """Checks and shapes audio: `[samples]` or `[batch, samples]`, resampled on the host (with
    a warning) when `sample_rate` differs, right-padded with zeros to whole frames (640
    samples at 16 kHz). Audio shorter than one frame gives one frame. Raises ValueError for
    wrong rank, empty or non-finite audio."""
    return dsp.prepare_audio(
        wav, tok.sample_rate, tok.samples_per_frame, sample_rate, "semantic tokenizer audio"
    )


def encode(tok: Tokenizer, wav: Any, *, sample_rate: int | None = None) -> jax.Array:
    """Audio -> semantic ids `[batch, frames]` int32, frames = ceil(samples / samples_per_frame)
    (640 at 16 kHz for w2v-BERT: 25 per second; 320 for HuBERT: 50 per second).

    Args:
      tok: from `load` (or `from_parts`).
      wav: `[samples]` or `[batch, samples]` at the tokenizer's rate (or at `sample_rate`,
        then resampled on the host with a warning; that call is not jit-able).
    """
    return _encode(tok, prepare(tok, wav, sample_rate))


def _normalised(tok: Tokenizer, x: jax.Array) -> jax.Array:
    feats = model_module(tok.cfg).features(tok.cfg, tok.params, x).astype(jnp.float32)
    return kmeans.standardize(feats, tok.mean, tok.std)


@jax.jit
def _encode(tok: Tokenizer, x: jax.Array) -> jax.Array:
    return kmeans.assign(_normalised(tok, x), tok.centroids)


@functools.partial(jax.jit, static_argnums=0)
def truncated_features(cfg: Any, params: dict, x: jax.Array) -> jax.Array:
    """Jitted float32 features `[batch, frames, d]` of the last layer of a (cfg, params) pair
    that `truncate` cut: truncate once, then call this for every batch."""
    return model_module(cfg).features(cfg, params, x).astype(jnp.float32)


def truncate(cfg: Any, params: dict, layer: int) -> tuple[Any, dict]:
    """(cfg, params) that compute `layer` of any feature model and nothing past it. The params
    come back as device arrays: numpy params (an importer's) passed to a jitted call would be
    copied in on every call (292 MB for HuBERT base up to layer 9, ~10% of its time); and with
    the layers unrolled, one subtree each, which a jitted call reads in place instead of
    slicing a scanned stack (w2v-BERT tokenization 1.5x faster on a 2-core CPU)."""
    cfg_l, params_l = model_module(cfg).truncate(cfg, params, layer)
    return cfg_l, jax.device_put(params_l)


def layer_features(cfg: Any, params: dict, layer: int, wav: jax.Array) -> jax.Array:
    """Un-normalised features `[batch, frames, d]` of `layer` from a feature model's full params
    (what `fit_kmeans` gathers statistics and clusters over). wav `[batch, samples]`. Slices the
    layer stacks on every call: over many batches, use `truncated_features`."""
    return truncated_features(*truncate(cfg, params, layer), wav)


def from_parts(
    cfg: Any,
    params: dict,
    layer: int,
    centroids: Any,
    mean: Any = None,
    std: Any = None,
) -> Tokenizer:
    """A Tokenizer from a feature model's full params, a layer and k-means centroids (mean 0 /
    std 1 when no normalisation is given)."""
    cfg_l, params_l = truncate(cfg, params, layer)
    centroids = jnp.asarray(centroids, jnp.float32)
    d = centroids.shape[1]
    if d != cfg.d_model:
        raise ValueError(f"centroids are {d}-dimensional; layer {layer} gives {cfg.d_model}")
    mean = jnp.zeros((d,), jnp.float32) if mean is None else jnp.asarray(mean, jnp.float32)
    std = jnp.ones((d,), jnp.float32) if std is None else jnp.asarray(std, jnp.float32)
    return Tokenizer(params_l, mean, std, centroids, cfg_l, layer)


def model_config(config: Any) -> Any:
    """The feature-model config (W2VBertConfig, HubertConfig, ...) of a project config, from
    its `model` field and that model's section."""
    name = config.get("model")
    if name not in MODELS:
        raise ValueError(
            f"config.model={name!r} is not a semantic feature model; known: {', '.join(MODELS)}"
        )
    module, cls = MODELS[name]
    return getattr(importlib.import_module(module), cls).from_config(config[name])


def load_model(workdir: str, step: int | None = None) -> tuple[Any, dict, Any]:
    """(cfg, params, training config) of the feature model in `workdir`: a w2v-BERT trained
    here, or a HuBERT / w2v-BERT 2.0 that `launch.py --mode=import` wrote."""
    import ml_collections

    from audiolm_jax.train.checkpoint import read_checkpoint

    step, state, meta = read_checkpoint(workdir, step)
    config = ml_collections.ConfigDict(meta["config"])
    if config.get("model") not in MODELS:
        raise ValueError(
            f"{workdir} holds a {config.get('model')!r} model, not a semantic feature model "
            f"({', '.join(MODELS)})"
        )
    cfg = model_config(config)
    log.info("Loaded %s from %s (step %d)", cfg.name, workdir, step)
    return cfg, state["params"]["model"], config


def load(workdir: str, step: int | None = None) -> Tokenizer:
    """The tokenizer of `workdir`: its w2v-BERT checkpoint (newest, or `step`) and the k-means
    that `launch.py --mode=fit_kmeans` saved in `<workdir>/kmeans`."""
    cfg, params, _ = load_model(workdir, step)
    path = os.path.join(workdir, KMEANS_DIR)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{workdir} has a {cfg.name} checkpoint but no k-means ({path}); run "
            f"python launch.py --config=... --mode=fit_kmeans --workdir={workdir}"
        )
    km = kmeans.load(path)
    tok = from_parts(cfg, params, int(km["meta"]["layer"]), km["centroids"], km["mean"], km["std"])
    log.info("Semantic tokenizer: %s", describe(tok))
    return tok


def describe(tok: Tokenizer) -> str:
    """One line: model, layer, k, rate."""
    bits = tok.frame_rate * float(jnp.log2(tok.vocab_size))
    return (
        f"{tok.cfg.name} layer {tok.layer} (d {tok.cfg.d_model}), k-means K={tok.vocab_size}, "
        f"{tok.frame_rate:g} ids/s = {bits:g} bps"
    )
