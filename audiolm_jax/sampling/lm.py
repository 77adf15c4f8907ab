"""Sampling one stage LM: a KV cache preallocated to the final length, filled by one compiled
`lax.while_loop` (no Python step per token).

    tokens = sample_tokens(cfg, params, prompt, max_len=512, rng=jax.random.key(0),
                           temperature=0.6, top_k=0, top_p=1.0, eos_id=layouts.EOS,
                           valid_ids=lambda pos: layout.valid_ids("coarse", pos, start))

Pure and jit-compiled (the config, lengths, top-k and the mask function are static); the same
key gives the same tokens. All rows share the prompt length.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from audiolm_jax.lm.transformer import NEG_INF, Transformer, TransformerConfig


def filter_logits(logits: jax.Array, *, top_k: int = 0, top_p: float | jax.Array = 1.0):
    """Keeps the `top_k` largest logits (0: all) and the smallest set whose probability reaches
    `top_p` (nucleus; 1.0: all); the rest become NEG_INF. logits: [batch, vocab] fp32."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, NEG_INF, logits)
    if isinstance(top_p, (int, float)) and top_p >= 1.0:
        return logits  # no nucleus: skip the per-step sort of the whole vocabulary
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # A token stays if the mass before it is below top_p (the most likely always stays).
    before = jnp.cumsum(probs, axis=-1) - probs
    cut_sorted = before >= top_p
    cut = jnp.zeros_like(cut_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(cut_sorted)
    return jnp.where(cut, NEG_INF, logits)


def _choose(logits, key, temperature, top_k, top_p):
    """One token per row: argmax when temperature == 0, else a filtered categorical draw."""
    greedy = jnp.argmax(logits, axis=-1)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    drawn = jax.random.categorical(key, filter_logits(scaled, top_k=top_k, top_p=top_p), axis=-1)
    return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)


@partial(
    jax.jit, static_argnames=("cfg", "max_len", "top_k", "top_p", "eos_id", "pad_id", "valid_ids")
)
def sample_tokens(
    cfg: TransformerConfig,
    params: Any,
    prompt: jax.Array,
    *,
    max_len: int,
    rng: jax.Array,
    temperature: float | jax.Array = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    valid_ids: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
    """Continues `prompt` [batch, p] (p >= 1, e.g. BOS) to tokens [batch, max_len].

    Each step: logits of the last position -> `valid_ids(position)` mask ([vocab_padded] bool,
    e.g. `TokenLayout.valid_ids`) -> temperature, top-k, top-p -> a token. A row that emitted
    `eos_id` is padded with `pad_id` from then on; the loop stops when every row has ended or
    `max_len` is reached. Padding ids of the vocabulary are never sampled.
    """
    batch, p = prompt.shape
    if not 1 <= p <= max_len:
        raise ValueError(f"prompt length {p} must be in [1, max_len={max_len}]")
    model = Transformer(cfg, decode_len=max_len)
    logits, variables = model.apply({"params": params}, prompt, mutable=["cache"])
    tokens = jnp.full((batch, max_len), pad_id, jnp.int32).at[:, :p].set(prompt.astype(jnp.int32))

    def cond(carry):
        _, _, _, pos, done = carry
        return (pos < max_len) & ~jnp.all(done)

    def body(carry):
        tokens, cache, last, pos, done = carry
        if valid_ids is not None:
            last = jnp.where(valid_ids(pos), last, NEG_INF)
        tok = _choose(last, jax.random.fold_in(rng, pos), temperature, top_k, top_p)
        tok = jnp.where(done, pad_id, tok)
        tokens = jax.lax.dynamic_update_slice(tokens, tok[:, None], (0, pos))
        if eos_id is not None:
            done = done | (tok == eos_id)
        out, new = model.apply({"params": params, "cache": cache}, tok[:, None], mutable=["cache"])
        return tokens, new["cache"], out[:, -1], pos + 1, done

    carry = (tokens, variables["cache"], logits[:, -1], jnp.int32(p), jnp.zeros(batch, bool))
    return jax.lax.while_loop(cond, body, carry)[0]
