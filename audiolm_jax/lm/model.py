"""The trainer's view of a stage LM: next-token cross-entropy on a loss mask, plus z-loss.

Batches (numpy or jax, all [batch, length]):
  inputs       int32  token fed at each position (BOS first)
  targets      int32  token to predict at each position
  weights      float  loss mask (1 where the stage trains, e.g. acoustic positions only)
  segment_ids  int32  optional: packed example id, 0 = padding
  positions    int32  optional: position within the packed example
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from audiolm_jax.lm.transformer import (
    Transformer,
    TransformerConfig,
    activation_bytes,
    train_flops_per_token,
)
from audiolm_jax.train.interface import Batch, Model


def cross_entropy(
    logits: jax.Array, targets: jax.Array, weights: jax.Array, z_loss: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted mean next-token loss in nats; `z_loss * log(Z)^2` keeps logits from drifting.

    logits: [batch, length, vocab] fp32; targets: [batch, length]; weights: [batch, length].
    Returns (loss to minimise, metrics with `loss` = cross-entropy alone).
    """
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    denom = jnp.maximum(weights.sum(), 1.0)
    ce = ((lse - target_logit) * weights).sum() / denom
    zl = (jnp.square(lse) * weights).sum() / denom
    acc = ((jnp.argmax(logits, -1) == targets) * weights).sum() / denom
    return ce + z_loss * zl, {"loss": ce, "z_loss": zl, "accuracy": acc}


class LanguageModel(Model):
    """A decoder-only stage LM (semantic, coarse or fine) as a trainer `Model`."""

    groups = ("model",)

    def __init__(
        self,
        cfg: TransformerConfig,
        z_loss: float = 0.0,
        conditioning: Callable[[jax.Array, jax.Array | None], jax.Array] | None = None,
    ):
        """conditioning(inputs, positions) -> cond ids, for an LM with `cfg.cond_embed` (the
        "aligned" coarse stage: `TokenLayout.coarse_conditioning`)."""
        if cfg.cond_embed and conditioning is None:
            raise ValueError("lm.cond_embed is set but no conditioning function was given")
        self.cfg = cfg
        self.net = Transformer(cfg)
        self.z_loss = z_loss
        self.conditioning = conditioning if cfg.cond_embed else None

    def _cond(self, batch: Batch) -> jax.Array | None:
        if self.conditioning is None:
            return None
        return self.conditioning(batch["inputs"], batch.get("positions"))

    def apply(self, params: Any, batch: Batch, *, rng: jax.Array | None = None) -> jax.Array:
        """Logits [batch, length, padded_vocab]; dropout on when `rng` is given."""
        return self.net.apply(
            {"params": params},
            batch["inputs"],
            batch.get("segment_ids"),
            batch.get("positions"),
            cond=self._cond(batch),
            deterministic=rng is None,
            rngs={"dropout": rng} if rng is not None else None,
        )

    def init(self, rng, batch):
        variables = self.net.init(
            {"params": rng},
            batch["inputs"],
            batch.get("segment_ids"),
            batch.get("positions"),
            cond=self._cond(batch),
        )
        return {"model": variables["params"]}, {}

    def loss(self, group, params, model_state, batch, rng, train):
        logits = self.apply(params["model"], batch, rng=rng if train else None)
        loss, metrics = cross_entropy(logits, batch["targets"], batch["weights"], self.z_loss)
        return loss, (model_state, metrics)

    def tokens(self, batch: Batch) -> int:
        return int(batch["inputs"].size)

    def activation_bytes(self, batch: Batch) -> float:
        b, length = batch["inputs"].shape
        return activation_bytes(self.cfg, b, length)

    def flops_per_step(self, batch: Batch) -> float:
        b, length = batch["inputs"].shape
        return b * length * train_flops_per_token(self.cfg, length)
