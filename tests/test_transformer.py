"""The shared stage Transformer: causality, packing, padded vocab, shapes and counts."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiolm_jax.config import load_config
from audiolm_jax.lm.transformer import (
    NEG_INF,
    Transformer,
    TransformerConfig,
    count_params,
    decode_layout,
    pad_vocab,
)


def _cfg(**kw):
    base = dict(vocab_size=100, num_layers=2, num_heads=2, d_model=32, d_ff=64, dropout=0.0)
    base.update(kw)
    return TransformerConfig(**base)


def _init(cfg, length=24, batch=2):
    ids = jnp.zeros((batch, length), jnp.int32)
    model = Transformer(cfg)
    return model, nn.unbox(model.init(jax.random.key(0), ids)["params"])


@pytest.mark.parametrize("position", ["t5", "rope"])
@pytest.mark.parametrize("scan", [True, False])
def test_causal(position, scan):
    cfg = _cfg(position=position, scan_layers=scan)
    model, params = _init(cfg)
    ids = jax.random.randint(jax.random.key(1), (2, 24), 0, 100)
    t = 10
    changed = ids.at[:, t + 1 :].set((ids[:, t + 1 :] + 7) % 100)
    a = model.apply({"params": params}, ids)
    b = model.apply({"params": params}, changed)
    np.testing.assert_array_equal(a[:, : t + 1], b[:, : t + 1])
    assert not np.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("position", ["t5", "rope"])
def test_packing_isolates_examples(position):
    """Two examples packed in one row score exactly as they do alone, and do not interact."""
    cfg = _cfg(position=position)
    model, params = _init(cfg)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 100, 9), rng.integers(0, 100, 11)
    packed = np.zeros((1, 24), np.int32)
    packed[0, :9], packed[0, 9:20] = a, b
    seg = np.array([[1] * 9 + [2] * 11 + [0] * 4])
    pos = np.array([list(range(9)) + list(range(11)) + [0] * 4])
    out = model.apply({"params": params}, packed, seg, pos)
    alone_a = model.apply({"params": params}, a[None])
    alone_b = model.apply({"params": params}, b[None])
    np.testing.assert_allclose(out[0, :9], alone_a[0], atol=1e-5)
    np.testing.assert_allclose(out[0, 9:20], alone_b[0], atol=1e-5)
    # Changing example b leaves example a's logits bit for bit unchanged.
    other = packed.copy()
    other[0, 9:20] = (b + 3) % 100
    out2 = model.apply({"params": params}, other, seg, pos)
    np.testing.assert_array_equal(out[0, :9], out2[0, :9])


def test_padded_vocab_never_predicted():
    cfg = _cfg(vocab_size=130)
    assert cfg.padded_vocab == 256 and pad_vocab(1027) == 1152
    model, params = _init(cfg)
    logits = model.apply({"params": params}, jnp.ones((2, 24), jnp.int32))
    assert logits.shape == (2, 24, 256) and logits.dtype == jnp.float32
    assert np.all(np.asarray(logits[..., 130:]) == NEG_INF)
    probs = jax.nn.softmax(logits)
    assert float(probs[..., 130:].max()) == 0.0


def test_param_count_matches_init():
    for kw in (dict(), dict(position="rope", norm="layer"), dict(tie_embeddings=True)):
        cfg = _cfg(**kw)
        _, params = _init(cfg)
        assert sum(x.size for x in jax.tree.leaves(params)) == count_params(cfg)


def test_decode_layout_computes_the_same_logits():
    """The sampler's layout (layers unrolled; on the CPU, kernels stored output axes first):
    the same logits from the converted params (query, key and value fused into one kernel),
    and `Dense(out_first=True)` initialised with the same key draws the same values as the
    converted kernels."""
    cfg = _cfg(num_heads=4, head_dim=16)  # head_dim * heads != d_model: out's two in-axes
    model, params = _init(cfg)
    ids = jax.random.randint(jax.random.key(1), (2, 24), 0, cfg.vocab_size)
    cfg_d, params_d = decode_layout(cfg, params)
    assert cfg_d.kernels_out_first and cfg_d.fused_qkv and not cfg_d.scan_layers
    assert params_d["layer_1"]["out"]["kernel"].shape == (32, 4, 16)
    assert params_d["layer_1"]["qkv"]["kernel"].shape == (3, 4, 16, 32)
    assert "query" not in params_d["layer_1"]
    want = model.apply({"params": params}, ids)
    got = Transformer(cfg_d).apply({"params": params_d}, ids)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    unrolled = dataclasses.replace(cfg, scan_layers=False)
    fresh = nn.unbox(
        Transformer(dataclasses.replace(unrolled, kernels_out_first=True)).init(
            jax.random.key(0), ids
        )["params"]
    )
    converted = decode_layout(
        unrolled, nn.unbox(Transformer(unrolled).init(jax.random.key(0), ids)["params"])
    )[1]
    for layer in (n for n in converted if n.startswith("layer_")):
        qkv = converted[layer].pop("qkv")["kernel"]
        for i, name in enumerate(("query", "key", "value")):
            converted[layer][name] = {"kernel": qkv[i]}
    assert jax.tree.structure(fresh) == jax.tree.structure(converted)
    for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(converted)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_semantic_tpu_is_paper_size():
    """12 x (16 heads, d 1024, FFN 4096), vocab 1028 -> 1152: about 150M parameters."""
    config = load_config("semantic_tpu")
    cfg = TransformerConfig.from_config(config.lm)
    abstract = jax.eval_shape(
        lambda: Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
    )
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(abstract["params"])))
    e, f = 1024, 4096
    expected = 12 * (4 * e * e + 2 * e * f + 2 * e) + 2 * 1152 * e + e + 32 * 16
    assert n == count_params(cfg) == expected
    assert 140e6 < n < 160e6


def test_remat_bf16_and_scan_agree_on_loss():
    """Remat policies change memory, not results; bf16 compute keeps fp32 params and logits."""
    ids = jax.random.randint(jax.random.key(3), (2, 24), 0, 100)

    def loss(cfg):
        model, params = _init(cfg)
        f = lambda p: jnp.mean(model.apply({"params": p}, ids)[..., :100] ** 2)
        return jax.value_and_grad(f)(params), params

    (l0, g0), _ = loss(_cfg())
    for remat in ("full", "dots", "dots_no_batch"):
        (l1, g1), _ = loss(_cfg(remat=remat))
        np.testing.assert_allclose(l0, l1, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g0, g1)
    (l2, _), params = loss(_cfg(dtype="bfloat16"))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    np.testing.assert_allclose(l0, l2, rtol=0.05)


def test_bf16_matmuls_train_with_fp32_gradients_close_to_fp32():
    """`matmul_dtype="bfloat16"`: every Dense product (forward and both backward ones) runs on
    bf16 operands, while params and their gradients stay fp32 and close to the fp32 model's."""
    from audiolm_jax.lm.layers import low_precision_dot

    ids = jax.random.randint(jax.random.key(3), (2, 24), 0, 100)

    def loss(cfg):
        model, params = _init(cfg)
        f = lambda p: jnp.mean(model.apply({"params": p}, ids)[..., :100] ** 2)
        return jax.value_and_grad(f)(params)

    l0, g0 = loss(_cfg())
    l1, g1 = loss(_cfg(matmul_dtype="bfloat16"))
    np.testing.assert_allclose(l0, l1, rtol=0.02)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(g1))
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        assert float(jnp.abs(a - b).max()) <= 0.05 * float(jnp.abs(a).max()) + 1e-6
    # The products themselves: the custom gradient equals autodiff of the same bf16 casts.
    x = jax.random.normal(jax.random.key(1), (6, 16))
    w = jax.random.normal(jax.random.key(2), (16, 8))

    def ref(x, w):
        xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
        return jnp.dot(xb, wb, preferred_element_type=jnp.float32)

    ct = jax.random.normal(jax.random.key(4), (6, 8)).astype(jnp.bfloat16).astype(jnp.float32)
    ours = jax.vjp(lambda x, w: low_precision_dot(x, w, jnp.bfloat16, jnp.float32), x, w)
    theirs = jax.vjp(ref, x, w)
    np.testing.assert_array_equal(ours[0], theirs[0])
    for a, b in zip(ours[1](ct), theirs[1](ct)):
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2)


