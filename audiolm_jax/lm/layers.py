"""Small Linen building blocks whose every parameter carries logical axis names.

Logical names (see DESIGN.md): batch, length, embed, heads, kv, mlp, vocab. A config maps them to
mesh axes; without rules (one device) the annotations are no-ops.

We use our own parameter module rather than `nn.DenseGeneral`: it states the kernel's
logical names for multi-axis kernels ([embed, heads, kv]) directly and keeps params in fp32 while
computing in `dtype` (bf16 on accelerators).

"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Annotates an activation with logical axis names (a no-op without axis rules)."""
    return nn.with_logical_constraint(x, tuple(names))


class Dense(nn.Module):
    """Contracts the last `contract` axes of x with the first `contract` axes of a named kernel.

    y[..., out] = x[..., in] . kernel[in, out], with kernel shape `shape` = in + out and one
    logical name per kernel axis (e.g. [embed] -> [heads, kv]).

    The product runs as one 2-D matmul on flattened views: XLA's CPU backend lays out the
    backward pass of a 2-D dot without the large transposes that a 4-D einsum gets (2x faster
    train steps on CPU, benchmarks/bench_lm_train.py); on TPU/GPU the two are the same program.

    Attributes:
      shape: kernel shape, input axes first.
      axes: one logical name per kernel axis.
      contract: how many leading kernel axes (trailing axes of x) are contracted.
      dtype: compute dtype; the kernel is cast to it, params stay `param_dtype`.
      out_dtype: accumulation/output dtype of the matmul (fp32 logits from bf16 inputs).
      init_scale: kernel ~ normal(0, init_scale / sqrt(fan_in)).
      out_first: the kernel is stored output axes first (shape out + in) and the product runs
        as kernel . x^T, the weights as the matmul's long side: the decode layout
        (`lm.transformer.decode_layout`), where x has a few rows and every weight is read
        once per token.
    """

    shape: tuple[int, ...]
    axes: tuple[str, ...]
    contract: int = 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    init_scale: float = 1.0
    out_dtype: Dtype | None = None
    out_first: bool = False
    matmul_dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if len(self.shape) != len(self.axes):
            raise ValueError(
                f"Dense kernel shape {self.shape} needs one name per axis, got {self.axes}"
            )
        in_shape, out_shape = self.shape[: self.contract], self.shape[self.contract :]
        if tuple(x.shape[x.ndim - self.contract :]) != tuple(in_shape):
            raise ValueError(
                f"Dense {self.name}: input trailing shape {x.shape} != kernel input {in_shape}"
            )
        fan_in = math.prod(in_shape)
        init = nn.initializers.normal(stddev=self.init_scale / fan_in**0.5)
        shape, axes = self.shape, self.axes
        if self.out_first:
            shape = out_shape + in_shape
            axes = self.axes[self.contract :] + self.axes[: self.contract]
            init = out_first_init(init, self.contract, len(out_shape))
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(init, axes), shape, self.param_dtype
        )
        lead = x.shape[: x.ndim - self.contract]
        mdt = self.dtype if self.matmul_dtype is None else self.matmul_dtype
        acc = self.out_dtype
        if acc is None and self.matmul_dtype is not None:
            acc = self.dtype
        x2 = x.reshape(-1, fan_in)
        if not self.out_first and jnp.dtype(mdt) != jnp.dtype(self.dtype):
            # matmul_dtype set (training, decoding off the CPU): low-precision products
            # forward and backward.
            y = low_precision_dot(x2, kernel.reshape(fan_in, -1), mdt, acc)
            return y.reshape(*lead, *out_shape)
        x2 = x2.astype(mdt)
        if self.out_first and jnp.dtype(mdt) == jnp.bfloat16:
            # [rows, in] . [out, in]^T accumulated in fp32: the one bf16 form XLA's CPU dot runs
            # natively (YNNPACK, AMX where the CPU has it). The barriered form below got its
            # operands upcast to fp32, and a bf16-output product was slower too (bf16 compute,
            # 6 x 512 LM, batch 1: 188 tok/s with a bf16 output, 307 barriered, 334 this
            # way). One row is padded to two: a one-row bf16 product was 10x slower there.
            rows = x2.shape[0]
            xm = jnp.pad(x2, ((0, 1), (0, 0))) if rows == 1 else x2
            y = jax.lax.dot_general(
                xm,
                kernel.reshape(-1, fan_in).astype(mdt),
                (((1,), (1,)), ((), ())),
                preferred_element_type=jnp.float32,
            )[:rows].astype(acc or self.dtype)
        elif self.out_first:
            # [out, in] . [in, rows], the weights as the long side of the matmul: at 8 rows
            # XLA's CPU dot streamed them 2.1-3.0x faster than [rows, in] . [in, out] (the six
            # FFN matrices of a 6 x 512 LM, 48 MB; at 1 row within noise; BENCHMARKS.md). The
            # barriers keep XLA from folding the transposes into [rows, in] . [out, in]^T,
            # which was 1.5x slower than this form.
            barrier = jax.lax.optimization_barrier
            y = barrier(
                jnp.dot(
                    kernel.reshape(-1, fan_in).astype(mdt),
                    barrier(x2.T),
                    preferred_element_type=acc,
                )
            ).T
        else:
            y = jnp.dot(x2, kernel.reshape(fan_in, -1).astype(mdt), preferred_element_type=acc)
        return y.reshape(*lead, *out_shape)


