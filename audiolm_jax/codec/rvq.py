"""Residual vector quantizer (SoundStream, Zeghidour et al. 2021, sec. 3.2), as pure functions.

Q levels of K codes. Level l quantizes what levels < l left over; the codes of a frame are the Q
nearest-code indices, its embedding the sum of the chosen codes.

- Codebooks are EMA cluster means (decay 0.99), updated outside gradients: they live in the
  trainer's non-gradient `model_state` as {codebook [Q,K,d], cluster_size [Q,K], embed_sum [Q,K,d]}.
- k-means initialisation from the first batch (`kmeans_init`), dead-code replacement: a code whose
  EMA usage falls below `dead_code_threshold` is replaced by a random frame of the batch.
- Quantizer dropout: each training example uses only its first n_q ~ U[1, Q] levels, so one model
  serves every bitrate (`sample_levels`).
- Straight-through gradients and a commitment loss ||x - sg(code)||^2.
- Optional DAC-style factorised codes (Kumar et al. 2023): each level projects the D-dim residual
  to `code_dim` dims (a learned linear map), L2-normalises it and looks it up among normalised
  codes (cosine similarity), then projects back. Here the normalised codebooks are EMA-updated
  spherical means as well, so both variants share one update rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from audiolm_jax import kmeans


@dataclasses.dataclass(frozen=True)
class RVQConfig:
    levels: int = 12
    codebook_size: int = 1024
    dim: int = 128  # D: the encoder's embedding dim
    code_dim: int = 0  # 0: codes live in D dims; > 0: factorised codes of this dim (DAC)
    l2_normalize: bool = False  # cosine lookup among normalised codes (DAC)
    ema_decay: float = 0.99
    dead_code_threshold: float = 2.0  # EMA usage (codes per batch) below which a code is replaced
    dropout: float = 1.0  # fraction of training examples with n_q ~ U[1, Q] (DAC: 0.5)
    kmeans_init: bool = True
    kmeans_iters: int = 10

    @property
    def factorized(self) -> bool:
        return self.code_dim > 0

    @property
    def inner_dim(self) -> int:
        return self.code_dim if self.factorized else self.dim

    @classmethod
    def from_config(cls, cfg: Any, dim: int) -> RVQConfig:
        from audiolm_jax.config import dataclass_from_config

        return dataclass_from_config(cls, cfg, "quantizer", dim=dim)


def init_params(rng: jax.Array, cfg: RVQConfig) -> dict:
    """Learned parts: the factorised in/out projections per level, or nothing."""
    if not cfg.factorized:
        return {}
    k1, k2 = jax.random.split(rng)
    q, d, c = cfg.levels, cfg.dim, cfg.code_dim
    return {
        "proj_in": jax.random.normal(k1, (q, d, c)) / jnp.sqrt(d),
        "proj_out": jax.random.normal(k2, (q, c, d)) / jnp.sqrt(c),
    }


def init_state(rng: jax.Array, cfg: RVQConfig) -> dict:
    """Random-normal codebooks (replaced by `kmeans_init` when the config asks for it)."""
    cb = jax.random.normal(rng, (cfg.levels, cfg.codebook_size, cfg.inner_dim))
    if cfg.l2_normalize:
        cb = kmeans.normalize(cb)
    return {
        "codebook": cb,
        "cluster_size": jnp.ones((cfg.levels, cfg.codebook_size)),
        "embed_sum": cb,
    }


def _to_code_space(params: dict, cfg: RVQConfig, level: int | jax.Array, r: jax.Array):
    x = r @ params["proj_in"][level] if cfg.factorized else r
    return kmeans.normalize(x) if cfg.l2_normalize else x


def _from_code_space(params: dict, cfg: RVQConfig, level: int | jax.Array, e: jax.Array):
    return e @ params["proj_out"][level] if cfg.factorized else e


class Quantized(NamedTuple):
    """What `quantize` returns.

    zq: `[batch, frames, D]` sum of the active levels' codes (straight-through gradients).
    codes: `[batch, frames, Q]` int32 (inactive levels hold their nearest code all the same).
    inputs: `[Q, batch, frames, d]` what each level looked up (stopped), for the EMA update.
    active: `[batch, Q]` float, 1 where the level is used for the example.
    commitment: scalar mean commitment loss over active levels.
    errors: `[Q]` mean squared error ||z - zq_{<=l}||^2 after levels 0..l (all examples).
    """

    zq: jax.Array
    codes: jax.Array
    inputs: jax.Array
    active: jax.Array
    commitment: jax.Array
    errors: jax.Array


def sample_levels(rng: jax.Array, batch: int, cfg: RVQConfig) -> jax.Array:
    """Quantizer dropout: n_q ~ U[1, Q] per example, `[batch]` int32."""
    return jax.random.randint(rng, (batch,), 1, cfg.levels + 1)


def quantize(
    params: dict,
    state: dict,
    cfg: RVQConfig,
    z: jax.Array,
    n_q: jax.Array | int | None = None,
    refine: bool = False,
) -> Quantized:
    """Quantizes z `[batch, frames, D]` with the first `n_q` levels (scalar or `[batch]`;
    default all). `refine`: pick each code with `kmeans.assign_refined` (exact among near-ties;
    what `codec.encode` uses) instead of the one-matmul `kmeans.assign` (training)."""
    assign = kmeans.assign_refined if refine else kmeans.assign
    b = z.shape[0]
    n_q = cfg.levels if n_q is None else n_q
    active = jnp.arange(cfg.levels)[None] < jnp.broadcast_to(jnp.asarray(n_q), (b,))[:, None]
    active = active.astype(z.dtype)

    def level(carry, xs):
        r, zq = carry
        cb, lvl, m = xs
        x = _to_code_space(params, cfg, lvl, r)
        codes = assign(x, cb)
        e = cb[codes]
        commit = jnp.mean((x - jax.lax.stop_gradient(e)) ** 2, axis=(1, 2))  # [batch]
        x_st = x + jax.lax.stop_gradient(e - x)
        q = _from_code_space(params, cfg, lvl, x_st) * m[:, None, None]
        zq = zq + q
        err = jnp.mean((z - zq) ** 2)
        return (r - q, zq), (codes, jax.lax.stop_gradient(x), jnp.sum(commit * m), err)

    (_, zq), (codes, inputs, commits, errors) = jax.lax.scan(
        level,
        (z, jnp.zeros_like(z)),
        (state["codebook"], jnp.arange(cfg.levels), active.T),
    )
    commitment = jnp.sum(commits) / jnp.maximum(jnp.sum(active), 1.0)
    return Quantized(zq, jnp.moveaxis(codes, 0, -1), inputs, active, commitment, errors)


def dequantize(params: dict, state: dict, cfg: RVQConfig, codes: jax.Array) -> jax.Array:
    """codes `[batch, frames, n]` (n <= Q: the first n levels) -> embedding `[batch, frames, D]`."""
    n = codes.shape[-1]
    if n > cfg.levels or n < 1:
        raise ValueError(f"codes have {n} levels; this quantizer has 1 to {cfg.levels}")
    out = 0.0
    for lvl in range(n):
        out = out + _from_code_space(params, cfg, lvl, state["codebook"][lvl][codes[..., lvl]])
    return out


def ema_update(state: dict, cfg: RVQConfig, qz: Quantized, rng: jax.Array) -> dict:
    """One EMA step of every level's codebook from a batch, then dead-code replacement.

    A level no example used this batch (quantizer dropout) is left as it was.
    """
    k = cfg.codebook_size
    decay = cfg.ema_decay

    def level(cb, cs, es, x, codes, m, key):
        x = x.reshape(-1, x.shape[-1])
        w = jnp.broadcast_to(m[:, None], qz.codes.shape[:2]).reshape(-1)
        onehot = jax.nn.one_hot(codes.reshape(-1), k, dtype=x.dtype) * w[:, None]
        new_cs = decay * cs + (1 - decay) * onehot.sum(0)
        new_es = decay * es + (1 - decay) * (onehot.T @ x)
        n = new_cs.sum()
        smoothed = (new_cs + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing: no empty division
        new_cb = new_es / smoothed[:, None]
        if cfg.l2_normalize:
            new_cb = kmeans.normalize(new_cb)
        # Dead codes: replaced by frames drawn from this batch's active frames.
        dead = new_cs < cfg.dead_code_threshold
        logits = jnp.where(w > 0, 0.0, -jnp.inf)
        picks = x[jax.random.categorical(key, logits, shape=(k,))]
        new_cb = jnp.where(dead[:, None], picks, new_cb)
        refill = jnp.maximum(cfg.dead_code_threshold, 1e-3)
        new_es = jnp.where(dead[:, None], picks * refill, new_es)
        new_cs = jnp.where(dead, refill, new_cs)
        used = jnp.sum(w) > 0
        keep = lambda new, old: jnp.where(used, new, old)
        return keep(new_cb, cb), keep(new_cs, cs), keep(new_es, es)

    keys = jax.random.split(rng, cfg.levels)
    cb, cs, es = jax.vmap(level)(
        state["codebook"],
        state["cluster_size"],
        state["embed_sum"],
        qz.inputs,
        jnp.moveaxis(qz.codes, -1, 0),
        qz.active.T,
        keys,
    )
    return {"codebook": cb, "cluster_size": cs, "embed_sum": es}


def kmeans_init(params: dict, cfg: RVQConfig, z: jax.Array, rng: jax.Array) -> dict:
    """Codebooks from k-means of a batch `z [batch, frames, D]`, level by level on the residuals
    the levels below leave (SoundStream's initialisation)."""
    r = z
    cbs, sizes = [], []
    for lvl, key in enumerate(jax.random.split(rng, cfg.levels)):
        x = _to_code_space(params, cfg, lvl, r).reshape(-1, cfg.inner_dim)
        cb, counts = kmeans.fit(x, cfg.codebook_size, key, cfg.kmeans_iters, cfg.l2_normalize)
        codes = kmeans.assign(x, cb)
        r = r - _from_code_space(params, cfg, lvl, cb[codes]).reshape(r.shape)
        cbs.append(cb)
        sizes.append(counts)
    cb, cs = jnp.stack(cbs), jnp.stack(sizes)
    return {"codebook": cb, "cluster_size": cs, "embed_sum": cb * cs[..., None]}


def perplexity(codes: jax.Array, active: jax.Array, codebook_size: int) -> jax.Array:
    """Per-level code-usage perplexity `[Q]`: exp(entropy of the batch's code histogram), from 1
    (one code used) to K (uniform use)."""
    w = jnp.broadcast_to(active[:, None, :], codes.shape).astype(jnp.float32)
    onehot = jax.nn.one_hot(codes, codebook_size) * w[..., None]  # [b, t, Q, K]
    counts = onehot.sum((0, 1))
    p = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1.0)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1))