def test_unknown_lm_field_is_named():
    with pytest.raises(ValueError, match="unknown fields \\['num_layerz'\\]"):
        TransformerConfig.from_config({"vocab_size": 10, "num_layerz": 2})


def test_einsum_attention_matches_jax_nn_with_bias_mask_and_blocks():
    """Our CPU attention (query blocks of 128 over L = 256, its hand-written backward pass)
    equals jax.nn's, values and the gradients of q, k, v and the bias, with packed examples
    and padding rows (segment 0: no key kept)."""
    from audiolm_jax.lm.transformer import attention_mask, einsum_attention

    key = jax.random.key(0)
    q, k, v = (jax.random.normal(jax.random.fold_in(key, i), (2, 256, 4, 16)) for i in range(3))
    bias = jax.random.normal(key, (1, 4, 256, 256))
    seg = jnp.array([[1] * 100 + [2] * 156, [1] * 200 + [0] * 56])
    mask = attention_mask(seg)
    w = jax.random.normal(jax.random.fold_in(key, 9), q.shape)

    def ref(q, k, v, bias):
        return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=True)

    def ours(q, k, v, bias):
        return einsum_attention(q, k, v, bias, mask)

    real = (seg > 0)[:, :, None, None]  # jax.nn's padding rows are undefined (all masked)
    np.testing.assert_allclose(
        jnp.where(real, ours(q, k, v, bias), 0), jnp.where(real, ref(q, k, v, bias), 0), atol=2e-6
    )
    loss = lambda f: lambda *a: jnp.sum(jnp.where(real, f(*a), 0) * w)
    g_ours = jax.grad(loss(ours), argnums=(0, 1, 2, 3))(q, k, v, bias)
    g_ref = jax.grad(loss(ref), argnums=(0, 1, 2, 3))(q, k, v, bias)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a, b, atol=2e-5)
    # Padding rows pass no gradient anywhere (autodiff through the mask's `where` gives none).
    g_pad = jax.grad(lambda k: jnp.sum(ours(q, k, v, bias)[1, 200:]), argnums=0)(k)
    assert float(jnp.abs(g_pad).max()) == 0.0


