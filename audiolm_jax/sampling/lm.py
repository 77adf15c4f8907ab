"""Sampling one stage LM: a KV cache preallocated to the final length, filled by compiled
`lax.while_loop`s (no Python step per token): up to 4 consecutive loops, each attending over the
cache only up to its own end (`cache_lengths`).

    tokens = sample_tokens(cfg, params, prompt, max_len=512, rng=jax.random.key(0),
                           temperature=0.6, top_k=0, top_p=1.0, eos_id=layouts.EOS,
                           valid_ids=lambda pos: layout.valid_ids("coarse", pos, start))

Pure and jit-compiled (the config, lengths, top-k and the mask function are static); the same
key gives the same tokens. All rows share the prompt length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from audiolm_jax.lm.transformer import NEG_INF, Transformer, TransformerConfig, decode_layout


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
    jax.jit,
    static_argnames=(
        "cfg",
        "max_len",
        "top_k",
        "top_p",
        "eos_id",
        "pad_id",
        "valid_ids",
        "return_logits",
        "cache_blocks",
    ),
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
    valid_table: jax.Array | None = None,
    prompt_len: int | jax.Array | None = None,
    stop_len: int | jax.Array | None = None,
    return_logits: bool = False,
    cond: jax.Array | None = None,
    cache_blocks: int | None = None,
):
    """Continues `prompt` [batch, p] (p >= 1, e.g. BOS) to tokens [batch, max_len].

    Each step: logits of the last position -> the layout mask of that position -> temperature,
    top-k, top-p -> a token. The mask is `valid_ids(position)` ([vocab_padded] bool, e.g.
    `TokenLayout.valid_ids`; static) or the row `valid_table[position]` of a traced
    [max_len, vocab_padded] table (`TokenLayout.valid_ids_table`), which changes without
    recompiling. A row that emitted `eos_id` is padded with `pad_id` from then on; the loop
    stops when every row has ended or `stop_len` (default `max_len`) tokens exist. Padding ids
    of the vocabulary are never sampled.

    `prompt_len` (traced, default p): only the first prompt_len tokens of `prompt` are the
    prompt. The sliding-window and chunked samplers pass one buffer shape (p = max_len) with
    another prompt_len and stop_len per window, so one compilation serves every window; the
    prefill then runs over the whole buffer (positions past prompt_len are causally invisible
    and are overwritten).

    return_logits: also return the fp32 logits each token was drawn from, [batch, max_len,
    vocab_padded] (zeros where nothing was drawn), before masks and filters, for tests.

    cond: [batch, max_len] conditioning ids of every position, for a model with
    `cfg.cond_embed` (the "aligned" coarse stage; `TokenLayout.coarse_conditioning` of the
    prompt gives them, since they depend only on the prefix).

    cache_blocks: the loop runs in this many consecutive parts, each attending over the cache
    only up to its own end (`cache_lengths`), so early tokens do not read the whole
    preallocated cache; each part compiles the decoding step once more. Default (None): one
    part per 64 positions, at most 4, where the whole cache is a large read beside the
    weights (`default_cache_blocks`), else 1.
    """
    batch, p = prompt.shape
    if not 1 <= p <= max_len:
        raise ValueError(f"prompt length {p} must be in [1, max_len={max_len}]")
    cfg, params = decode_layout(cfg, params)  # unrolled layers, CPU kernels [out, in]
    start = jnp.int32(p) if prompt_len is None else jnp.asarray(prompt_len, jnp.int32)
    stop = jnp.int32(max_len) if stop_len is None else jnp.minimum(stop_len, max_len)
    model = Transformer(cfg, decode_len=max_len)
    if cond is not None:
        cond = jnp.asarray(cond, jnp.int32)
        if cond.shape != (batch, max_len):
            raise ValueError(
                f"cond must be [batch, max_len] = {(batch, max_len)}, got {cond.shape}"
            )
    logits, variables = model.apply(
        {"params": params},
        prompt,
        cond=None if cond is None else cond[:, :p],
        mutable=["cache"],
    )
    cache = dict(variables["cache"])
    cache["index"] = start  # decoding continues right after the prompt
    last = jnp.take_along_axis(logits, jnp.broadcast_to(start - 1, (batch, 1, 1)), axis=1)[:, 0]
    tokens = jnp.full((batch, max_len), pad_id, jnp.int32)
    tokens = jax.lax.dynamic_update_slice(tokens, prompt.astype(jnp.int32), (0, 0))
    tokens = jnp.where(jnp.arange(max_len) < start, tokens, pad_id)
    seen = jnp.zeros((batch, max_len, cfg.padded_vocab) if return_logits else (0,), jnp.float32)

    def body(carry, model):
        tokens, cache, last, pos, done, seen = carry
        if return_logits:
            seen = jax.lax.dynamic_update_slice(seen, last[:, None], (0, pos, 0))
        masked = last
        if valid_ids is not None:
            masked = jnp.where(valid_ids(pos), masked, NEG_INF)
        if valid_table is not None:
            masked = jnp.where(valid_table[pos], masked, NEG_INF)
        tok = _choose(masked, jax.random.fold_in(rng, pos), temperature, top_k, top_p)
        tok = jnp.where(done, pad_id, tok)
        tokens = jax.lax.dynamic_update_slice(tokens, tok[:, None], (0, pos))
        if eos_id is not None:
            done = done | (tok == eos_id)
        c = None if cond is None else jax.lax.dynamic_slice_in_dim(cond, pos, 1, axis=1)
        out, new = model.apply(
            {"params": params, "cache": cache}, tok[:, None], cond=c, mutable=["cache"]
        )
        return tokens, new["cache"], out[:, -1], pos + 1, done, seen

    carry = (tokens, cache, last, start, jnp.zeros(batch, bool), seen)
    if cache_blocks is None:
        cache_blocks = default_cache_blocks(cfg, params, batch, max_len)
    for n in cache_lengths(max_len, cache_blocks):
        # Positions before n attend only to keys before n: this part's loop carries the first
        # n cache positions (one copy in, one back), so each step reads n, not max_len.
        part = jax.tree.map(lambda c, n=n: c[:, :n] if c.ndim else c, carry[1])
        model_n = Transformer(cfg, decode_len=n)
        step_stop = jnp.minimum(stop, n)
        out = jax.lax.while_loop(
            lambda c, s=step_stop: (c[3] < s) & ~jnp.all(c[4]),
            partial(body, model=model_n),
            carry[:1] + (part,) + carry[2:],
        )
        full = jax.tree.map(
            lambda whole, c: (
                jax.lax.dynamic_update_slice_in_dim(whole, c, 0, axis=1) if c.ndim else c
            ),
            carry[1],
            out[1],
        )
        carry = out[:1] + (full,) + out[2:]
    return (carry[0], carry[5]) if return_logits else carry[0]


def default_cache_blocks(cfg: TransformerConfig, params: Any, batch: int, max_len: int) -> int:
    """How many loop parts `sample_tokens` uses by default: one per 64 positions (at most 4)
    when the whole KV cache is at least 8 MB and a quarter of the weights' bytes, else 1.

    Each part compiles the decoding step again. Where the cache is a large share of what a
    step reads (6 x 512 LM, 256 tokens, batch 8: 50 MB of cache beside 80 MB of weights) four
    parts were 1.15x faster on a 2-core CPU; for the quickstart's tiny stages they only added
    2.8 s of compilation to the first `sample()` (BENCHMARKS.md, LM sampling)."""
    itemsize = jnp.dtype(cfg.compute_dtype).itemsize
    cache = 2 * cfg.num_layers * batch * max_len * cfg.num_heads * cfg.kv_dim * itemsize
    weights = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    if cache >= max(8 * 2**20, weights / 4):
        return min(4, max(1, max_len // 64))
    return 1


def cache_lengths(max_len: int, blocks: int = 1) -> tuple[int, ...]:
    """The cache lengths of the sampler's consecutive loop parts, ending at max_len: `blocks`
    parts of equal length, each end rounded up to a multiple of 8."""
    if blocks < 1:
        raise ValueError(f"cache_blocks must be >= 1, got {blocks}")
    ends = {
        min(max_len, math.ceil(math.ceil(max_len * i / blocks) / 8) * 8) for i in range(1, blocks)
    }
    return tuple(sorted(ends | {max_len}))
