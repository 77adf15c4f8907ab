"""k-means in JAX: Lloyd iterations under jit, used by the codec's codebook initialisation, and
streamed mini-batch k-means for the semantic tokenizer's clustering.

Points `x: [n, d]`, centroids `[k, d]`. `spherical=True` clusters directions (L2-normalised
points and centroids, nearest by cosine), as DAC's normalised codebooks need.

For data larger than memory (AudioLM clusters w2v-BERT features of a whole corpus):

- `Moments` / `moments_update` / `moments_finalize`: streamed per-dimension mean and std, to
  standardise features before clustering (`standardize`).
- `minibatch_step` / `fit_minibatch`: mini-batch k-means (Sculley 2010) over an iterable of
  batches, optionally data-parallel over a device mesh.
- `save` / `load`: centroids (and the normalisation) as an orbax checkpoint plus a JSON file.
- `adjusted_rand_index`: agreement of two labellings (numpy), for tests and evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import shutil
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger("audiolm_jax")


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


def assign_refined(x: jax.Array, centroids: jax.Array, candidates: int = 2) -> jax.Array:
    """`assign`, with the `candidates` nearest by the one-matmul distance re-ranked by the
    direct ||x - c||^2. The matmul form loses float32 precision to cancellation when x sits far
    from the origin relative to its distance to the codes, and can then pick the second-nearest
    code of a near-tie; the direct form does not. For inference, where codes must be right."""
    d = sq_distances(x, centroids)
    _, idx = jax.lax.top_k(-d, candidates)  # [..., candidates]
    exact = jnp.sum(jnp.square(x[..., None, :] - centroids[idx]), -1)
    best = jnp.argmin(exact, axis=-1)
    return jnp.take_along_axis(idx, best[..., None], -1)[..., 0].astype(jnp.int32)


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
    if spherical:
        x = normalize(x)

    ones = jnp.ones(x.shape[:1], x.dtype)

    def step(_, c):
        sums, counts, _ = cluster_sums(c, x, ones)
        new = _cluster_means(sums, counts, c)
        return normalize(new) if spherical else new

    c = jax.lax.fori_loop(0, iters, step, normalize(centroids) if spherical else centroids)
    return c, cluster_sums(c, x, ones)[1]


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


# --- Streamed per-dimension statistics ---------------------------------------------------------


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["count", "mean", "m2"], meta_fields=[]
)
@dataclasses.dataclass
class Moments:
    """Running per-dimension statistics of a stream of vectors: `count` (a float32 scalar: the
    total weight seen), `mean [d]` and `m2 [d]` (sum of squared deviations from `mean`).

    A pytree, so it passes through `jax.jit`. `count` is float32 so that it cannot overflow; it is
    exact up to 2^24 points and within ~1e-7 relative per update beyond, which only perturbs how
    old and new batches are weighted."""

    count: jax.Array
    mean: jax.Array
    m2: jax.Array


def moments_init(d: int) -> Moments:
    """Empty statistics for `d`-dimensional vectors."""
    return Moments(
        count=jnp.zeros((), jnp.float32),
        mean=jnp.zeros((d,), jnp.float32),
        m2=jnp.zeros((d,), jnp.float32),
    )


def moments_update(m: Moments, x: jax.Array, weights: jax.Array | None = None) -> Moments:
    """Merges a batch `x [n, d]` into `m` (Chan, Golub & LeVeque's parallel update, in float32).

    The batch's own mean and squared deviations are computed in two passes, then combined with
    the running ones: with delta = mean_b - mean_a and n = n_a + n_b,
    mean = mean_a + delta * n_b / n and M2 = M2_a + M2_b + delta^2 * n_a * n_b / n.
    `weights [n]` (e.g. 0 for padding rows) weight each point; a batch of total weight 0 leaves
    `m` as it is. Jit-able."""
    x = jnp.asarray(x, jnp.float32)
    w = jnp.ones(x.shape[:1], jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    n_b = jnp.sum(w)
    safe_b = jnp.maximum(n_b, 1e-30)
    mean_b = jnp.sum(w[:, None] * x, 0) / safe_b
    m2_b = jnp.sum(w[:, None] * (x - mean_b) ** 2, 0)
    n = m.count + n_b
    frac_b = n_b / jnp.maximum(n, 1e-30)
    delta = mean_b - m.mean
    mean = m.mean + delta * frac_b
    m2 = m.m2 + m2_b + delta * delta * (m.count * frac_b)
    keep = n_b <= 0
    return Moments(
        count=n,
        mean=jnp.where(keep, m.mean, mean),
        m2=jnp.where(keep, m.m2, m2),
    )


def moments_finalize(m: Moments, min_std: float = 1e-5) -> tuple[jax.Array, jax.Array]:
    """(mean [d], std [d]) of everything merged into `m`: the population std (numpy's default,
    ddof=0), floored at `min_std` so that a constant dimension standardises to 0, not NaN/inf.
    Empty statistics give mean 0 and std `min_std`."""
    var = m.m2 / jnp.maximum(m.count, 1.0)
    return m.mean, jnp.maximum(jnp.sqrt(jnp.maximum(var, 0.0)), min_std)


def standardize(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """(x - mean) / std per dimension: zero mean, unit variance with `moments_finalize`'s stats."""
    return (x - mean) / std


# --- Mini-batch k-means -------------------------------------------------------------------------


def cluster_sums(
    centroids: jax.Array, x: jax.Array, w: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each point of `x [n, d]` (weight `w [n]`) to its nearest centroid: (per-cluster weighted
    sums [k, d], weights [k], each point's squared distance to its centroid [n]). The sums are
    a one-hot matmul, so with `x` sharded along axis 0 `jax.jit` makes them an all-reduce."""
    k = centroids.shape[0]
    d2 = jnp.maximum(sq_distances(x, centroids), 0.0)
    min_d2 = jnp.min(d2, axis=-1)
    onehot = jax.nn.one_hot(jnp.argmin(d2, axis=-1), k, dtype=centroids.dtype) * w[:, None]
    # Full precision: accelerators' default matmul precision would round x to bfloat16 here.
    sums = jnp.matmul(onehot.T, x, precision=jax.lax.Precision.HIGHEST)
    return sums, jnp.sum(onehot, 0), min_d2


@jax.jit
def _lloyd_pass(centroids: jax.Array, x: jax.Array, w: jax.Array):
    """One Lloyd iteration over stacked batches `x [b, n, d]` with weights `w [b, n]` (0 for
    padding): (new centroids, cluster weights, weighted inertia under the old centroids). An
    empty cluster keeps its centroid."""

    def add(acc, batch):
        s, n, min_d2 = cluster_sums(centroids, *batch)
        return (acc[0] + s, acc[1] + n, acc[2] + jnp.sum(batch[1] * min_d2)), None

    zeros = (jnp.zeros_like(centroids), jnp.zeros(centroids.shape[:1]), jnp.zeros(()))
    (sums, n_j, total), _ = jax.lax.scan(add, zeros, (x, w))
    return _cluster_means(sums, n_j, centroids), n_j, total


def _cluster_means(sums: jax.Array, weights: jax.Array, centroids: jax.Array) -> jax.Array:
    """A Lloyd update from `cluster_sums`: each cluster's weighted mean; an empty cluster keeps
    its centroid."""
    means = sums / jnp.maximum(weights, 1e-30)[:, None]
    return jnp.where(weights[:, None] > 0, means, centroids)


class MiniBatchState(NamedTuple):
    """Mini-batch k-means state: `centroids [k, d]` and `counts [k]`, the total weight of the
    points each centroid has absorbed (its inverse is the centroid's learning rate)."""

    centroids: jax.Array
    counts: jax.Array


def minibatch_init(centroids: jax.Array) -> MiniBatchState:
    """A state starting from `centroids [k, d]` with zero counts (the first batch a centroid
    receives replaces it by that batch's mean)."""
    centroids = jnp.asarray(centroids, jnp.float32)
    return MiniBatchState(centroids, jnp.zeros(centroids.shape[:1], jnp.float32))


def _reassign(
    state: MiniBatchState,
    x: jax.Array,
    w: jax.Array,
    min_d2: jax.Array,
    rng: jax.Array,
    ratio: jax.Array,
) -> MiniBatchState:
    """Moves clusters whose count is below `ratio * max(count)` onto distinct points of the batch
    drawn with probability proportional to weight * squared distance to their nearest centroid
    (Gumbel top-k, so the draw is a pure function of `rng`). The j-th such cluster (in index
    order) takes the j-th draw; a moved cluster's count becomes the smallest count among the
    clusters that stay, so it is not moved again at once (scikit-learn's rule)."""
    c, counts = state
    k, n = c.shape[0], x.shape[0]
    m = min(n, k)
    dead = counts < ratio * jnp.max(counts)
    p = w * min_d2
    logits = jnp.where(p > 0, jnp.log(jnp.maximum(p, 1e-30)), -jnp.inf)
    g = logits + jax.random.gumbel(rng, (n,), jnp.float32)
    top, cand = jax.lax.top_k(g, m)
    rank = jnp.cumsum(dead.astype(jnp.int32)) - 1
    slot = jnp.clip(rank, 0, m - 1)
    move = dead & (rank < m) & jnp.isfinite(top[slot])
    new_c = jnp.where(move[:, None], x[cand[slot]], c)
    floor = jnp.min(jnp.where(move, jnp.inf, counts))
    floor = jnp.where(jnp.isfinite(floor), floor, 0.0)
    return MiniBatchState(new_c, jnp.where(move, floor, counts))


def minibatch_step(
    state: MiniBatchState | tuple[jax.Array, jax.Array],
    x: jax.Array,
    weights: jax.Array | None = None,
    rng: jax.Array | None = None,
    reassignment_ratio: float | jax.Array = 0.0,
) -> tuple[MiniBatchState, jax.Array]:
    """One mini-batch k-means update (Sculley 2010, batch form): (new state, batch inertia).

    Each point of `x [n, d]` goes to its nearest centroid; with n_j the weight a cluster gets
    and s_j the sum of its points, c_j <- (count_j * c_j + s_j) / (count_j + n_j), i.e. a step
    of size n_j / (count_j + n_j) towards the batch mean, and count_j <- count_j + n_j. A cluster
    the batch does not reach keeps its centroid. The batch inertia (sum of weighted squared
    distances to the nearest centroid) is measured before the update.

    `weights [n]` weight each point (0 for padding rows). With `rng`, clusters whose count is
    below `reassignment_ratio * max(count)` afterwards are moved to random batch points (see
    `_reassign`; ratio 0 moves none), deterministically given `rng`.

    Per-cluster sums and counts are a one-hot matmul over the batch, so when `x` is sharded along
    axis 0 and the state replicated, `jax.jit` turns the reduction into an all-reduce and every
    device gets the same new state as one device would (up to summation order)."""
    c, counts = state
    x = x.astype(c.dtype)
    w = jnp.ones(x.shape[:1], c.dtype) if weights is None else weights.astype(c.dtype)
    sums, n_j, min_d2 = cluster_sums(c, x, w)
    new_counts = counts + n_j
    step = (sums - n_j[:, None] * c) / jnp.maximum(new_counts, 1e-30)[:, None]
    new = MiniBatchState(jnp.where(n_j[:, None] > 0, c + step, c), new_counts)
    if rng is not None:
        new = _reassign(new, x, w, min_d2, rng, jnp.asarray(reassignment_ratio, c.dtype))
    return new, jnp.sum(w * min_d2)


_minibatch_step = jax.jit(minibatch_step)
_plus_plus_init = jax.jit(plus_plus_init, static_argnums=1)
_sample_init = jax.jit(sample_init, static_argnums=1)


def _as_batch(x: Any, d: int | None, what: str) -> np.ndarray | jax.Array:
    """`x` as a float32 `[n, d]` array, or a ValueError naming its shape."""
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
    if x.ndim != 2 or (d is not None and x.shape[1] != d):
        want = f"[n, {d}]" if d is not None else "[n, d]"
        raise ValueError(f"fit_minibatch: {what} has shape {tuple(x.shape)}, expected {want}")
    return x.astype(jnp.float32)


def fit_minibatch(
    batches: Iterable[Any],
    k: int,
    rng: jax.Array,
    *,
    init_points: Any | None = None,
    init: str = "kmeans++",
    steps: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    data_axis: str = "data",
    reassignment_ratio: float = 0.01,
    reassign_every: int = 10,
    log_every: int = 100,
    refine_batches: int = 0,
    refine_passes: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Mini-batch k-means over a stream of `[n, d]` batches: (centroids [k, d], counts [k], the
    weight each centroid absorbed from the stream).

    Seeds with k-means++ (`init="kmeans++"`) or k random points (`"sample"`) of `init_points`,
    or of the first batch when `init_points` is None (that batch is then also trained on), and
    applies `minibatch_step` to each batch, at most `steps` of them. Every `reassign_every` steps
    clusters with less than `reassignment_ratio` of the largest count are moved to random points
    of the batch (0 turns this off). Everything is a pure function of `rng` and the batches.

    With `mesh`, each batch is laid out along `data_axis` (NamedSharding(mesh, P(data_axis))) and
    the centroids replicated; a batch whose length is not a multiple of that axis's size is
    padded with rows of weight 0, which change nothing. The batches are global: in a
    multi-process run pass `jax.Array`s already laid out on the mesh. Progress (points seen,
    inertia per point over the last `log_every` batches) is logged to the "audiolm_jax" logger.

    `refine_batches` > 0 and `refine_passes` > 0: the first `refine_batches` batches of the
    stream are kept (on the devices, laid out like the stream) and, after the stream, up to
    `refine_passes` full Lloyd iterations over them polish the centroids; passes stop early
    once the inertia improves by less than 1e-4 of itself. Sculley's per-centroid rates
    1 / count freeze centroids early; measured: tests/test_kmeans.py's overlapping mixture
    5% lower inertia (below full-batch Lloyd's), w2v_bert_tiny features of 8 s piano clips 2%
    lower held-out inertia (10.79 -> 10.55 per point). Memory: the kept batches.
    """
    if init not in ("kmeans++", "sample"):
        raise ValueError(f"k-means init must be 'kmeans++' or 'sample', got {init!r}")
    it = iter(batches)
    if init_points is None:
        try:
            init_points = next(it)
        except StopIteration:
            raise ValueError("fit_minibatch: `batches` is empty and no init_points given") from None
        it = itertools.chain([init_points], it)
    init_points = _as_batch(init_points, None, "init_points")
    d = init_points.shape[1]
    if init_points.shape[0] == 0:
        raise ValueError("fit_minibatch: no points to seed the centroids from")
    init_rng, step_rng = jax.random.split(rng)
    seed = _plus_plus_init if init == "kmeans++" else _sample_init
    state = minibatch_init(seed(jnp.asarray(init_points), k, init_rng))

    shards = 1
    if mesh is not None:
        if data_axis not in mesh.axis_names:
            raise ValueError(f"fit_minibatch: mesh axes {mesh.axis_names} lack {data_axis!r}")
        shards = mesh.shape[data_axis]
        P = jax.sharding.PartitionSpec
        rows = jax.sharding.NamedSharding(mesh, P(data_axis))  # x [n, d] and weights [n]
        state = jax.device_put(state, jax.sharding.NamedSharding(mesh, P()))

    seen, window_inertia, window_points = 0, jnp.zeros((), jnp.float32), 0
    kept: list[tuple[Any, Any]] = []
    keep = refine_batches if refine_passes > 0 else 0
    if steps is not None:
        it = itertools.islice(it, steps)
    for step, x in enumerate(it):
        x = _as_batch(x, d, f"batch {step}")
        n = x.shape[0]
        if n == 0:
            continue
        pad = -n % shards
        w = np.ones((n + pad,), np.float32)
        if pad:
            w[n:] = 0.0
            x = jnp.concatenate([jnp.asarray(x), jnp.zeros((pad, d), jnp.float32)])
        if mesh is not None:
            x, w = jax.device_put((x, w), rows)
        if len(kept) < keep:
            kept.append((x, w))
        reassign = reassign_every > 0 and (step + 1) % reassign_every == 0
        ratio = np.float32(reassignment_ratio if reassign else 0.0)
        state, batch_inertia = _minibatch_step(
            state, x, w, jax.random.fold_in(step_rng, step), ratio
        )
        seen += n
        window_inertia += batch_inertia
        window_points += n
        if log_every > 0 and (step + 1) % log_every == 0:
            log.info(
                "k-means: %d batches, %d points, inertia/point %.5g over the last %d",
                step + 1,
                seen,
                float(window_inertia) / window_points,
                window_points,
            )
            window_inertia, window_points = jnp.zeros((), jnp.float32), 0
    centroids = state.centroids
    if kept:
        centroids = _refine(centroids, kept, refine_passes, mesh, data_axis)
    return centroids, state.counts


def _refine(centroids, kept, passes: int, mesh, data_axis: str) -> jax.Array:
    """`fit_minibatch`'s Lloyd polish over the kept (x [n, d], w [n]) batches, stacked to
    [b, n_max, d] (shorter ones padded with weight-0 rows) along the stream's layout."""
    n_max = max(int(x.shape[0]) for x, _ in kept)
    out_shardings = None
    if mesh is not None:
        P = jax.sharding.PartitionSpec
        out_shardings = (
            jax.sharding.NamedSharding(mesh, P(None, data_axis)),
            jax.sharding.NamedSharding(mesh, P(None, data_axis)),
        )

    @functools.partial(jax.jit, out_shardings=out_shardings)
    def stack(pairs):
        xs = [
            jnp.pad(jnp.asarray(x, jnp.float32), ((0, n_max - x.shape[0]), (0, 0)))
            for x, _ in pairs
        ]
        ws = [jnp.pad(jnp.asarray(w, jnp.float32), (0, n_max - w.shape[0])) for _, w in pairs]
        return jnp.stack(xs), jnp.stack(ws)

    x, w = stack(kept)
    points = float(jnp.sum(w))
    previous = None
    for i in range(passes):
        new, _, total = _lloyd_pass(centroids, x, w)
        total = float(total)
        if previous is not None and previous - total < 1e-4 * previous:
            break  # `centroids` already gave `total`; `new` would barely differ
        centroids, previous = new, total
        log.info(
            "k-means refinement pass %d/%d over %d points: inertia/point %.5g",
            i + 1,
            passes,
            int(points),
            total / max(points, 1.0),
        )
    return centroids


# --- Checkpoints --------------------------------------------------------------------------------

_ARRAYS = "arrays"
_META = "kmeans.json"
_FORMAT = "audiolm_jax.kmeans"


def save(
    path: str | os.PathLike,
    centroids: Any,
    mean: Any | None = None,
    std: Any | None = None,
    meta: dict | None = None,
    *,
    overwrite: bool = False,
) -> str:
    """Writes centroids `[k, d]` (and the per-dimension `mean`, `std [d]` they were fitted on)
    to directory `path`: an orbax checkpoint `<path>/arrays` and `<path>/kmeans.json` holding
    `meta` (JSON-serialisable) and the shapes. The JSON is written last, so a directory without
    it is an interrupted save. Returns the absolute path. An existing checkpoint raises
    FileExistsError unless `overwrite`. Arrays must be addressable from this process (e.g.
    replicated)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    centroids = np.asarray(centroids, np.float32)
    if centroids.ndim != 2:
        raise ValueError(f"k-means save: centroids have shape {centroids.shape}, expected [k, d]")
    k, d = centroids.shape
    arrays = {"centroids": centroids}
    for name, value in (("mean", mean), ("std", std)):
        if value is not None:
            value = np.asarray(value, np.float32)
            if value.shape != (d,):
                raise ValueError(f"k-means save: {name} has shape {value.shape}, expected ({d},)")
            arrays[name] = value
    record = json.dumps(
        {
            "format": _FORMAT,
            "version": 1,
            "k": k,
            "d": d,
            "arrays": sorted(arrays),
            "meta": meta or {},
        },
        indent=1,
    )
    meta_file, arrays_dir = os.path.join(path, _META), os.path.join(path, _ARRAYS)
    if os.path.exists(meta_file) or os.path.exists(arrays_dir):
        if not overwrite:
            raise FileExistsError(f"k-means checkpoint {path} exists; pass overwrite=True")
        if os.path.exists(meta_file):
            os.remove(meta_file)  # first, so a crash below leaves an incomplete checkpoint
        shutil.rmtree(arrays_dir, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(arrays_dir, arrays)
    ckptr.wait_until_finished()
    ckptr.close()
    tmp = meta_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(record)
    os.replace(tmp, meta_file)
    return path


def load(path: str | os.PathLike) -> dict:
    """Reads a `save`d checkpoint: {"centroids": [k, d], "mean": [d] or None, "std": [d] or None,
    "meta": dict}, as float32 numpy arrays. A missing directory raises FileNotFoundError, an
    incomplete or inconsistent one ValueError; both name the path. Imports no TensorFlow."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no k-means checkpoint at {path}")
    meta_file, arrays_dir = os.path.join(path, _META), os.path.join(path, _ARRAYS)
    if not os.path.isfile(meta_file):
        raise ValueError(f"{path} is not a complete k-means checkpoint: {_META} is missing")
    try:
        with open(meta_file) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"k-means checkpoint {path}: unreadable {_META}: {e}") from e
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise ValueError(f"{meta_file} is not a k-means checkpoint record")
    if not os.path.isdir(arrays_dir):
        raise ValueError(f"k-means checkpoint {path} is incomplete: {_ARRAYS}/ is missing")
    ckptr = ocp.StandardCheckpointer()
    try:
        arrays = ckptr.restore(arrays_dir)
    except Exception as e:  # orbax raises various types for truncated or foreign directories
        raise ValueError(f"k-means checkpoint {path}: cannot restore {_ARRAYS}/: {e}") from e
    finally:
        ckptr.close()
    k, d = record["k"], record["d"]
    out = {"centroids": None, "mean": None, "std": None, "meta": record.get("meta", {})}
    for name in record["arrays"]:
        if name not in arrays:
            raise ValueError(f"k-means checkpoint {path} is incomplete: no {name!r} array")
        out[name] = np.asarray(arrays[name], np.float32)
    expected = {"centroids": (k, d), "mean": (d,), "std": (d,)}
    for name, shape in expected.items():
        if out[name] is not None and out[name].shape != shape:
            raise ValueError(
                f"k-means checkpoint {path}: {name} has shape {out[name].shape}, "
                f"the record says {shape}"
            )
    if out["centroids"] is None:
        raise ValueError(f"k-means checkpoint {path} has no centroids")
    return out


# --- Evaluation ---------------------------------------------------------------------------------


def adjusted_rand_index(labels_a: Any, labels_b: Any) -> float:
    """Adjusted Rand index of two labellings of the same points (Hubert & Arabie 1985): 1 for the
    same partition (whatever the label values), ~0 in expectation for independent ones.

    From the contingency table n_ij with row sums a_i and column sums b_j:
    (sum C(n_ij, 2) - E) / (0.5 * (sum C(a_i, 2) + sum C(b_j, 2)) - E), where
    E = sum C(a_i, 2) * sum C(b_j, 2) / C(n, 2). The 0/0 cases (both labellings put every point
    in one cluster, or every point in its own) are identical partitions and give 1."""
    a, b = np.asarray(labels_a).ravel(), np.asarray(labels_b).ravel()
    if np.ndim(labels_a) != 1 or np.ndim(labels_b) != 1 or a.shape != b.shape:
        raise ValueError(
            f"adjusted_rand_index: expected two 1-D labellings of equal length, got shapes "
            f"{np.shape(labels_a)} and {np.shape(labels_b)}"
        )
    n = a.size
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    ia, ib = ia.ravel(), ib.ravel()
    nb = int(ib.max()) + 1 if n else 1
    table = np.bincount(ia * nb + ib, minlength=(int(ia.max()) + 1 if n else 1) * nb)

    def pairs(counts: np.ndarray) -> float:
        counts = counts.astype(np.float64)
        return float(np.sum(counts * (counts - 1.0)) / 2.0)

    index = pairs(table)
    rows = pairs(np.bincount(ia)) if n else 0.0
    cols = pairs(np.bincount(ib)) if n else 0.0
    total = n * (n - 1) / 2.0
    expected = rows * cols / total if total > 0 else 0.0
    denom = 0.5 * (rows + cols) - expected
    if denom == 0:
        return 1.0
    return float((index - expected) / denom)