@pytest.mark.parametrize(
    "name, vocab, seq_len",
    [
        ("semantic_tpu", 1028, 768),
        ("coarse_tpu", 5124, 2304),
        ("fine_tpu", 12292, 1920),
        ("piano_semantic_tpu", 1028, 768),
        ("piano_coarse_tpu", 50180, 1792),
    ],
)
def test_stage_tpu_configs_are_paper_size_and_plan_without_a_cache(name, vocab, seq_len):
    """Each stage at paper size (12 x 1024, 16 heads) on a token cache; the layout's longest
    training sequence fits its context; --dry_run's shape-only build needs no cache."""
    from audiolm_jax import tasks
    from audiolm_jax.layouts import TokenLayout

    config = load_config(name)
    cfg = TransformerConfig.from_config(config.lm)
    assert (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.d_ff) == (12, 1024, 16, 4096)
    assert cfg.vocab_size == vocab and config.data.seq_len == seq_len
    stage = config.data.stage
    layout = TokenLayout.preset("piano" if name.startswith("piano") else "paper")
    assert layout.max_length(stage) - 1 <= seq_len
    model, source, _ = tasks.build(config, shapes_only=True)
    assert next(source)["inputs"].shape == (256, seq_len)
    assert model.cfg == cfg


def test_aligned_coarse_config_needs_the_conditioning_embedding():
    """coarse_semantic='aligned' and lm.cond_embed go together (each alone is refused, naming
    the other); the pair plans without a cache and adds one [vocab, d] table."""
    from audiolm_jax import tasks

    config = load_config("piano_coarse_tpu")
    config.data.layout.coarse_semantic = "aligned"
    with pytest.raises(ValueError, match="needs --config.lm.cond_embed=True"):
        tasks.build(config, shapes_only=True)
    config.lm.cond_embed = True
    model, source, _ = tasks.build(config, shapes_only=True)
    params, _ = model.init(jax.random.key(0), {k: v[:1, :16] for k, v in next(source).items()})
    params, cfg = nn.unbox(params), model.cfg
    assert params["model"]["cond"]["embedding"].shape == (cfg.padded_vocab, cfg.d_model)
    n = sum(x.size for x in jax.tree.leaves(params))
    assert n == count_params(cfg)
    config = load_config("piano_semantic_tpu")
    config.lm.cond_embed = True
    with pytest.raises(ValueError, match="only for the coarse stage"):
        tasks.build(config, shapes_only=True)


