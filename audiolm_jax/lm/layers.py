"""Small Linen building blocks whose every parameter carries logical axis names.

Logical names (see DESIGN.md): batch, length, embed, heads, kv, mlp, vocab. A config maps them to
mesh axes; without rules (one device) the annotations are no-ops.

We use our own einsum parameter module rather than `nn.DenseGeneral`: it states the kernel's
logical names for multi-axis kernels ([embed, heads, kv]) directly and keeps params in fp32 while
computing in `dtype` (bf16 on accelerators).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Annotates an activation with logical axis names (a no-op without axis rules)."""
    return nn.with_logical_constraint(x, tuple(names))


class Einsum(nn.Module):
    """`y = einsum(equation, x, kernel)` with a logically named fp32 kernel.

    Attributes:
      shape: kernel shape.
      axes: one logical name per kernel axis.
      equation: einsum from (x, kernel) to y, e.g. "ble,ehk->blhk".
      dtype: compute dtype; the kernel is cast to it, params stay `param_dtype`.
      init_scale: the kernel is normal(0, init_scale / sqrt(fan_in)); fan_in is the product of
        the kernel axes that the equation contracts.
    """

    shape: tuple[int, ...]
    axes: tuple[str, ...]
    equation: str
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    init_scale: float = 1.0
    use_bias: bool = False
    bias_axes: tuple[str, ...] = ()
    out_dtype: Dtype | None = None  # e.g. fp32 logits from a bf16 matmul

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if len(self.shape) != len(self.axes):
            raise ValueError(f"Einsum kernel shape {self.shape} needs one name per axis, got {self.axes}")
        ins, out = self.equation.split("->")
        _, kernel_spec = ins.split(",")
        fan_in = 1
        for letter, size in zip(kernel_spec, self.shape):
            if letter not in out:
                fan_in *= size
        init = nn.initializers.normal(stddev=self.init_scale / fan_in**0.5)
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(init, self.axes), self.shape, self.param_dtype
        )
        y = jnp.einsum(
            self.equation, x.astype(self.dtype), kernel.astype(self.dtype),
            preferred_element_type=self.out_dtype,
        )
        if self.use_bias:
            bias_shape = tuple(s for s, c in zip(self.shape, kernel_spec) if c in out)
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, self.bias_axes),
                bias_shape,
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction; statistics in fp32."""

    eps: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            (x.shape[-1],),
            self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * scale).astype(self.dtype)


class LayerNorm(nn.Module):
    """Standard layer norm with logically named scale and bias; statistics in fp32."""

    eps: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (d,),
            self.param_dtype,
        )
        bias = self.param(
            "bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), (d,),
            self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * scale + bias).astype(self.dtype)


def make_norm(kind: str, dtype: Dtype, name: str | None = None) -> nn.Module:
    """Returns the norm named by config (`rms` as in T5, or `layer`)."""
    if kind == "rms":
        return RMSNorm(dtype=dtype, name=name)
    if kind == "layer":
        return LayerNorm(dtype=dtype, name=name)
    raise ValueError(f"lm.norm must be 'rms' or 'layer', got {kind!r}")


class Embed(nn.Module):
    """Token embedding [vocab, embed]; `attend` reuses it as an output projection."""

    num_embeddings: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
            (self.num_embeddings, self.features),
            self.param_dtype,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """ids: [batch, length] int -> [batch, length, embed]."""
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        """x: [batch, length, embed] -> fp32 logits [batch, length, vocab]."""
        return jnp.einsum(
            "ble,ve->blv", x.astype(self.dtype), self.embedding.astype(self.dtype),
            preferred_element_type=jnp.float32,
        )
