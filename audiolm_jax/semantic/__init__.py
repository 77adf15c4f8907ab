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
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from audiolm_jax import dsp, kmeans
from audiolm_jax.semantic import w2v_bert

log = logging.getLogger("audiolm_jax")

KMEANS_DIR = "kmeans"  # where fit_kmeans saves, inside the model's workdir


@flax.struct.dataclass
class Tokenizer:
    """Audio -> semantic ids. `params` are the w2v-BERT params that compute `cfg`'s last layer
    (see `w2v_bert.truncate`); `mean`/`std` `[d]` normalise each feature dimension; `centroids`
    `[k, d]` live in the normalised space."""

    params: dict
    mean: jax.Array
    std: jax.Array
    centroids: jax.Array
    cfg: w2v_bert.W2VBertConfig = flax.struct.field(pytree_node=False)
    layer: int = flax.struct.field(pytree_node=False, default=0)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        """Ids per second (25 for w2v-BERT at 16 kHz)."""
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
    """Audio -> semantic ids `[batch, frames]` int32, frames = ceil(samples / 640) at 16 kHz
    (25 per second).

    Args:
      tok: from `load` (or `from_parts`).
      wav: `[samples]` or `[batch, samples]` at the tokenizer's rate (or at `sample_rate`,
        then resampled on the host with a warning; that call is not jit-able).
    """
    return _encode(tok, prepare(tok, wav, sample_rate))


def _normalised(tok: Tokenizer, x: jax.Array) -> jax.Array:
    feats = w2v_bert.features(tok.cfg, tok.params, x).astype(jnp.float32)
    return kmeans.standardize(feats, tok.mean, tok.std)


@jax.jit
def _encode(tok: Tokenizer, x: jax.Array) -> jax.Array:
    return kmeans.assign(_normalised(tok, x), tok.centroids)


@functools.partial(jax.jit, static_argnums=0)
def truncated_features(cfg: w2v_bert.W2VBertConfig, params: dict, x: jax.Array) -> jax.Array:
    """Jitted float32 features `[batch, frames, d]` of the last layer of a (cfg, params) pair
    that `w2v_bert.truncate` cut: truncate once, then call this for every batch."""
    return w2v_bert.features(cfg, params, x).astype(jnp.float32)


def layer_features(
    cfg: w2v_bert.W2VBertConfig, params: dict, layer: int, wav: jax.Array
) -> jax.Array:
    """Un-normalised features `[batch, frames, d]` of `layer` from full w2v-BERT params
    (what `fit_kmeans` gathers statistics and clusters over). wav `[batch, samples]`. Slices the
    layer stacks on every call: over many batches, use `truncated_features`."""
    return truncated_features(*w2v_bert.truncate(cfg, params, layer), wav)


def from_parts(
    cfg: w2v_bert.W2VBertConfig,
    params: dict,
    layer: int,
    centroids: Any,
    mean: Any = None,
    std: Any = None,
) -> Tokenizer:
    """A Tokenizer from full w2v-BERT params, a layer and k-means centroids (mean 0 / std 1 when
    no normalisation is given)."""
    cfg_l, params_l = w2v_bert.truncate(cfg, params, layer)
    centroids = jnp.asarray(centroids, jnp.float32)
    d = centroids.shape[1]
    if d != cfg.d_model:
        raise ValueError(f"centroids are {d}-dimensional; layer {layer} gives {cfg.d_model}")
    mean = jnp.zeros((d,), jnp.float32) if mean is None else jnp.asarray(mean, jnp.float32)
    std = jnp.ones((d,), jnp.float32) if std is None else jnp.asarray(std, jnp.float32)
    return Tokenizer(params_l, mean, std, centroids, cfg_l, layer)


def load_model(workdir: str, step: int | None = None) -> tuple[w2v_bert.W2VBertConfig, dict, Any]:
    """(cfg, params, training config) of the w2v-BERT trained in `workdir`."""
    from audiolm_jax.train.checkpoint import read_trained

    step, state, config = read_trained(workdir, "w2v_bert", "w2v-BERT", step)
    cfg = w2v_bert.W2VBertConfig.from_config(config.w2v_bert)
    log.info("Loaded w2v-BERT from %s (step %d)", workdir, step)
    return cfg, state["params"]["model"], config


def load(workdir: str, step: int | None = None) -> Tokenizer:
    """The tokenizer of `workdir`: its w2v-BERT checkpoint (newest, or `step`) and the k-means
    that `launch.py --mode=fit_kmeans` saved in `<workdir>/kmeans`."""
    cfg, params, _ = load_model(workdir, step)
    path = os.path.join(workdir, KMEANS_DIR)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{workdir} has a w2v-BERT checkpoint but no k-means ({path}); run "
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
        f"w2v-BERT layer {tok.layer} (d {tok.cfg.d_model}), k-means K={tok.vocab_size}, "
        f"{tok.frame_rate:g} ids/s = {bits:g} bps"
    )
