"""The decoder-only Transformer of AudioLM's three stages (arXiv:2209.03143, sec. 4.1).

Pre-norm blocks, causal self-attention through `jax.nn.dot_product_attention` (cuDNN on GPU
where `attention_impl="cudnn"`), GELU FFN, T5 relative position bias (or RoPE), `nn.scan` over
layers with a remat policy, bf16 compute with fp32 params, fp32 logits.

Packed batches: `segment_ids` [batch, length] (0 = padding) keep attention inside one example.

    model = Transformer(TransformerConfig(vocab_size=1027, num_layers=12, ...))
    params = model.init(rng, ids)["params"]
    logits = model.apply({"params": params}, ids)        # [batch, length, vocab_padded] fp32
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.lm.layers import Dense, Dropout, Embed, constrain, make_norm, out_first_kernel
from audiolm_jax.lm.position import RelativePositionBias, apply_rope

NEG_INF = -1e9  # finite, so masked logits never turn a loss into inf - inf = NaN


def pad_vocab(vocab_size: int, multiple: int = 128) -> int:
    """Vocabulary rounded up to a multiple of 128 (TPU lanes / tensor cores)."""
    return -(-vocab_size // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Shapes and switches of the Transformer. Built from `config.lm` by `from_config`."""

    vocab_size: int
    num_layers: int = 12
    num_heads: int = 16
    d_model: int = 1024
    d_ff: int = 4096
    head_dim: int | None = None  # default d_model // num_heads
    dropout: float = 0.1
    position: str = "t5"  # "t5" relative bias | "rope"
    rel_buckets: int = 32
    rel_max_distance: int = 128
    norm: str = "rms"
    scan_layers: bool = True
    remat: str = "none"  # none | full | dots | dots_no_batch
    dtype: str = "float32"  # compute dtype; params are always fp32
    # None: "einsum" on CPU, else XLA's | "xla" | "cudnn" | "einsum" | "pallas" (TPU flash
    # attention kernel; takes no additive bias, so it needs position="rope")
    attention_impl: str | None = None
    tie_embeddings: bool = False
    # A second embedding table for per-position conditioning ids (`cond` of __call__, same id
    # space as the tokens), added to the token embeddings: the "aligned" coarse layout feeds
    # each acoustic position the semantic id of its frame (layouts.coarse_conditioning).
    cond_embed: bool = False
    # Every Dense kernel stored output axes first (`layers.Dense.out_first`): the decode layout
    # that `decode_layout` sets for the sampler on the CPU; params in that layout differ in shape.
    kernels_out_first: bool = False
    # Query, key and value as one Dense ("qkv", kernel [embed, 3, heads, kv]): the decode
    # layout on the CPU, where each decoding step's three small matmuls cost three calls.
    fused_qkv: bool = False
    # Operand dtype of every Dense matmul (None: `dtype`), accumulated in `dtype`; norms,
    # attention and the KV cache stay in `dtype`. "bfloat16" halves the bytes of weights a
    # decoding step reads: the 6 x 512 LM's batch-8 step 8.96 -> 5.36 ms on a 2-core Xeon
    # with AMX (BENCHMARKS.md, LM sampling). Also a training option (bf16 operands, fp32
    # params and accumulation).
    matmul_dtype: str | None = None

    @property
    def padded_vocab(self) -> int:
        return pad_vocab(self.vocab_size)

    @property
    def kv_dim(self) -> int:
        return self.head_dim or self.d_model // self.num_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def matmul_jnp_dtype(self) -> jnp.dtype | None:
        if self.matmul_dtype is None:
            return None
        if self.matmul_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(
                f"lm.matmul_dtype must be None, float32, bfloat16 or float16, got "
                f"{self.matmul_dtype!r}"
            )
        return jnp.dtype(self.matmul_dtype)

    @classmethod
    def from_config(cls, cfg: Any) -> TransformerConfig:
        """Builds from a ConfigDict/mapping, naming any field this class does not know."""
        from audiolm_jax.config import dataclass_from_config

        return dataclass_from_config(cls, cfg, "lm")


