"""k-means in JAX: Lloyd iterations under jit, used by the codec's codebook initialisation (and by
the semantic tokenizer's clustering).

Points `x: [n, d]`, centroids `[k, d]`. `spherical=True` clusters directions (L2-normalised
points and centroids, nearest by cosine), as DAC's normalised codebooks need.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """x / ||x|| along the last axis."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def sq_distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """||x_i - c_j||^2 `[..., k]` for x `[..., d]`, as one matmul."""
    return (
        jnp.sum(x * x, -1, keepdims=True)
        - 2.0 * x @ centroids.T
        + jnp.sum(centroids * centroids, -1)[None]
    )


def assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Index of the nearest centroid for each point, `[...]` int32."""
    return jnp.argmin(sq_distances(x, centroids), axis=-1).astype(jnp.int32)


def sample_init(x: jax.Array, k: int, rng: jax.Array) -> jax.Array:
    """k distinct points of x as centroids (with replacement, plus a little noise to keep them
    apart, when x has fewer than k points)."""
    n = x.shape[0]
    if n >= k:
        return x[jax.random.choice(rng, n, (k,), replace=False)]
    k1, k2 = jax.random.split(rng)
    picked = x[jax.random.choice(k1, n, (k,), replace=True)]
    scale = 1e-3 * (jnp.std(x) + 1e-6)
    return picked + scale * jax.random.normal(k2, picked.shape, x.dtype)


def plus_plus_init(x: jax.Array, k: int, rng: jax.Array) -> jax.Array:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; the greedy variant scikit-learn
    uses): each next centroid is the best of 2 + log(k) candidates drawn with probability
    proportional to their squared distance to the nearest centroid chosen so far."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    keys = jax.random.split(rng, k)
    first = x[jax.random.randint(keys[0], (), 0, n)]
    cents = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, -1)

    def body(i, carry):
        cents, d2 = carry
        logits = jnp.where(d2 > 0, jnp.log(jnp.maximum(d2, 1e-30)), -jnp.inf)
        # All points already chosen (n < k): fall back to a uniform draw.
        logits = jnp.where(jnp.any(d2 > 0), logits, jnp.zeros_like(d2))
        cand = x[jax.random.categorical(keys[i], logits, shape=(trials,))]  # [trials, d]
        new_d2 = jnp.minimum(d2[None], sq_distances(cand, x))  # [trials, n]
        best = jnp.argmin(new_d2.sum(-1))
        return cents.at[i].set(cand[best]), new_d2[best]

    cents, _ = jax.lax.fori_loop(1, k, body, (cents, d2))
    return cents


def lloyd(
    x: jax.Array, centroids: jax.Array, iters: int, spherical: bool = False
) -> tuple[jax.Array, jax.Array]:
    """`iters` Lloyd iterations; returns (centroids, cluster sizes of the last assignment).
    An empty cluster keeps its centroid."""
    k = centroids.shape[0]
    if spherical:
        x = normalize(x)

    def step(_, c):
        onehot = jax.nn.one_hot(assign(x, c), k, dtype=x.dtype)
        counts = onehot.sum(0)
        means = (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None]
        new = jnp.where(counts[:, None] > 0, means, c)
        return normalize(new) if spherical else new

    c = jax.lax.fori_loop(0, iters, step, normalize(centroids) if spherical else centroids)
    counts = jax.nn.one_hot(assign(x, c), k, dtype=x.dtype).sum(0)
    return c, counts


def fit(
    x: jax.Array,
    k: int,
    rng: jax.Array,
    iters: int = 20,
    spherical: bool = False,
    init: str = "kmeans++",
) -> tuple[jax.Array, jax.Array]:
    """k-means of `x [n, d]`: (centroids [k, d], cluster sizes [k]). `init` = "kmeans++" or
    "sample" (k random points: cheaper, worse local optima)."""
    if init == "kmeans++":
        start = plus_plus_init(normalize(x) if spherical else x, k, rng)
    elif init == "sample":
        start = sample_init(x, k, rng)
    else:
        raise ValueError(f"k-means init must be 'kmeans++' or 'sample', got {init!r}")
    return lloyd(x, start, iters, spherical)


def inertia(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Sum of squared distances of each point to its nearest centroid."""
    return jnp.sum(jnp.min(jnp.maximum(sq_distances(x, centroids), 0.0), axis=-1))
