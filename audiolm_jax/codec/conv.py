"""Causal 1-D convolutions that can run chunk by chunk with carried state.

Layout: `[batch, time, channels]`. A module streams when the "cache" collection is mutable in
`apply`: it then keeps, between calls, what the next chunk needs (the last input samples of a
convolution, the overlapping tail of a transposed convolution), initialised to zeros, so a
signal fed in chunks gives the same output as the whole signal at once (tests/test_codec.py).

Causality: frame t of a convolution with stride s sees inputs up to t * s + s - 1 (the end of its
hop), through a left padding of (k - 1) * d - (s - 1) samples; a transposed convolution emits
exactly T * s samples for T frames and carries its k - s overlap to the next frame.

Options EnCodec needs (Defossez et al. 2022; `importers/encodec.py`), off by default:
- `weight_norm`: the kernel is g * v / ||v|| (Salimans & Kingma 2016) with params "kernel" (v)
  and "scale" (g, one per output channel of a convolution, per input channel of a transposed
  one: PyTorch's `weight_norm(dim=0)` on its [out, in, k] / [in, out, k] weights).
- `pad_mode="reflect"`: the left padding mirrors the signal instead of zeros (as EnCodec's
  `pad_mode`, including its rule for inputs shorter than the padding: zero-extend on the right
  first). Streaming reflects the first chunk and carries samples after that, so chunks equal
  the whole signal once the first chunk is longer than every padding (at the deepest layer).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


def _kernel(
    module: nn.Module, shape: tuple[int, int, int], weight_norm: bool = False, norm_axis: int = 2
) -> jax.Array:
    # [taps, in, out]; fan-in = taps * in (flax counts the leading axes as receptive field).
    init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    axes = ("conv_kernel", "conv_in", "conv_out")
    v = module.param("kernel", nn.with_logical_partitioning(init, axes), shape, jnp.float32)
    if not weight_norm:
        return v
    # Weight norm: g starts at ||v|| so the first effective kernel is v itself (as PyTorch does).
    others = tuple(i for i in range(3) if i != norm_axis)
    norm = lambda w: jnp.sqrt(jnp.sum(jnp.square(w), axis=others))
    g_init = nn.with_logical_partitioning(lambda _, w: norm(w), (axes[norm_axis],))
    g = module.param("scale", g_init, v)
    return v * jnp.expand_dims(g / jnp.maximum(norm(v), 1e-12), others)


def pad_left(x: jax.Array, pad: int, mode: str) -> jax.Array:
    """`pad` samples before x `[batch, time, channels]`: zeros ("constant") or the mirror image
    of x ("reflect", zero-extending short inputs on the right first, as EnCodec does)."""
    if pad == 0:
        return x
    if mode == "constant":
        return jnp.pad(x, ((0, 0), (pad, 0), (0, 0)))
    if mode != "reflect":
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {mode!r}")
    length = x.shape[1]
    extra = pad - length + 1 if length <= pad else 0
    x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
    out = jnp.pad(x, ((0, 0), (pad, 0), (0, 0)), mode="reflect")
    return out[:, : out.shape[1] - extra]


def _bias(module: nn.Module, features: int) -> jax.Array:
    init = nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",))
    return module.param("bias", init, (features,), jnp.float32)


class CausalConv1d(nn.Module):
    """y[b, t, o] = sum x[b, t*s - pad + i*d, c] w[i, c, o] over causal taps.

    Attributes:
      features: output channels.
      kernel_size, stride, dilation, groups: as in any 1-D convolution.
      use_bias: add a bias.
      weight_norm: weight-normalised kernel (module docstring).
      pad_mode: "constant" (zeros) or "reflect" for the causal left padding.
      dtype: compute dtype (params stay float32).
    """

    features: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    use_bias: bool = True
    weight_norm: bool = False
    pad_mode: str = "constant"
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
        kernel = _kernel(
            self, (self.kernel_size, channels // self.groups, self.features), self.weight_norm
        )
        pad = self.left_pad
        if self.is_mutable_collection("cache"):
            buf = self.variable("cache", "buffer", jnp.zeros, (batch, pad, channels), x.dtype)
            full = jnp.concatenate([buf.value.astype(x.dtype), x], axis=1)
            if self.pad_mode != "constant":
                # The first chunk pads like the whole signal; later ones continue the buffer.
                started = self.variable("cache", "started", jnp.zeros, (), jnp.bool_)
                full = jnp.where(started.value, full, pad_left(x, pad, self.pad_mode))
                started.value = jnp.ones((), jnp.bool_)
            buf.value = full[:, full.shape[1] - pad :]
        else:
            full = pad_left(x, pad, self.pad_mode)
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
    weight_norm: bool = False  # g per input channel (PyTorch's dim 0 of [in, out, k])
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, channels = x.shape
        k, s = self.kernel_size, self.stride
        if k < s:
            raise ValueError(f"{self.name}: kernel {k} is shorter than stride {s}")
        kernel = _kernel(self, (k, channels, self.features), self.weight_norm, norm_axis=1)
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


class LSTM(nn.Module):
    """x + a stack of `layers` unidirectional LSTMs over time (EnCodec's bottleneck LSTM).

    Gates in PyTorch's order (input, forget, cell, output) with one bias (PyTorch's b_ih + b_hh).
    Causal by construction; streaming (mutable "cache") carries (h, c) of every layer.
    """

    features: int
    layers: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, _, channels = x.shape
        if channels != self.features:
            raise ValueError(
                f"{self.name}: input has {channels} channels, expected {self.features}"
            )
        h4 = 4 * self.features
        init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
        stream = self.is_mutable_collection("cache")
        y = x
        for i in range(self.layers):
            part = lambda axes: nn.with_logical_partitioning(init, axes)
            wi = self.param(f"wi_{i}", part(("conv_in", "conv_out")), (channels, h4), jnp.float32)
            wh = self.param(f"wh_{i}", part(("conv_in", "conv_out")), (self.features, h4))
            b = self.param(
                f"bias_{i}",
                nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
                (h4,),
                jnp.float32,
            )
            shape = (batch, self.features)
            if stream:
                carry = self.variable("cache", f"state_{i}", lambda: (jnp.zeros(shape),) * 2)
                h0 = carry.value
            else:
                h0 = (jnp.zeros(shape), jnp.zeros(shape))
            gates_x = (y.astype(self.dtype) @ wi.astype(self.dtype)).astype(jnp.float32) + b
            # The recurrent kernel transposed once, outside the loop, and each step's product
            # h . (wh^T)^T: the weights as the matmul's [out, in] operand. At one row XLA's
            # CPU dot ran this 1.3-1.4x faster than h . wh (EnCodec's 2 x 512 LSTM over 5 s,
            # 375 steps a layer: 68.5-70.7 -> 49.1-54.9 ms; BENCHMARKS.md, imported
            # checkpoints).
            wh_t = wh.T

            def step(hc, gx, wh_t=wh_t):
                h, c = hc
                g = gx + jax.lax.dot_general(h, wh_t, (((1,), (1,)), ((), ())))
                i_, f_, g_, o_ = jnp.split(g, 4, axis=-1)
                c = jax.nn.sigmoid(f_) * c + jax.nn.sigmoid(i_) * jnp.tanh(g_)
                h = jax.nn.sigmoid(o_) * jnp.tanh(c)
                return (h, c), h

            hc, out = jax.lax.scan(step, h0, jnp.swapaxes(gates_x, 0, 1))
            if stream:
                carry.value = hc
            y = jnp.swapaxes(out, 0, 1)
        return x + y.astype(x.dtype)