_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def _sum_to_shape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sums broadcast axes away by halving them: XLA's CPU reduce over a leading axis is ~50x
    slower than the same sum done as a tree of fused adds (measured on [8, 8, 256, 256])."""
    for axis, size in enumerate(shape):
        while x.shape[axis] > size:
            n = x.shape[axis]
            lo = jax.lax.slice_in_dim(x, 0, n // 2, axis=axis)
            hi = jax.lax.slice_in_dim(x, n // 2, 2 * (n // 2), axis=axis)
            rest = jax.lax.slice_in_dim(x, 2 * (n // 2), n, axis=axis)
            x = lo + hi
            if rest.shape[axis]:
                x = x + jnp.concatenate(
                    [rest, jnp.zeros_like(jax.lax.slice_in_dim(x, 1, x.shape[axis], axis=axis))],
                    axis=axis,
                )
    return x


def _softmax_attention(qt, kt, vt, bias, keep):
    """qt [b, h, n, d] (pre-scaled) over kt/vt [b, h, m, d]; bias/keep broadcast to [b, h, n, m]
    (keep None: every key)."""
    return _softmax_attention_vjp(bias is not None, keep is not None)(qt, kt, vt, bias, keep)


def _attention_probs(qt, kt, vt, bias, keep):
    scores = jnp.einsum("bhqd,bhkd->bhqk", qt, kt, preferred_element_type=jnp.float32)
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    if keep is not None:
        scores = jnp.where(keep, scores, NEG_INF)
    probs = jax.nn.softmax(scores, axis=-1).astype(vt.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", probs, vt), probs


@functools.cache
def _softmax_attention_vjp(has_bias: bool, has_keep: bool):
    """Softmax attention with a hand-written backward pass (flash attention's, Dao et al. 2022,
    sec. 3.1 / app. B.2): the softmax gradient's row term is sum(dO * O) over the head dim
    instead of autodiff's sum(dP * P) over the keys, 4x less to read at d 64, L 256; the bias
    gradient is summed over the batch by halving (`_sum_to_shape`). The forward pass is the
    same program as without it."""

    @jax.custom_vjp
    def attention(qt, kt, vt, bias, keep):
        return _attention_probs(qt, kt, vt, bias, keep)[0]

    def fwd(qt, kt, vt, bias, keep):
        out, probs = _attention_probs(qt, kt, vt, bias, keep)
        return out, (qt, kt, vt, bias, keep, probs, out)

    def bwd(res, g):
        qt, kt, vt, bias, keep, probs, out = res
        f32 = jnp.float32
        dv = jnp.einsum("bhqk,bhqd->bhkd", probs, g.astype(probs.dtype))
        dp = jnp.einsum("bhqd,bhkd->bhqk", g, vt, preferred_element_type=f32)
        delta = jnp.sum(g.astype(f32) * out.astype(f32), axis=-1, keepdims=True)
        ds = probs.astype(f32) * (dp - delta)
        if has_keep:  # a row with no key kept (padding) has uniform probs, no gradient
            ds = jnp.where(keep, ds, 0.0)
        dq = jnp.einsum("bhqk,bhkd->bhqd", ds.astype(qt.dtype), kt)
        dk = jnp.einsum("bhqk,bhqd->bhkd", ds.astype(kt.dtype), qt)
        dbias = _sum_to_shape(ds, bias.shape).astype(bias.dtype) if has_bias else None
        return dq.astype(qt.dtype), dk.astype(kt.dtype), dv.astype(vt.dtype), dbias, None

    attention.defvjp(fwd, bwd)
    return attention


def _attend_block(qt, kt, vt, bias, mask, q0: int):
    """Queries qt [b, h, n, d] starting at position q0 over keys kt/vt [b, h, m, d], m <= q0 + n."""
    n, m = qt.shape[2], kt.shape[2]
    keep = jnp.arange(m)[None, :] <= q0 + jnp.arange(n)[:, None]
    if mask is not None:
        keep = keep & mask[:, :, q0 : q0 + n, :m]
    block_bias = None if bias is None else bias[:, :, q0 : q0 + n, :m]
    return _softmax_attention(qt, kt, vt, block_bias, keep)


def einsum_attention(q, k, v, bias=None, mask=None, block: int = 128):
    """Causal softmax attention written as batched einsums over [batch, heads, length, dim].

    Same result as `jax.nn.dot_product_attention(..., is_causal=True)`. On the CPU, XLA runs this
    layout (batch axes first, contraction last) 2-3x faster than jax.nn's (benchmarks/). Queries
    go in blocks of `block`, each against the keys up to its end only, so the fully masked upper
    blocks are never computed (L = 256: a quarter of the attention work saved).
    q, k, v: [batch, length, heads, dim]; bias: [1|batch, heads, q, k]; mask: [batch, 1, q, k].
    """
    length, dim = q.shape[1], q.shape[-1]
    qt, kt, vt = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
    qt = qt * jnp.asarray(dim**-0.5, q.dtype)
    if length % block or length < 2 * block:
        block = length
    outs = [
        _attend_block(
            qt[:, :, s : s + block], kt[:, :, : s + block], vt[:, :, : s + block], bias, mask, s
        )
        for s in range(0, length, block)
    ]
    out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)
    return jnp.swapaxes(out, 1, 2)


def _impl(cfg: TransformerConfig) -> str:
    return cfg.attention_impl or ("einsum" if jax.default_backend() == "cpu" else "xla")


def kv_head_major(cfg: TransformerConfig) -> bool:
    """Whether the KV cache is kept head-major, [b * h, L, d] (batch-major): on the einsum
    path, the layout its batched matmuls read, so no decoding step transposes the whole cache
    (at batch 8 that transpose cost more than the matmuls); jax.nn's kernels read [b, L, h, d]."""
    return _impl(cfg) == "einsum"