def test_pallas_flash_attention_matches_ours_in_interpret_mode():
    """The TPU flash kernel (lm.attention_impl=pallas), run by Pallas's TPU interpreter on this
    CPU: a packed RoPE model's logits and gradients equal the einsum attention's."""
    from jax.experimental.pallas import tpu as pltpu

    cfg = _cfg(position="rope", d_model=64, num_heads=2)  # head dim 32
    model, params = _init(cfg, length=128)
    ids = jax.random.randint(jax.random.key(1), (2, 128), 0, 100)
    segs = jnp.concatenate([jnp.ones((2, 50), jnp.int32), jnp.full((2, 78), 2, jnp.int32)], 1)
    flash = Transformer(_cfg(position="rope", d_model=64, num_heads=2, attention_impl="pallas"))

    def loss(model, p):
        return jnp.mean(jax.nn.log_softmax(model.apply({"params": p}, ids, segs))[..., 0])

    ref, g_ref = jax.value_and_grad(lambda p: loss(model, p))(params)
    with pltpu.force_tpu_interpret_mode():
        out, g_out = jax.value_and_grad(lambda p: loss(flash, p))(params)
        logits = flash.apply({"params": params}, ids, segs)
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    np.testing.assert_allclose(logits, model.apply({"params": params}, ids, segs), atol=2e-5)
    for a, b in zip(jax.tree.leaves(g_out), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_pallas_attention_needs_rope():
    model = Transformer(_cfg(attention_impl="pallas"))  # T5 relative bias by default
    with pytest.raises(ValueError, match="lm.position=rope"):
        model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))


def test_dropout_drops_its_rate_with_masks_that_depend_on_key_row_and_position():
    from audiolm_jax.lm.layers import Dropout, dropout_bits

    x = jnp.ones((64, 32, 128))

    def drop(key, rate=0.1):
        return Dropout(rate, deterministic=False).apply({}, x, rngs={"dropout": key})

    y = np.asarray(drop(jax.random.key(0)))
    dropped = y == 0
    # 262144 draws: the drop share's standard deviation is 0.0006.
    assert abs(dropped.mean() - 0.1) < 0.003
    assert abs(y.mean() - 1.0) < 0.005 and np.allclose(y[~dropped], 1 / 0.9)
    assert abs((np.asarray(drop(jax.random.key(0), 0.5)) == 0).mean() - 0.5) < 0.005
    # Same key, same mask; another key, an independent one (both dropped ~ 0.1 x 0.1).
    np.testing.assert_array_equal(np.asarray(drop(jax.random.key(0))), y)
    other = np.asarray(drop(jax.random.key(1))) == 0
    assert abs((dropped & other).mean() - 0.01) < 0.002
    # No row repeats another's words in another order (the per-row word is mixed twice).
    bits = np.asarray(dropout_bits(jax.random.key(0), (64, 4096)))
    assert len({tuple(np.sort(r)[:8]) for r in bits}) == 64
    assert len(np.unique(bits)) > 0.99 * bits.size
    # A word depends on the row and the flat position within it, not on how the row is
    # shaped (sharded models: tests/test_sharding.py).
    assert dropout_bits(jax.random.key(0), ()).shape == ()
    np.testing.assert_array_equal(
        np.asarray(dropout_bits(jax.random.key(0), (64, 32, 128))), bits.reshape(64, 32, 128)
    )
