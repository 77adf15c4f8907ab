"""Optimizers from config: AdamW, linear warm-up then cosine decay, global-norm clipping."""

from __future__ import annotations

from typing import Any

import jax
import optax


def make_schedule(cfg: Any, total_steps: int) -> optax.Schedule:
    """Warm-up from 0 to `lr` over `warmup_steps`, cosine to `lr * end_lr_ratio` at the end."""
    decay_steps = int(cfg.get("decay_steps") or total_steps)
    warmup = int(cfg.warmup_steps)
    if decay_steps <= warmup:
        return optax.linear_schedule(0.0, cfg.lr, max(warmup, 1))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.lr,
        warmup_steps=warmup,
        decay_steps=decay_steps,
        end_value=cfg.lr * cfg.end_lr_ratio,
    )


def _decay_mask(params: Any) -> Any:
    """Weight decay on matrices only: not on norms, biases or the 1-D position table."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    cfg: Any, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with the config's schedule, betas and clipping (`clip_norm` <= 0 turns it off)."""
    schedule = make_schedule(cfg, total_steps)
    chain = []
    if cfg.clip_norm and cfg.clip_norm > 0:
        chain.append(optax.clip_by_global_norm(cfg.clip_norm))
    chain.append(
        optax.adamw(
            schedule,
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=_decay_mask,
        )
    )
    return optax.chain(*chain), schedule