def _flat_heads(t: jax.Array, b: int, h: int) -> jax.Array:
    """A bias or mask [1|b, 1|h, q, k] as [1, 1|b * h, q, k], matching heads flattened
    batch-major."""
    if t.shape[0] == 1 and t.shape[1] == 1:
        return t
    t = jnp.broadcast_to(t, (b, h) + t.shape[2:])
    return t.reshape((1, b * h) + t.shape[2:])


def attend(
    cfg: TransformerConfig, q, k, v, bias, mask, causal: bool = True, head_major_kv: bool = False
):
    """Dispatches on `attention_impl`: our einsum form on CPU, `jax.nn.dot_product_attention`
    (XLA, or cuDNN's fused kernel when "cudnn") elsewhere, the Pallas TPU flash kernel for
    causal training passes when "pallas" (then `mask` is the [b, L] segment ids, see
    `pallas_attention`; other calls fall back to XLA's attention).

    `causal=False`: `mask` [1|b, 1, q, k] (or None: all of them) says which keys each query
    sees (bidirectional encoders, and decoding over a KV cache). `cfg` needs only an
    `attention_impl` field (the feature models' configs have one too). head_major_kv (einsum
    only): k, v come as [b * h, L, d] (batch-major), the decode cache's layout where
    `kv_head_major(cfg)`.
    """
    impl = _impl(cfg)
    if impl == "einsum":
        if causal:
            return einsum_attention(q, k, v, bias, mask)
        qt = jnp.swapaxes(q, 1, 2) * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
        if not head_major_kv:
            k, v = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)
            return jnp.swapaxes(_softmax_attention(qt, k, v, bias, mask), 1, 2)
        # The decode cache [b * h, L, d], read as one batch of b * h heads: no reshape of the
        # cache between its in-place update and the matmuls (see `Block`).
        b, h, n, d = qt.shape
        bias, mask = (None if t is None else _flat_heads(t, b, h) for t in (bias, mask))
        out = _softmax_attention(qt.reshape(1, b * h, n, d), k[None], v[None], bias, mask)
        return jnp.swapaxes(out.reshape(b, h, n, d), 1, 2)
    if head_major_kv:
        raise ValueError("head-major keys/values are only read by the einsum attention")
    if impl == "pallas":
        if causal and bias is None:
            return pallas_attention(q, k, v, mask)
        impl = "xla"
    if impl not in ("xla", "cudnn"):
        raise ValueError(f"lm.attention_impl must be einsum, xla, cudnn or pallas, got {impl!r}")
    return jax.nn.dot_product_attention(
        q, k, v, bias=bias, mask=mask, is_causal=causal, implementation=impl
    )