def low_precision_dot(x: jax.Array, w: jax.Array, dtype, out_dtype) -> jax.Array:
    """x [rows, in] . w [in, out] with both operands cast to `dtype` (bf16), accumulated in fp32,
    returned as `out_dtype`; its gradients are the same products on the bf16 casts of the
    cotangent and the saved operands, accumulated in fp32 and returned in x's and w's own
    dtypes (fp32 weight gradients). Left to autodiff, the backward products mix an fp32
    cotangent with a bf16 operand, which XLA's CPU dot upcasts to an fp32 product."""
    return _low_precision_dot(
        jnp.dtype(dtype), jnp.dtype(out_dtype), jnp.dtype(x.dtype), jnp.dtype(w.dtype)
    )(x, w)


@functools.cache
def _low_precision_dot(dtype, out_dtype, x_dtype, w_dtype):
    f32 = jnp.float32

    @jax.custom_vjp
    def dot(x, w):
        return jnp.dot(x.astype(dtype), w.astype(dtype), preferred_element_type=f32).astype(
            out_dtype
        )

    def fwd(x, w):
        xl, wl = x.astype(dtype), w.astype(dtype)
        return jnp.dot(xl, wl, preferred_element_type=f32).astype(out_dtype), (xl, wl)

    def bwd(res, g):
        xl, wl = res
        gl = g.astype(dtype)
        dx = jax.lax.dot_general(gl, wl, (((1,), (1,)), ((), ())), preferred_element_type=f32)
        dw = jax.lax.dot_general(xl, gl, (((0,), (0,)), ((), ())), preferred_element_type=f32)
        return dx.astype(x_dtype), dw.astype(w_dtype)

    dot.defvjp(fwd, bwd)
    return dot


def out_first_kernel(kernel: jax.Array, contract: int) -> jax.Array:
    """A `Dense` kernel (input axes first) as `Dense(out_first=True)` stores it."""
    n = kernel.ndim
    return jnp.transpose(kernel, (*range(contract, n), *range(contract)))


def out_first_init(init, contract: int, n_out: int):
    """`init` for the in + out kernel, drawn in that shape and stored out + in: the same values
    as `Dense(out_first=False)` initialised with the same key."""

    def fn(key, shape, dtype=jnp.float32):
        in_out = tuple(shape[n_out:]) + tuple(shape[:n_out])
        return out_first_kernel(init(key, in_out, dtype), contract)

    return fn


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction; statistics in fp32."""

    eps: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            (x.shape[-1],),
            self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * scale).astype(self.dtype)


class LayerNorm(nn.Module):
    """Standard layer norm with logically named scale and bias; statistics in fp32."""

    eps: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            (d,),
            self.param_dtype,
        )
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            (d,),
            self.param_dtype,
        )
        return layer_norm(x, scale, bias, self.eps).astype(self.dtype)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """`LayerNorm`'s computation over the last axis with given scale and bias, statistics in
    fp32; returns fp32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return (x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias


def make_norm(kind: str, dtype: Dtype, name: str | None = None) -> nn.Module:
    """Returns the norm named by config (`rms` as in T5, or `layer`)."""
    if kind == "rms":
        return RMSNorm(dtype=dtype, name=name)
    if kind == "layer":
        return LayerNorm(dtype=dtype, name=name)
    raise ValueError(f"lm.norm must be 'rms' or 'layer', got {kind!r}")


class Embed(nn.Module):
    """Token embedding [vocab, embed]; `attend` reuses it as an output projection."""

    num_embeddings: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
            (self.num_embeddings, self.features),
            self.param_dtype,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """ids: [batch, length] int -> [batch, length, embed]."""
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        """x: [batch, length, embed] -> fp32 logits [batch, length, vocab]."""
        return jnp.einsum(
            "ble,ve->blv",
            x.astype(self.dtype),
            self.embedding.astype(self.dtype),
            preferred_element_type=jnp.float32,
        )


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser (Appleby, public domain): an invertible mix in which
    every input bit changes every output bit with probability ~1/2."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def dropout_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 `[*shape]`, one hashed word per element: the element's index within its row
    (every axis after the first) mixed, in two rounds, with a per-row word that mixes the key
    and the row index. Counter-based, so the same key gives the same bits under any sharding
    (each device computes its block of the index), and plain elementwise integer ops that XLA
    fuses into the dropout itself: no random-bit buffer and no loop (threefry on the CPU runs
    as a while loop whose carried state XLA copies: ~50 ms of a 1.5 s LM train step). For
    masks, not for statistics that need a cryptographic generator."""
    k = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    seed = _fmix32(k[0] ^ _fmix32(k[-1] + jnp.uint32(0x9E3779B9)))
    if not shape:
        return _fmix32(seed)
    rows = jax.lax.broadcasted_iota(jnp.uint32, (shape[0],), 0)
    row_word = _fmix32(seed ^ _fmix32(rows + jnp.uint32(0x632BE5AB)))
    inner = jax.lax.broadcasted_iota(jnp.uint32, shape, len(shape) - 1)
    stride = 1
    for axis in range(len(shape) - 2, 0, -1):
        stride *= shape[axis + 1]
        inner = inner + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
    row_word = row_word.reshape((shape[0],) + (1,) * (len(shape) - 1))
    # Two rounds: with one, rows whose words agree in their high bits would get the same
    # words in another order.
    return _fmix32(_fmix32(inner ^ row_word) + _fmix32(row_word))


class Dropout(nn.Module):
    """Inverted dropout with a hashed mask (`dropout_bits`): keep an element when its word is
    at least rate * 2^32, scale the kept ones by 1 / (1 - rate)."""

    rate: float
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {self.rate}")
        threshold = jnp.uint32(min(int(round(self.rate * 2**32)), 2**32 - 1))
        keep = dropout_bits(self.make_rng("dropout"), x.shape) >= threshold
        scale = jnp.asarray(1.0 / (1.0 - self.rate), x.dtype)
        return jnp.where(keep, x * scale, jnp.zeros_like(x))
