"""SoundStream's discriminators and GAN losses (Zeghidour et al. 2021, sec. 3.3).

- Waveform discriminators at three scales (the signal, 2x and 4x average-pooled): MelGAN-style
  stacks of grouped, strided 1-D convolutions with leaky ReLU.
- An STFT discriminator: the complex STFT (real and imaginary parts as 2 channels) through 2-D
  convolutions that stride over frequency (and every second block over time), then one logit
  per remaining time step.

Every discriminator returns (logits, feature maps); the losses are hinge losses and SoundStream's
feature matching (L1 between real and generated feature maps, relative to the real maps' size).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax import dsp


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    wave_scales: int = 3
    wave_channels: int = 16  # width of the first waveform conv; the grouped stack grows 4x
    wave_max_channels: int = 1024
    wave_downsamples: int = 4
    stft_channels: int = 32
    stft_window: int = 1024
    stft_hop: int = 256
    dtype: Any = jnp.float32

    @classmethod
    def from_config(cls, cfg: Any) -> DiscriminatorConfig:
        from audiolm_jax.config import dataclass_from_config

        return dataclass_from_config(
            cls, cfg, "discriminator", dtype=jnp.dtype(cfg.get("dtype", "float32"))
        )


def _conv(features, kernel, strides=None, groups=1, name=None, dtype=jnp.float32):
    names = ("conv_kernel", "conv_width")[: len(kernel)] + ("conv_in", "conv_out")
    return nn.Conv(
        features,
        kernel,
        strides=strides,
        padding="SAME",
        feature_group_count=groups,
        dtype=dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
        name=name,
    )


class WaveDiscriminator(nn.Module):
    """wav `[batch, samples]` -> (logits `[batch, frames]`, feature maps)."""

    cfg: DiscriminatorConfig

    @nn.compact
    def __call__(self, wav: jax.Array):
        c = self.cfg
        feats = []
        x = _conv(c.wave_channels, (15,), dtype=c.dtype, name="conv_in")(wav[..., None])
        x = nn.leaky_relu(x, 0.2)
        feats.append(x)
        width = c.wave_channels
        for i in range(c.wave_downsamples):
            new = min(width * 4, c.wave_max_channels)
            groups = max(new // 16, 1) if width >= 4 else 1
            while width % groups or new % groups:
                groups //= 2
            x = _conv(new, (41,), (4,), groups, f"down{i}", c.dtype)(x)
            x = nn.leaky_relu(x, 0.2)
            feats.append(x)
            width = new
        x = nn.leaky_relu(_conv(width, (5,), dtype=c.dtype, name="conv_mid")(x), 0.2)
        feats.append(x)
        logits = _conv(1, (3,), dtype=c.dtype, name="conv_out")(x)[..., 0]
        return logits.astype(jnp.float32), feats


class STFTDiscriminator(nn.Module):
    """wav `[batch, samples]` -> (logits `[batch, frames]`, feature maps)."""

    cfg: DiscriminatorConfig

    @nn.compact
    def __call__(self, wav: jax.Array):
        c = self.cfg
        spec = dsp.stft(wav, c.stft_window, c.stft_hop)[..., :-1]  # drop Nyquist: F = n / 2
        h = jnp.stack([jnp.real(spec), jnp.imag(spec)], axis=-1)  # [b, t, f, 2]
        feats = []
        h = nn.leaky_relu(_conv(c.stft_channels, (7, 7), dtype=c.dtype, name="conv_in")(h), 0.2)
        feats.append(h)
        width = c.stft_channels
        # SoundStream: 6 blocks, frequency halved in each, time in every second one.
        for i, (st, sf) in enumerate(((1, 2), (2, 2)) * 3):
            new = width * 2 if i % 2 else width
            y = nn.leaky_relu(_conv(width, (3, 3), dtype=c.dtype, name=f"block{i}_a")(h), 0.2)
            y = _conv(new, (st + 2, sf + 2), (st, sf), dtype=c.dtype, name=f"block{i}_b")(y)
            skip = _conv(new, (1, 1), (st, sf), dtype=c.dtype, name=f"block{i}_skip")(h)
            h = nn.leaky_relu(y + skip, 0.2)
            feats.append(h)
            width = new
        logits = nn.Conv(
            1,
            (1, h.shape[2]),
            padding="VALID",
            dtype=c.dtype,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.lecun_normal(), ("conv_kernel", "conv_width", "conv_in", "conv_out")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
            name="conv_out",
        )(h)
        return logits[..., 0, 0].astype(jnp.float32), feats


class Discriminators(nn.Module):
    """All discriminators: a list of (logits, features), waveform scales first."""

    cfg: DiscriminatorConfig

    @nn.compact
    def __call__(self, wav: jax.Array):
        outs = []
        x = wav
        for i in range(self.cfg.wave_scales):
            if i:
                x = nn.avg_pool(x[..., None], (4,), (2,), padding="SAME")[..., 0]
            outs.append(WaveDiscriminator(self.cfg, name=f"wave{i}")(x))
        outs.append(STFTDiscriminator(self.cfg, name="stft")(wav))
        return outs


def hinge_d_loss(real_outs, fake_outs) -> jax.Array:
    """Mean over discriminators of E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(x)))]."""
    terms = [
        jnp.mean(jax.nn.relu(1 - r)) + jnp.mean(jax.nn.relu(1 + f))
        for (r, _), (f, _) in zip(real_outs, fake_outs)
    ]
    return sum(terms) / len(terms)


def hinge_g_loss(fake_outs) -> jax.Array:
    """Mean over discriminators of E[max(0, 1 - D(G(x)))]."""
    return sum(jnp.mean(jax.nn.relu(1 - f)) for f, _ in fake_outs) / len(fake_outs)


def feature_matching(real_outs, fake_outs) -> jax.Array:
    """Mean over discriminators and layers of mean|f(x) - f(G(x))| / mean|f(x)|."""
    terms = []
    for (_, rf), (_, ff) in zip(real_outs, fake_outs):
        for r, f in zip(rf, ff):
            r = jax.lax.stop_gradient(r)
            terms.append(jnp.mean(jnp.abs(r - f)) / (jnp.mean(jnp.abs(r)) + 1e-5))
    return sum(terms) / len(terms)
