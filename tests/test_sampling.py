"""The stage sampler: a compiled KV-cache loop that agrees with the full model."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax import layouts
from audiolm_jax.lm.transformer import Transformer, TransformerConfig
from audiolm_jax.sampling import filter_logits, sample_tokens
from audiolm_jax.sampling.lm import cache_lengths, default_cache_blocks


@pytest.fixture(scope="module")
def lm():
    cfg = TransformerConfig(
        vocab_size=40, num_layers=2, num_heads=2, d_model=32, d_ff=64, dropout=0.0
    )
    ids = jnp.zeros((1, 8), jnp.int32)
    return cfg, nn.unbox(Transformer(cfg).init(jax.random.key(0), ids)["params"])


def test_kv_cache_decoding_with_conditioning_ids_equals_full_forward():
    """A `cond_embed` model: the compiled loop reads each position's conditioning id, and its
    logits equal the full forward pass over the same tokens and ids; the ids matter."""
    cfg = TransformerConfig(
        vocab_size=50, num_layers=2, num_heads=2, d_model=32, d_ff=64, dropout=0.0, cond_embed=True
    )
    n, p = 16, 5
    cond = jax.random.randint(jax.random.key(3), (2, n), 0, 50)
    prompt = jax.random.randint(jax.random.key(4), (2, p), 0, 50)
    params = nn.unbox(Transformer(cfg).init(jax.random.key(0), prompt, cond=cond[:, :p])["params"])
    tokens, seen = sample_tokens(
        cfg, params, prompt, max_len=n, rng=jax.random.key(1), cond=cond, return_logits=True
    )
    full = Transformer(cfg).apply({"params": params}, tokens, cond=cond)
    np.testing.assert_allclose(seen[:, p:, :50], full[:, p - 1 : n - 1, :50], atol=1e-4)
    other = Transformer(cfg).apply({"params": params}, tokens, cond=jnp.zeros_like(cond))
    assert not np.allclose(other[:, p:], full[:, p:], atol=1e-3)
    with pytest.raises(ValueError, match="cond_embed is set"):
        Transformer(cfg).apply({"params": params}, tokens)
    with pytest.raises(ValueError, match=r"cond must be \[batch, max_len\]"):
        sample_tokens(cfg, params, prompt, max_len=n, rng=jax.random.key(1), cond=cond[:, :8])


@pytest.mark.parametrize("position", ["t5", "rope"])
def test_kv_cache_decoding_equals_full_forward(position):
    cfg = TransformerConfig(
        vocab_size=100,
        num_layers=2,
        num_heads=2,
        d_model=32,
        d_ff=64,
        dropout=0.0,
        position=position,
    )
    ids = jax.random.randint(jax.random.key(1), (2, 12), 0, 100)
    params = nn.unbox(Transformer(cfg).init(jax.random.key(0), ids)["params"])
    full = Transformer(cfg).apply({"params": params}, ids)
    dec = Transformer(cfg, decode_len=16)
    first, v = dec.apply({"params": params}, ids[:, :5], mutable=["cache"])
    outs = [first]
    for t in range(5, 12):
        out, v = dec.apply(
            {"params": params, "cache": v["cache"]}, ids[:, t : t + 1], mutable=["cache"]
        )
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, 1)[..., :100], full[..., :100], atol=1e-5)


@pytest.mark.parametrize("blocks", [1, 3])
def test_cache_blocks_keep_logits_of_the_full_forward(lm, blocks):
    """The loop in parts that attend over a growing prefix of the cache (`cache_blocks`): every
    step's logits equal the full forward pass, also when the prompt ends past the first part
    and the stop comes before the last, and the tokens equal the one-part loop's."""
    cfg, params = lm
    assert len(cache_lengths(40, blocks)) == blocks
    assert cache_lengths(257, 4) == (72, 136, 200, 257) and cache_lengths(16) == (16,)
    buf = jax.random.randint(jax.random.key(2), (2, 40), 0, cfg.vocab_size)
    run = lambda b: sample_tokens(
        cfg,
        params,
        buf,
        max_len=40,
        rng=jax.random.key(1),
        prompt_len=20,
        stop_len=33,
        return_logits=True,
        cache_blocks=b,
    )
    tokens, seen = run(blocks)
    full = Transformer(cfg).apply({"params": params}, tokens)
    v = cfg.vocab_size
    np.testing.assert_allclose(seen[:, 20:33, :v], full[:, 19:32, :v], atol=1e-4)
    np.testing.assert_array_equal(tokens, run(1)[0])
    np.testing.assert_array_equal(tokens[:, :20], buf[:, :20])
    assert (np.asarray(tokens[:, 33:]) == 0).all()
    with pytest.raises(ValueError, match="cache_blocks must be >= 1"):
        cache_lengths(40, 0)


@pytest.mark.parametrize("batch", [1, 3])
def test_bf16_matmuls_sample_from_the_fp32_models_logits(lm, batch):
    """`matmul_dtype="bfloat16"`: the loop reads bf16 Dense kernels (one row padded to two
    on the CPU) and its logits stay within bf16 rounding of the fp32 model's full forward
    over the same tokens, while not being the fp32 numbers themselves."""
    from audiolm_jax.lm.transformer import decode_layout

    cfg, params = lm
    bf = dataclasses.replace(cfg, matmul_dtype="bfloat16")
    kernels = [
        x.dtype
        for path, x in jax.tree_util.tree_leaves_with_path(decode_layout(bf, params)[1])
        if jax.tree_util.keystr(path).endswith("['kernel']")
    ]
    assert kernels and all(d == jnp.bfloat16 for d in kernels)
    n, p = 16, 3
    prompt = jax.random.randint(jax.random.key(5), (batch, p), 0, 40)
    tokens, seen = sample_tokens(
        bf, params, prompt, max_len=n, rng=jax.random.key(2), return_logits=True
    )
    full = Transformer(cfg).apply({"params": params}, tokens)
    diff = np.abs(np.asarray(seen[:, p:, :40]) - np.asarray(full[:, p - 1 : n - 1, :40]))
    scale = float(np.abs(full[:, p - 1 : n - 1, :40]).max())
    assert 0 < diff.max() < 0.02 * scale, (diff.max(), scale)