def pallas_attention(q, k, v, segment_ids=None):
    """Causal flash attention with the Pallas TPU kernel (jax.experimental.pallas.ops.tpu),
    q/k/v [b, L, h, d] -> [b, L, h, d]; packed examples stay apart by `segment_ids` [b, L].

    A pallas_call is not split by XLA's sharding propagation, so under a mesh it runs per
    shard inside `shard_map`: batch and heads split as the logical rules say; the sequence
    must not be (each shard sees whole sequences).
    """
    from jax.experimental.pallas.ops.tpu import flash_attention as fa

    scale = q.shape[-1] ** -0.5

    def kernel(q, k, v, seg=None):
        qt, kt, vt = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))
        ids = None if seg is None else fa.SegmentIds(q=seg, kv=seg)
        out = fa.flash_attention(qt, kt, vt, segment_ids=ids, causal=True, sm_scale=scale)
        return jnp.swapaxes(out, 1, 2)

    args = (q, k, v) if segment_ids is None else (q, k, v, segment_ids.astype(jnp.int32))
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return kernel(*args)
    spec = nn.logical_to_mesh_axes(("batch", "length", "heads", "kv"))
    if spec[1] is not None:
        raise ValueError(
            "lm.attention_impl=pallas needs whole sequences per device; the sharding rules "
            f"split `length` over {spec[1]!r}"
        )
    specs = (spec,) * 3 + ((jax.sharding.PartitionSpec(spec[0], None),) if len(args) == 4 else ())
    return jax.shard_map(kernel, mesh=mesh, in_specs=specs, out_specs=spec, check_vma=False)(*args)


def attention_mask(segment_ids: jax.Array | None) -> jax.Array | None:
    """[batch, 1, q, k] True where q and k belong to the same (non-padding) example."""
    if segment_ids is None:
        return None
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return (same & (segment_ids[:, None, :] > 0))[:, None]


class Block(nn.Module):
    """One pre-norm Transformer layer. Scan-compatible: (x, ...) -> (x, None)."""

    cfg: TransformerConfig
    deterministic: bool = True
    decode_len: int = 0  # > 0: keys/values go to a KV cache of this length ("cache" collection)

    @nn.compact
    def __call__(self, x, bias, mask, positions):
        cfg, dt = self.cfg, self.cfg.compute_dtype
        h, d, e = cfg.num_heads, cfg.kv_dim, cfg.d_model
        of = cfg.kernels_out_first
        drop = Dropout(cfg.dropout, deterministic=self.deterministic)
        mm = cfg.matmul_jnp_dtype

        y = make_norm(cfg.norm, dt, name="attn_norm")(x)
        if cfg.fused_qkv:
            qkv = Dense(
                (e, 3, h, d),
                ("embed", None, "heads", "kv"),
                1,
                dt,
                out_first=of,
                matmul_dtype=mm,
                name="qkv",
            )
            qkv = qkv(y)
            qkv = [qkv[..., i, :, :] for i in range(3)]
        else:
            qkv = [
                Dense(
                    (e, h, d),
                    ("embed", "heads", "kv"),
                    1,
                    dt,
                    out_first=of,
                    matmul_dtype=mm,
                    name=n,
                )(y)
                for n in ("query", "key", "value")
            ]
        q, k, v = (constrain(t, ("batch", "length", "heads", "kv")) for t in qkv)
        if cfg.position == "rope":
            q, k = apply_rope(q, positions), apply_rope(k, positions)
        if self.decode_len:
            # Write this chunk's keys/values at its absolute position, attend over the cache.
            start = positions[0, 0]
            head_major = kv_head_major(cfg)
            b, n = x.shape[0], self.decode_len
            # Head-major as [b * h, L, d]: the batched matmuls read the updated cache as it is.
            # Kept as [b, h, L, d], XLA fused each update twice (into the loop's carry and into
            # the matmul's reshape) and copied every cache ~4 times a step (bench_lm_sample).
            shape = (b * h, n, d) if head_major else (b, n, h, d)
            at = (0, start, 0) if head_major else (0, start, 0, 0)
            kv = []
            for name, new in (("cached_key", k), ("cached_value", v)):
                if head_major:
                    new = jnp.swapaxes(new, 1, 2).reshape(b * h, -1, d)
                slot = self.variable("cache", name, jnp.zeros, shape, dt)
                slot.value = jax.lax.dynamic_update_slice(slot.value, new.astype(dt), at)
                kv.append(slot.value)
            k, v = kv
            a = attend(cfg, q, k, v, bias, mask, causal=False, head_major_kv=head_major)
        else:
            a = attend(cfg, q, k, v, bias, mask)
        a = constrain(a, ("batch", "length", "heads", "kv"))
        out = Dense(
            (h, d, e), ("heads", "kv", "embed"), 2, dt, out_first=of, matmul_dtype=mm, name="out"
        )(a)
        x = x + drop(out)
        x = constrain(x, ("batch", "length", "embed"))

        y = make_norm(cfg.norm, dt, name="ffn_norm")(x)
        y = Dense((e, cfg.d_ff), ("embed", "mlp"), 1, dt, out_first=of, matmul_dtype=mm, name="wi")(
            y
        )
        y = constrain(nn.gelu(y), ("batch", "length", "mlp"))
        y = Dense((cfg.d_ff, e), ("mlp", "embed"), 1, dt, out_first=of, matmul_dtype=mm, name="wo")(
            drop(y)
        )
        x = x + drop(y)
        return constrain(x, ("batch", "length", "embed")), None


