"""SoundStream as a GAN the project's one trainer drives (train/interface.py).

Groups, updated in this order every step: "discriminator", then "generator" (encoder, decoder
and, for factorised codes, the quantizer's projections). `model_state` holds what gradients do
not train: the EMA codebooks and the step counter that gates the adversarial losses.

Generator loss = rec * multi-scale mel loss + wave * waveform L1 + commitment * commitment loss
                 + gate * (adv * hinge loss + feat * feature matching),
gate = 1 from step `loss.adversarial_start` on. Before that the codec learns to reconstruct and
the discriminators do not run at all (the stability recipe: see configs/soundstream_tiny.py).

Batches: {"wav": [batch, samples]} float32 at `sample_rate`, samples a multiple of the hop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax import dsp
from audiolm_jax.codec import discriminators as discs
from audiolm_jax.codec import rvq
from audiolm_jax.codec.seanet import Decoder, Encoder, SEANetConfig
from audiolm_jax.train.interface import Batch, Metrics, Model


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    """Everything that fixes the codec's arrays and rates (from `config.codec`)."""

    sample_rate: int
    seanet: SEANetConfig
    rvq: rvq.RVQConfig

    @property
    def hop(self) -> int:
        return self.seanet.hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def levels(self) -> int:
        return self.rvq.levels

    @property
    def codebook_size(self) -> int:
        return self.rvq.codebook_size

    @property
    def bitrate(self) -> float:
        """Bits per second at all levels: frame rate x Q x log2 K."""
        return self.frame_rate * self.levels * float(jnp.log2(self.codebook_size))

    @classmethod
    def from_config(cls, cfg: Any) -> CodecConfig:
        """From `config.codec` (sample_rate, seanet fields, quantizer fields)."""
        seanet = SEANetConfig.from_config(cfg.seanet)
        return cls(
            int(cfg.sample_rate), seanet, rvq.RVQConfig.from_config(cfg.quantizer, seanet.dim)
        )


@dataclasses.dataclass(frozen=True)
class LossWeights:
    rec: float = 1.0
    adv: float = 1.0
    feat: float = 2.0
    commitment: float = 0.25
    wave: float = 0.0  # L1 on the waveform (EnCodec's time-domain term)
    adversarial_start: int = 0  # steps of reconstruction-only warm-up
    # Mel bins of the reconstruction loss (SoundStream: 64). More bins resolve pitch finer:
    # at 16 kHz, 64 bins are ~2 semitones wide at 300 Hz.
    mel_bins: int = 64


def encode_latents(cfg: CodecConfig, gparams: dict, wav: jax.Array) -> jax.Array:
    """Encoder output z `[batch, frames, D]` before quantization."""
    return Encoder(cfg.seanet).apply({"params": gparams["encoder"]}, wav)


def decode_latents(cfg: CodecConfig, gparams: dict, zq: jax.Array) -> jax.Array:
    """Decoder: quantized embedding `[batch, frames, D]` -> wav `[batch, frames * hop]`."""
    return Decoder(cfg.seanet).apply({"params": gparams["decoder"]}, zq)


def init_generator(cfg: CodecConfig, rng: jax.Array, wav: jax.Array) -> tuple[dict, dict]:
    """(generator params {encoder, decoder, quantizer} with logical-axis boxes, RVQ state).
    With `kmeans_init` the codebooks are k-means of the encoder's output on `wav`."""
    k_enc, k_dec, k_q, k_cb, k_km = jax.random.split(rng, 5)
    enc = Encoder(cfg.seanet).init(k_enc, wav)["params"]
    z = Encoder(cfg.seanet).apply({"params": nn.unbox(enc)}, wav)
    dec = Decoder(cfg.seanet).init(k_dec, z)["params"]
    qparams = rvq.init_params(k_q, cfg.rvq)
    qstate = rvq.init_state(k_cb, cfg.rvq)
    if cfg.rvq.kmeans_init:
        qstate = rvq.kmeans_init(qparams, cfg.rvq, z, k_km)
    return {"encoder": enc, "decoder": dec, "quantizer": qparams}, qstate


def _levels(cfg: CodecConfig, rng: jax.Array, batch: int, dropout: float) -> jax.Array:
    """Quantizer dropout: a `dropout` fraction of examples get n_q ~ U[1, Q], the rest all Q."""
    k1, k2 = jax.random.split(rng)
    sampled = rvq.sample_levels(k1, batch, cfg.rvq)
    keep_all = jax.random.uniform(k2, (batch,)) >= dropout
    return jnp.where(keep_all, cfg.levels, sampled)


