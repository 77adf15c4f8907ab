"""SoundStream's causal SEANet encoder and decoder (Zeghidour et al. 2021, sec. 3.1).

Encoder: conv k7 (C channels); per stride s in (2, 4, 5, 8): 3 residual units (dilations 1, 3,
9) at the block's width, ELU, a strided conv k = 2s doubling the channels; ELU; conv k3 to the
embedding dim D. 16 kHz / (2 * 4 * 5 * 8) = 50 frames a second. The decoder mirrors it with
transposed convolutions. ELU everywhere, no normalisation, every convolution causal, so both run
chunk by chunk (conv.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.codec.conv import CausalConv1d, CausalConvTranspose1d
from audiolm_jax.lm.layers import constrain


@dataclasses.dataclass(frozen=True)
class SEANetConfig:
    """Encoder/decoder shape. `channels` is C, the width of the first/last convolution."""

    channels: int = 32
    dim: int = 128
    strides: tuple[int, ...] = (2, 4, 5, 8)
    dilations: tuple[int, ...] = (1, 3, 9)
    kernel_size: int = 7
    residual_kernel_size: int = 7
    last_kernel_size: int = 3
    dtype: Any = jnp.float32

    @property
    def hop(self) -> int:
        """Samples per frame (product of the strides)."""
        return math.prod(self.strides)

    @classmethod
    def from_config(cls, cfg: Any) -> SEANetConfig:
        return cls(
            channels=int(cfg.channels),
            dim=int(cfg.dim),
            strides=tuple(int(s) for s in cfg.strides),
            dilations=tuple(int(d) for d in cfg.get("dilations", (1, 3, 9))),
            kernel_size=int(cfg.get("kernel_size", 7)),
            residual_kernel_size=int(cfg.get("residual_kernel_size", 7)),
            last_kernel_size=int(cfg.get("last_kernel_size", 3)),
            dtype=jnp.dtype(cfg.get("dtype", "float32")),
        )


class ResidualUnit(nn.Module):
    """x + conv1x1(ELU(conv_k,dilated(ELU(x))))."""

    features: int
    dilation: int
    kernel_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = CausalConv1d(
            self.features, self.kernel_size, dilation=self.dilation, dtype=self.dtype, name="conv"
        )(nn.elu(x))
        h = CausalConv1d(self.features, 1, dtype=self.dtype, name="proj")(nn.elu(h))
        return x + h


class Encoder(nn.Module):
    """wav `[batch, samples]` (samples a multiple of the hop) -> z `[batch, frames, dim]`."""

    cfg: SEANetConfig

    @nn.compact
    def __call__(self, wav: jax.Array) -> jax.Array:
        c = self.cfg
        x = wav[..., None].astype(c.dtype)
        width = c.channels
        x = CausalConv1d(width, c.kernel_size, dtype=c.dtype, name="conv_in")(x)
        for i, s in enumerate(c.strides):
            for j, d in enumerate(c.dilations):
                x = ResidualUnit(
                    width, d, c.residual_kernel_size, c.dtype, name=f"block{i}_res{j}"
                )(x)
            width *= 2
            x = CausalConv1d(width, 2 * s, stride=s, dtype=c.dtype, name=f"block{i}_down")(
                nn.elu(x)
            )
        z = CausalConv1d(c.dim, c.last_kernel_size, dtype=c.dtype, name="conv_out")(nn.elu(x))
        return constrain(z.astype(jnp.float32), ("batch", "length", "embed"))


class Decoder(nn.Module):
    """z `[batch, frames, dim]` -> wav `[batch, frames * hop]`."""

    cfg: SEANetConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        c = self.cfg
        width = c.channels * 2 ** len(c.strides)
        x = CausalConv1d(width, c.kernel_size, dtype=c.dtype, name="conv_in")(z.astype(c.dtype))
        for i, s in enumerate(reversed(c.strides)):
            width //= 2
            x = CausalConvTranspose1d(width, 2 * s, s, dtype=c.dtype, name=f"block{i}_up")(
                nn.elu(x)
            )
            for j, d in enumerate(c.dilations):
                x = ResidualUnit(
                    width, d, c.residual_kernel_size, c.dtype, name=f"block{i}_res{j}"
                )(x)
        y = CausalConv1d(1, c.kernel_size, dtype=c.dtype, name="conv_out")(nn.elu(x))
        return y[..., 0].astype(jnp.float32)