class Transformer(nn.Module):
    """Decoder-only LM: ids [batch, length] -> fp32 logits [batch, length, padded_vocab].

    Logits of the padding ids (>= vocab_size) are NEG_INF: they are never predicted or sampled.
    """

    cfg: TransformerConfig
    decode_len: int = 0  # > 0: incremental decoding with a KV cache of this many positions

    @nn.compact
    def __call__(
        self,
        ids: jax.Array,
        segment_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
        *,
        cond: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """Training/scoring: the whole sequence at once. Decoding (`decode_len` > 0, apply with
        `mutable=["cache"]`): `ids` [batch, n] continue the cached sequence, first call = prompt.
        `cond` [batch, n]: conditioning ids at the same positions, required with
        `cfg.cond_embed` (PAD = 0 where there is none) and refused without it.
        """
        cfg = self.cfg
        b, length = ids.shape
        if cfg.cond_embed != (cond is not None):
            raise ValueError(
                "lm.cond_embed is set: pass cond ids [batch, length]"
                if cfg.cond_embed
                else "cond ids were given but lm.cond_embed is off"
            )
        if cond is not None and cond.shape != ids.shape:
            raise ValueError(f"cond has shape {cond.shape}, the ids {ids.shape}")
        start = 0
        if self.decode_len:
            if segment_ids is not None:
                raise ValueError("decoding does not take packed (segment_ids) inputs")
            index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
            start = index.value
            index.value = start + length
        if positions is None:
            positions = jnp.broadcast_to(start + jnp.arange(length, dtype=jnp.int32), (b, length))
        embed = Embed(cfg.padded_vocab, cfg.d_model, dtype=cfg.compute_dtype, name="embed")
        x = embed(ids)
        if cond is not None:
            x = x + Embed(cfg.padded_vocab, cfg.d_model, dtype=cfg.compute_dtype, name="cond")(cond)
        x = constrain(x, ("batch", "length", "embed"))
        x = Dropout(cfg.dropout, deterministic=deterministic)(x)

        q_idx = start + jnp.arange(length, dtype=jnp.int32)
        k_idx = jnp.arange(self.decode_len or length, dtype=jnp.int32)
        bias = None
        if cfg.position == "t5":
            bias = RelativePositionBias(
                cfg.num_heads,
                cfg.rel_buckets,
                cfg.rel_max_distance,
                dtype=cfg.compute_dtype,
                name="rel_bias",
            )(q_idx, k_idx)
        elif cfg.position != "rope":
            raise ValueError(f"lm.position must be 't5' or 'rope', got {cfg.position!r}")
        if self.decode_len:
            mask = (k_idx[None, :] <= q_idx[:, None])[None, None]  # cached keys up to each query
        elif _impl(cfg) == "pallas":
            if bias is not None:
                raise ValueError(
                    "lm.attention_impl=pallas: the flash kernel takes no additive bias; set "
                    "lm.position=rope (T5 relative bias is the default)"
                )
            mask = segment_ids  # the kernel keeps packed examples apart by their ids
        else:
            mask = attention_mask(segment_ids)

        block = Block
        if cfg.remat != "none":
            if cfg.remat not in _REMAT_POLICIES:
                raise ValueError(f"lm.remat must be one of none, {', '.join(_REMAT_POLICIES)}")
            block = nn.remat(
                block, policy=_REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers
            )
        if cfg.scan_layers:
            stack = nn.scan(
                block,
                variable_axes={"params": 0, "cache": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, deterministic, self.decode_len, name="layers")
            x, _ = stack(x, bias, mask, positions)
        else:
            for i in range(cfg.num_layers):
                layer = block(cfg, deterministic, self.decode_len, name=f"layer_{i}")
                x, _ = layer(x, bias, mask, positions)

        x = make_norm(cfg.norm, cfg.compute_dtype, name="final_norm")(x)
        if cfg.tie_embeddings:
            logits = embed.attend(x) / jnp.sqrt(cfg.d_model).astype(jnp.float32)
        else:
            logits = Dense(
                (cfg.d_model, cfg.padded_vocab),
                ("embed", "vocab"),
                1,
                cfg.compute_dtype,
                out_dtype=jnp.float32,
                out_first=cfg.kernels_out_first,
                matmul_dtype=cfg.matmul_jnp_dtype,
                name="logits",
            )(x)
        logits = logits.astype(jnp.float32)
        valid = jnp.arange(cfg.padded_vocab) < cfg.vocab_size
        logits = jnp.where(valid, logits, NEG_INF)
        return constrain(logits, ("batch", "length", "vocab"))


def unscan(cfg: TransformerConfig, params: Any) -> tuple[TransformerConfig, Any]:
    """The same model with its layers unrolled: scanned params ("layers", each leaf stacked on
    a leading axis of num_layers) become "layer_0" .. "layer_{L-1}". Decoding runs one token
    per step, where a scan's per-layer slicing of weights and cache costs more than the layer
    (measured 1.6x slower at batch 1, 2.4x at batch 8 on a 2-core CPU); training keeps the scan
    for compile time and memory."""
    if not cfg.scan_layers:
        return cfg, params
    return dataclasses.replace(cfg, scan_layers=False), split_layers(params, cfg.num_layers)


# Dense kernels of the Transformer by name -> their contracted (input) axes.
# (query, key and value are fused into "qkv" first.)
_DENSE_CONTRACT = {"qkv": 1, "out": 2, "wi": 1, "wo": 1, "logits": 1}
_DENSE_NAMES = {*_DENSE_CONTRACT, "query", "key", "value"}


def decode_layout(cfg: TransformerConfig, params: Any) -> tuple[TransformerConfig, Any]:
    """The same model as the sampler runs it: layers unrolled (`unscan`) and, on the CPU, every
    Dense kernel stored output axes first (`cfg.kernels_out_first`), so each decoding step's
    matmuls run as [out, in] . x^T with the weights as the long side. With a few rows per step,
    XLA's CPU dot over [rows, in] . [in, out] streamed the weights at a third of the memory
    bandwidth (6 x 512 LM, 256 tokens at batch 8 on a 2-core AMD EPYC VM: 218-243 -> 444-446
    tok/s; batch 1 unchanged within noise; benchmarks/bench_lm_sample.py). The transposes run
    once per call, outside the decoding loop. Query, key and value become one kernel
    (`cfg.fused_qkv`), one matmul call a layer instead of three: at batch 1 3.10 -> 2.77 ms a
    step for the same LM on a 2-core Intel Xeon VM (batch 8 within noise)."""
    cfg, params = unscan(cfg, params)
    params = cast_dense_kernels(params, cfg.matmul_jnp_dtype)
    if jax.default_backend() != "cpu" or cfg.kernels_out_first:
        return cfg, params

    def convert(tree: Any) -> Any:
        out = {}
        if all(isinstance(tree.get(n), Mapping) for n in ("query", "key", "value")):
            qkv = [tree[n]["kernel"] for n in ("query", "key", "value")]
            tree = {n: sub for n, sub in tree.items() if n not in ("query", "key", "value")}
            tree["qkv"] = {"kernel": jnp.stack(qkv, axis=1)}
        for name, sub in tree.items():
            if name in _DENSE_CONTRACT and isinstance(sub, Mapping) and "kernel" in sub:
                sub = dict(sub, kernel=out_first_kernel(sub["kernel"], _DENSE_CONTRACT[name]))
            elif isinstance(sub, Mapping):
                sub = convert(sub)
            out[name] = sub
        return out

    return dataclasses.replace(cfg, kernels_out_first=True, fused_qkv=True), convert(params)


def cast_dense_kernels(params: Any, dtype: jnp.dtype | None) -> Any:
    """`params` with every Dense kernel of the Transformer (query/key/value or qkv, out, wi, wo,
    logits) cast to `dtype` (None: unchanged): for `cfg.matmul_dtype`, once before a decoding
    loop, so each step reads the kernels in that dtype instead of casting them."""
    if dtype is None:
        return params

    def cast(tree: Any) -> Any:
        out = {}
        for name, sub in tree.items():
            if name in _DENSE_NAMES and isinstance(sub, Mapping) and "kernel" in sub:
                sub = dict(sub, kernel=sub["kernel"].astype(dtype))
            elif isinstance(sub, Mapping):
                sub = cast(sub)
            out[name] = sub
        return out

    return cast(params)


def split_layers(params: dict, n: int) -> dict:
    """`params` with its scanned "layers" (every leaf stacked on a leading axis of at least `n`)
    replaced by its first `n` layers, "layer_0" .. "layer_{n-1}": what an `nn.scan` over layers
    named "layers" stores, as the same module unrolled with layers named "layer_{i}" reads it.
    Each layer becomes its own buffer, so a jitted call reads it in place; sliced from the stack
    inside the program, every layer's weights are copied on every call (inference on a 2-core
    CPU: HuBERT base, 9 layers, 5 s clip: 156 ms scanned, 206 ms over static slices, 143 ms
    from split layers)."""
    params = dict(params)
    stacked = params.pop("layers", None)
    if stacked is None and n:
        raise KeyError(f"no stacked 'layers' to split into {n} layers; keys: {sorted(params)}")
    for i in range(n):
        params[f"layer_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    return params


def first_layers(params: dict, n: int, scanned: bool) -> dict:
    """`params` keeping only the first `n` layers, unrolled ("layer_0" .. "layer_{n-1}")
    whether they come stacked (`scanned`: `split_layers`) or already unrolled; what a feature
    model's `truncate` keeps of a layer stack."""
    if scanned:
        return split_layers(params, n)
    return {k: v for k, v in params.items() if not k.startswith("layer_") or int(k[6:]) < n}


def count_params(cfg: TransformerConfig) -> int:
    """Parameter count from the config's shapes alone (no init)."""
    e, h, d, f, v = cfg.d_model, cfg.num_heads, cfg.kv_dim, cfg.d_ff, cfg.padded_vocab
    norm = e * (2 if cfg.norm == "layer" else 1)
    per_layer = 4 * e * h * d + 2 * e * f + 2 * norm
    total = cfg.num_layers * per_layer + v * e + norm
    if not cfg.tie_embeddings:
        total += e * v
    if cfg.cond_embed:
        total += v * e
    if cfg.position == "t5":
        total += cfg.rel_buckets * h
    return total


def activation_bytes(cfg: TransformerConfig, batch: int, seq_len: int) -> float:
    """Estimated bytes a train step keeps for the backward pass, from shapes.

    Per token and layer without remat: the layer input and two norm outputs, q/k/v and the
    attention output, fp32 scores and probabilities over the context, the FFN's pre- and
    post-GELU hidden, in the compute dtype; `full` remat keeps only each layer's input, `dots*`
    policies keep the matmul outputs. Fused attention (cuDNN, Pallas) keeps no scores, only
    its softmax statistics. Plus fp32 logits and their gradient.
    """
    e, h, d, f = cfg.d_model, cfg.num_heads, cfg.kv_dim, cfg.d_ff
    size = cfg.compute_dtype.itemsize
    fused = cfg.attention_impl in ("cudnn", "pallas")
    scores = 4 * 2 * h * (2 if fused else seq_len)  # fp32 per head: 2 stats, or 2 L-rows
    per_token = {
        "none": size * (3 * e + 4 * h * d + 2 * f) + scores,
        "full": size * e,
        "dots": size * (e + 4 * h * d + 2 * f) + scores // 2,
        "dots_no_batch": size * (e + 4 * h * d + 2 * f) + scores // 2,
    }[cfg.remat]
    tokens = batch * seq_len
    return tokens * (cfg.num_layers * per_token + 2 * 4 * cfg.padded_vocab)


def train_flops_per_token(cfg: TransformerConfig, seq_len: int) -> float:
    """Model FLOPs of one training token (forward + backward = 3x forward), from shapes.

    Matmuls: 2 * (params touched per token); attention scores and values: 2 * 2 * L * h * d per
    layer, halved for the causal mask. Counted as in PaLM (Chowdhery et al. 2022, app. B).
    """
    e, h, d, f, v = cfg.d_model, cfg.num_heads, cfg.kv_dim, cfg.d_ff, cfg.padded_vocab
    dense = cfg.num_layers * (4 * e * h * d + 2 * e * f) + e * v
    attn = cfg.num_layers * 2 * seq_len * h * d  # causal: half of 4 * L * h * d
    return 3.0 * (2.0 * dense + attn)
