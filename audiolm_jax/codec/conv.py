"""Causal 1-D convolutions that can run chunk by chunk with carried state.

Layout: `[batch, time, channels]`. A module streams when the "cache" collection is mutable in
`apply`: it then keeps, between calls, what the next chunk needs (the last input samples of a
convolution, the overlapping tail of a transposed convolution), initialised to zeros, so a
signal fed in chunks gives the same output as the whole signal at once (tests/test_codec.py).

Causality: frame t of a convolution with stride s sees inputs up to t * s + s - 1 (the end of its
hop), through a left padding of (k - 1) * d - (s - 1) samples; a transposed convolution emits
exactly T * s samples for T frames and carries its k - s overlap to the next frame.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


def _kernel(module: nn.Module, shape: tuple[int, int, int]) -> jax.Array:
    # [taps, in, out]; fan-in = taps * in (flax counts the leading axes as receptive field).
    init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    axes = ("conv_kernel", "conv_in", "conv_out")
    return module.param("kernel", nn.with_logical_partitioning(init, axes), shape, jnp.float32)


def _bias(module: nn.Module, features: int) -> jax.Array:
    init = nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",))
    return module.param("bias", init, (features,), jnp.float32)


class CausalConv1d(nn.Module):
    """y[b, t, o] = sum x[b, t*s - pad + i*d, c] w[i, c, o] over causal taps.

    Attributes:
      features: output channels.
      kernel_size, stride, dilation, groups: as in any 1-D convolution.
      use_bias: add a bias.
      dtype: compute dtype (params stay float32).
    """

    features: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @property
    def left_pad(self) -> int:
        pad = (self.kernel_size - 1) * self.dilation - (self.stride - 1)
        if pad < 0:
            raise ValueError(
                f"{self.name}: kernel {self.kernel_size} is shorter than stride {self.stride}"
            )
        return pad

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, channels = x.shape
        if channels % self.groups or self.features % self.groups:
            raise ValueError(
                f"{self.name}: channels {channels} -> {self.features} not divisible by groups "
                f"{self.groups}"
            )
        if length % self.stride:
            raise ValueError(
                f"{self.name}: input length {length} is not a multiple of the stride {self.stride}"
            )
        kernel = _kernel(self, (self.kernel_size, channels // self.groups, self.features))
        pad = self.left_pad
        if self.is_mutable_collection("cache"):
            buf = self.variable("cache", "buffer", jnp.zeros, (batch, pad, channels), x.dtype)
            full = jnp.concatenate([buf.value.astype(x.dtype), x], axis=1)
            buf.value = full[:, full.shape[1] - pad :]
        else:
            full = jnp.pad(x, ((0, 0), (pad, 0), (0, 0)))
        y = jax.lax.conv_general_dilated(
            full.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=(self.stride,),
            padding="VALID",
            rhs_dilation=(self.dilation,),
            dimension_numbers=("NWC", "WIO", "NWC"),
            feature_group_count=self.groups,
        )
        return y + _bias(self, self.features).astype(self.dtype) if self.use_bias else y


class CausalConvTranspose1d(nn.Module):
    """Upsamples T frames to T * stride samples; the k - s overlap of the last frame is carried
    (streaming) or dropped (whole signal: it belongs to frames that do not exist yet)."""

    features: int
    kernel_size: int
    stride: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, channels = x.shape
        k, s = self.kernel_size, self.stride
        if k < s:
            raise ValueError(f"{self.name}: kernel {k} is shorter than stride {s}")
        kernel = _kernel(self, (k, channels, self.features))
        # Full transposed convolution: (T - 1) * s + k samples. conv_transpose with the kernel
        # flipped in time matches the textbook scatter y[t*s + i] += x[t] w[i].
        y = jax.lax.conv_transpose(
            x.astype(self.dtype),
            jnp.flip(kernel, 0).astype(self.dtype),
            strides=(s,),
            padding="VALID",
            dimension_numbers=("NWC", "WIO", "NWC"),
        )
        out, tail = y[:, : length * s], y[:, length * s :]
        if self.is_mutable_collection("cache"):
            carry = self.variable(
                "cache", "tail", jnp.zeros, (batch, k - s, self.features), y.dtype
            )
            prev = carry.value.astype(y.dtype)
            out = out.at[:, : k - s].add(prev) if k > s else out
            carry.value = tail
        return out + _bias(self, self.features).astype(self.dtype) if self.use_bias else out
