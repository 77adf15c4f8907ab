"""Position information: T5's bucketed relative position bias (AudioLM's choice) and RoPE.

AudioLM's stages use "T5-style relative positional embeddings" (arXiv:2209.03143, sec. 4.1).
T5 (Raffel et al. 2020, sec. 2.1) maps a key-query offset to one of `num_buckets` buckets:
exact buckets for small offsets, logarithmically spaced ones up to `max_distance`, and one
learned scalar per bucket and head, shared by all layers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def relative_bucket(
    offset: jax.Array, *, causal: bool, num_buckets: int, max_distance: int
) -> jax.Array:
    """Bucket ids of `offset = query_pos - key_pos` (>= 0 looks back).

    Causal: all buckets serve offsets >= 0 (future keys are masked anyway). Bidirectional: half
    the buckets serve each direction.
    """
    offset = jnp.asarray(offset, jnp.int32)
    bucket = jnp.zeros_like(offset)
    if causal:
        dist = jnp.maximum(offset, 0)
    else:
        num_buckets //= 2
        bucket = bucket + (offset < 0).astype(jnp.int32) * num_buckets
        dist = jnp.abs(offset)
    exact = num_buckets // 2
    # Log-spaced buckets between `exact` and `max_distance`; farther offsets share the last one.
    log_ratio = jnp.log(jnp.maximum(dist, 1).astype(jnp.float32) / exact) / np.log(
        max_distance / exact
    )
    far = exact + (log_ratio * (num_buckets - exact)).astype(jnp.int32)
    far = jnp.minimum(far, num_buckets - 1)
    return bucket + jnp.where(dist < exact, dist, far)


class RelativePositionBias(nn.Module):
    """Learned bias [1, heads, q, k] from T5 buckets of index offsets.

    Offsets come from token indices, not from `positions`: within one packed example positions
    advance by one per token, so the index offset equals the position offset, and pairs that
    cross an example boundary are masked out. This keeps the bias free of a batch axis
    (a [batch, heads, L, L] bias would not fit at the paper's batch and length).
    """

    num_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    causal: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, q_index: jax.Array, k_index: jax.Array) -> jax.Array:
        """q_index: [q], k_index: [k] absolute token indices -> bias [1, heads, q, k]."""
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(
                nn.initializers.normal(stddev=0.02), ("relpos_buckets", "heads")
            ),
            (self.num_buckets, self.num_heads),
            jnp.float32,
        )
        buckets = relative_bucket(
            q_index[:, None] - k_index[None, :],
            causal=self.causal,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        # A one-hot matmul rather than a gather: its gradient is a matmul too, where a gather's
        # is a scatter-add plus a [q, k, heads] transpose (60 ms a step on a 2-core CPU).
        onehot = jax.nn.one_hot(buckets.reshape(-1), self.num_buckets, dtype=jnp.float32)
        bias = jnp.dot(table.T, onehot.T)  # [heads, q * k]
        return bias.reshape(1, self.num_heads, *buckets.shape).astype(self.dtype)


def apply_rope(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
    """Rotary embedding (Su et al. 2021): x [batch, length, heads, dim], positions [batch, length].

    Rotates pairs (x[..., :d/2], x[..., d/2:]); computed in fp32, returned in x's dtype.
    """
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE needs an even head dim, got {d}")
    freq = base ** (-jnp.arange(0, d // 2, dtype=jnp.float32) / (d // 2))
    angle = positions.astype(jnp.float32)[..., None, None] * freq  # [b, l, 1, d/2]
    sin, cos = jnp.sin(angle), jnp.cos(angle)
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., : d // 2], x32[..., d // 2 :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)