def test_default_cache_blocks_only_where_the_cache_is_a_large_read():
    """Parts by default only where the KV cache is a large read beside the weights: the
    benchmark's 6 x 512 LM over 257 positions gets 4 at batch 8 (50 MB of cache, 80 MB of
    weights) and 1 at batch 1; a tiny stage (each part costs a compilation) gets 1."""
    big = TransformerConfig(vocab_size=1028, num_layers=6, num_heads=8, d_model=512, d_ff=2048)
    ids = jnp.zeros((1, 8), jnp.int32)
    shapes = nn.unbox(jax.eval_shape(Transformer(big).init, jax.random.key(0), ids)["params"])
    assert default_cache_blocks(big, shapes, 8, 257) == 4
    assert default_cache_blocks(big, shapes, 1, 257) == 1
    tiny = TransformerConfig(vocab_size=40, num_layers=2, num_heads=2, d_model=32, d_ff=64)
    shapes = nn.unbox(jax.eval_shape(Transformer(tiny).init, jax.random.key(0), ids)["params"])
    assert default_cache_blocks(tiny, shapes, 10, 257) == 1


def test_greedy_sampling_equals_naive_recompute(lm):
    cfg, params = lm
    prompt = jnp.array([[1, 5, 9], [1, 7, 7]], jnp.int32)
    got = sample_tokens(cfg, params, prompt, max_len=12, rng=jax.random.key(0), temperature=0.0)
    seq = np.asarray(prompt)
    for _ in range(12 - 3):
        logits = Transformer(cfg).apply({"params": params}, jnp.asarray(seq))
        seq = np.concatenate([seq, np.argmax(logits[:, -1], -1)[:, None]], 1)
    np.testing.assert_array_equal(got, seq)


def test_same_key_same_tokens_and_top_k_one_is_greedy(lm):
    cfg, params = lm
    prompt = jnp.ones((4, 1), jnp.int32)
    run = lambda key, **kw: sample_tokens(cfg, params, prompt, max_len=16, rng=key, **kw)
    a, b = run(jax.random.key(3)), run(jax.random.key(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(jax.random.key(4)))
    np.testing.assert_array_equal(
        run(jax.random.key(5), top_k=1), run(jax.random.key(6), temperature=0.0)
    )
    assert int(jnp.max(a)) < cfg.vocab_size  # padded vocabulary ids never come out


def test_eos_stops_rows_and_pads_after(lm):
    cfg, params = lm
    eos = 2
    # Only EOS is valid from position 5 on: every row ends there, the rest is padding.
    valid = lambda pos: jnp.where(
        pos >= 5, jnp.arange(cfg.padded_vocab) == eos, jnp.arange(cfg.padded_vocab) >= 4
    )
    out = np.asarray(
        sample_tokens(
            cfg,
            params,
            jnp.ones((3, 1), jnp.int32),
            max_len=10,
            rng=jax.random.key(0),
            eos_id=eos,
            valid_ids=valid,
        )
    )
    assert (out[:, 1:5] >= 4).all() and (out[:, 5] == eos).all() and (out[:, 6:] == 0).all()


def test_layout_masks_keep_each_acoustic_position_on_its_level():
    """Sampling the coarse stage under the layout's masks yields valid codes of every level."""
    layout = layouts.TokenLayout.preset("paper").__class__(
        semantic_vocab=8,
        semantic_rate_hz=25.0,
        acoustic_levels=3,
        coarse_levels=2,
        codebook_size=16,
        acoustic_rate_hz=50.0,
    )
    vocab = layout.vocab_size("coarse")
    cfg = TransformerConfig(
        vocab_size=vocab, num_layers=1, num_heads=2, d_model=32, d_ff=64, dropout=0.0
    )
    params = nn.unbox(
        Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    )
    seq = layout.coarse_sequence(np.array([1, 2, 3]), np.zeros((0, 2), np.int64), add_eos=False)
    prompt = jnp.asarray(seq.tokens)[None].repeat(2, 0)
    start = prompt.shape[1]
    out = sample_tokens(
        cfg,
        params,
        prompt,
        max_len=start + 20,
        rng=jax.random.key(1),
        valid_ids=lambda pos: layout.valid_ids("coarse", pos, start),
        eos_id=layouts.EOS,
    )
    for row in np.asarray(out):
        body = row[start:]
        body = body[: np.argmax(body == layouts.EOS)] if layouts.EOS in body else body
        body = body[: len(body) // 2 * 2]
        _, codes = layout.parse_coarse(np.concatenate([row[:start], body, [layouts.EOS]]))
        assert codes.shape[1] == 2 and codes.min() >= 0 and codes.max() < 16


def test_filter_logits_top_p_keeps_smallest_nucleus():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, top_p=0.75) > -1e8
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    kept = filter_logits(logits, top_k=3) > -1e8
    np.testing.assert_array_equal(kept, [[True, True, True, False]])
