"""SoundStream's causal SEANet encoder and decoder (Zeghidour et al. 2021, sec. 3.1).

Encoder: conv k7 (C channels); per stride s in (2, 4, 5, 8): 3 residual units (dilations 1, 3,
9) at the block's width, ELU, a strided conv k = 2s doubling the channels; ELU; conv k3 to the
embedding dim D. 16 kHz / (2 * 4 * 5 * 8) = 50 frames a second. The decoder mirrors it with
transposed convolutions. ELU everywhere, no normalisation, every convolution causal, so both run
chunk by chunk (conv.py).

EnCodec (Defossez et al. 2022) is the same network with options, which `importers/encodec.py`
sets from a checkpoint: weight-normalised convolutions, reflect padding, residual units that
narrow to width / `compress` with a 1x1 convolution on the skip path (`conv_shortcut`), one
residual unit per block (`dilations=(1,)`, kernel 3), and a residual LSTM (`lstm_layers`) before
the encoder's last convolution and after the decoder's first.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.codec.conv import LSTM, CausalConv1d, CausalConvTranspose1d
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
    # EnCodec's options (module docstring); the defaults are SoundStream's.
    compress: int = 1  # residual units narrow to width // compress
    conv_shortcut: bool = False  # 1x1 convolution on the residual skip path
    lstm_layers: int = 0  # residual LSTM stack at the bottleneck (0: none)
    weight_norm: bool = False
    pad_mode: str = "constant"  # or "reflect"
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
            compress=int(cfg.get("compress", 1)),
            conv_shortcut=bool(cfg.get("conv_shortcut", False)),
            lstm_layers=int(cfg.get("lstm_layers", 0)),
            weight_norm=bool(cfg.get("weight_norm", False)),
            pad_mode=str(cfg.get("pad_mode", "constant")),
            dtype=jnp.dtype(cfg.get("dtype", "float32")),
        )

    def conv(self, features: int, kernel_size: int, **kw) -> CausalConv1d:
        """A causal convolution with this network's weight norm, padding and dtype."""
        return CausalConv1d(
            features,
            kernel_size,
            weight_norm=self.weight_norm,
            pad_mode=self.pad_mode,
            dtype=self.dtype,
            **kw,
        )


class ResidualUnit(nn.Module):
    """skip(x) + conv1x1(ELU(conv_k,dilated(ELU(x)))); the inner width is features // compress,
    skip is the identity or (conv_shortcut) a 1x1 convolution."""

    features: int
    dilation: int
    cfg: SEANetConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.cfg
        hidden = self.features // c.compress
        h = c.conv(hidden, c.residual_kernel_size, dilation=self.dilation, name="conv")(nn.elu(x))
        h = c.conv(self.features, 1, name="proj")(nn.elu(h))
        skip = c.conv(self.features, 1, name="shortcut")(x) if c.conv_shortcut else x
        return skip + h


class Encoder(nn.Module):
    """wav `[batch, samples]` (samples a multiple of the hop) -> z `[batch, frames, dim]`."""

    cfg: SEANetConfig

    @nn.compact
    def __call__(self, wav: jax.Array) -> jax.Array:
        c = self.cfg
        x = wav[..., None].astype(c.dtype)
        width = c.channels
        x = c.conv(width, c.kernel_size, name="conv_in")(x)
        for i, s in enumerate(c.strides):
            for j, d in enumerate(c.dilations):
                x = ResidualUnit(width, d, c, name=f"block{i}_res{j}")(x)
            width *= 2
            x = c.conv(width, 2 * s, stride=s, name=f"block{i}_down")(nn.elu(x))
        if c.lstm_layers:
            x = LSTM(width, c.lstm_layers, c.dtype, name="lstm")(x)
        z = c.conv(c.dim, c.last_kernel_size, name="conv_out")(nn.elu(x))
        return constrain(z.astype(jnp.float32), ("batch", "length", "embed"))


class Decoder(nn.Module):
    """z `[batch, frames, dim]` -> wav `[batch, frames * hop]`."""

    cfg: SEANetConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        c = self.cfg
        width = c.channels * 2 ** len(c.strides)
        x = c.conv(width, c.kernel_size, name="conv_in")(z.astype(c.dtype))
        if c.lstm_layers:
            x = LSTM(width, c.lstm_layers, c.dtype, name="lstm")(x)
        for i, s in enumerate(reversed(c.strides)):
            width //= 2
            x = CausalConvTranspose1d(
                width, 2 * s, s, weight_norm=c.weight_norm, dtype=c.dtype, name=f"block{i}_up"
            )(nn.elu(x))
            for j, d in enumerate(c.dilations):
                x = ResidualUnit(width, d, c, name=f"block{i}_res{j}")(x)
        y = c.conv(1, c.kernel_size, name="conv_out")(nn.elu(x))
        return y[..., 0].astype(jnp.float32)