class SoundStream(Model):
    """The codec GAN: generator (encoder + RVQ + decoder) against wave + STFT discriminators."""

    groups = ("discriminator", "generator")

    def __init__(self, cfg: CodecConfig, disc: discs.DiscriminatorConfig, weights: LossWeights):
        self.cfg, self.disc_cfg, self.w = cfg, disc, weights
        self.disc = discs.Discriminators(disc)

    @classmethod
    def from_config(cls, config: Any) -> SoundStream:
        c = config.codec
        return cls(
            CodecConfig.from_config(c),
            discs.DiscriminatorConfig.from_config(config.discriminator),
            LossWeights(**config.loss.to_dict()),
        )

    # --- parameters ---------------------------------------------------------------------------

    def init(self, rng: jax.Array, batch: Batch):
        k_gen, k_disc = jax.random.split(rng)
        gparams, qstate = init_generator(self.cfg, k_gen, batch["wav"])
        params = {
            "generator": gparams,
            "discriminator": self.disc.init(k_disc, batch["wav"])["params"],
        }
        return params, {"quantizer": qstate, "step": jnp.zeros((), jnp.int32)}

    # --- forward ------------------------------------------------------------------------------

    def generate(self, gparams, qstate, wav, n_q=None) -> tuple[jax.Array, rvq.Quantized]:
        """wav -> (reconstruction, quantizer output) through the first n_q levels."""
        z = encode_latents(self.cfg, gparams, wav)
        qz = rvq.quantize(gparams["quantizer"], qstate, self.cfg.rvq, z, n_q)
        return decode_latents(self.cfg, gparams, qz.zq), qz

    def loss(self, group, params, model_state, batch, rng, train):
        wav = batch["wav"]
        gparams, dparams = params["generator"], params["discriminator"]
        qstate = model_state["quantizer"]
        k_levels, k_ema = jax.random.split(rng)
        dropout = self.cfg.rvq.dropout
        n_q = _levels(self.cfg, k_levels, wav.shape[0], dropout) if train and dropout else None
        adversarial = model_state["step"] >= self.w.adversarial_start
        disc = lambda x: self.disc.apply({"params": dparams}, x)

        if group == "discriminator":

            def d_loss():
                recon, _ = self.generate(gparams, qstate, wav, n_q)
                d = discs.hinge_d_loss(disc(wav), disc(jax.lax.stop_gradient(recon)))
                return d.astype(jnp.float32)  # bf16 discriminators: losses stay fp32

            loss = jax.lax.cond(adversarial, d_loss, lambda: jnp.zeros(()))
            return loss, (model_state, {"d_loss": loss})

        recon, qz = self.generate(gparams, qstate, wav, n_q)
        rec = dsp.multiscale_mel_loss(wav, recon, self.cfg.sample_rate, n_mels=self.w.mel_bins)
        wave = jnp.mean(jnp.abs(wav - recon))

        def adv_terms():
            real, fake = disc(wav), disc(recon)
            # fp32 like the zero branch, whatever the discriminators compute in (bf16 on pods).
            f32 = lambda x: x.astype(jnp.float32)
            return f32(discs.hinge_g_loss(fake)), f32(discs.feature_matching(real, fake))

        zero = jnp.zeros(())
        g_adv, feat = jax.lax.cond(adversarial, adv_terms, lambda: (zero, zero))
        w = self.w
        loss = (
            w.rec * rec
            + w.wave * wave
            + w.commitment * qz.commitment
            + w.adv * g_adv
            + w.feat * feat
        )
        metrics = {
            "rec_loss": rec,
            "wave_l1": wave,
            "commitment": qz.commitment,
            "g_adv": g_adv,
            "feat_match": feat,
            "quant_error": qz.errors[-1],
        }
        perp = rvq.perplexity(qz.codes, qz.active, self.cfg.codebook_size)
        metrics.update({f"perplexity/q{i}": p for i, p in enumerate(perp)})
        new_state = dict(model_state)
        if train:
            new_state["quantizer"] = rvq.ema_update(qstate, self.cfg.rvq, qz, k_ema)
            new_state["step"] = model_state["step"] + 1
        return loss, (new_state, metrics)

    def eval_metrics(self, params, model_state, batch) -> Metrics:
        """Held-out reconstruction at all levels and at one level: mel distance, SI-SDR,
        the reconstruction loss, and code usage."""
        wav = batch["wav"]
        g, q = params["generator"], model_state["quantizer"]
        recon, qz = self.generate(g, q, wav)
        recon1, _ = self.generate(g, q, wav, 1)
        sr = self.cfg.sample_rate
        perp = rvq.perplexity(qz.codes, qz.active, self.cfg.codebook_size)
        out = {
            "mel_distance": jnp.mean(dsp.mel_distance(wav, recon, sr)),
            "mel_distance_1_level": jnp.mean(dsp.mel_distance(wav, recon1, sr)),
            "si_sdr": jnp.mean(dsp.si_sdr(wav, recon)),
            "rec_loss": dsp.multiscale_mel_loss(wav, recon, sr),
            "min_perplexity": jnp.min(perp),
        }
        return out

    def tokens(self, batch: Batch) -> int:
        """Audio samples per batch (the log's tokens/s is samples/s)."""
        return int(batch["wav"].size)
