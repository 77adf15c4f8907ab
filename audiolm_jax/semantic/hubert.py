"""HuBERT (Hsu et al. 2021, arXiv:2106.07447) as a semantic feature model: the network of
transformers' `HubertModel`, inference only, with weights imported from a Hugging Face
checkpoint (`audiolm_jax.importers.hubert`, `launch.py --mode=import`).

    wav [b, samples] 16 kHz, padded with 40 zeros on each side        (`features`, see below)
      -> 7 conv1d (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2 = 320) + GELU; GroupNorm
         (one group per channel) after the first ("group", base) or LayerNorm after each
         ("layer", large)                                             50 frames/s
      -> [LayerNorm] + linear -> hidden_size                            (feature projection)
      -> + grouped positional conv (kernel 128, 16 groups, weight norm, GELU)
      -> post-LN encoder ("group"/base: LayerNorm, then N layers of attention -> add -> LN ->
         x + FFN(x) -> LN) or pre-LN encoder (`do_stable_layer_norm`, large: N layers of
         x + attention(LN x), x + FFN(LN x), then a final LayerNorm)

Frames. The conv stack's receptive field is 400 samples and its hop 320, so `samples` of audio
give floor((samples - 400) / 320) + 1 = samples / 320 - 1 frames. The semantic API promises
one id per 320 samples (1 s -> 50 ids), so `features` first pads the waveform with
(400 - 320) / 2 = 40 zeros on each side: samples / 320 frames, frame t centred on the hop
[320 t, 320 (t + 1)). `features(..., pad=False)` runs the network on the waveform as given,
as `HubertModel` does; the two agree when the caller pads: `features(c, p, w)` ==
`features(c, p, jnp.pad(w, ((0, 0), (40, 40))), pad=False)`. The first conv's GroupNorm
normalises each channel over the whole clip, so the padding (and the clip's length) touch
every frame a little, as they do in `HubertModel`.

Layers (`truncate`), numbered as transformers' `output_hidden_states`: 0 is the encoder's
input (base: after the positional conv and the encoder LayerNorm; large: after the positional
conv, no norm), i in 1..N the output of encoder layer i. For the pre-LN variant, layer N is
the output after the encoder's final LayerNorm (`last_hidden_state`, which transformers 4.x
also returned as `hidden_states[N]`; transformers 5 returns the un-normalised output of layer
N there instead); layers below N never see that norm.

Parameters are float32; `dtype` sets the compute dtype. Not mapped: the training-time parts of
`HubertModel` (SpecAugment's `masked_spec_embed`, dropout, LayerDrop), the attention adapters
(`adapter_attn_dim`) and padding masks (every clip in a batch is used whole).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax.config import dataclass_from_config
from audiolm_jax.lm import transformer as tfm
from audiolm_jax.lm.layers import Dense, LayerNorm, constrain, layer_norm
from audiolm_jax.semantic import w2v_bert

# transformers' ACT2FN names -> functions, through the conformer's table.
ACTIVATIONS = {hf: w2v_bert.ACTIVATIONS[ours] for hf, ours in w2v_bert.HF_ACTIVATIONS.items()}

GROUP_NORM_EPS = 1e-5  # torch.nn.GroupNorm's default, as HubertGroupNormConvLayer uses it
CONV_LAYER_NORM_EPS = 1e-5  # HubertLayerNormConvLayer's nn.LayerNorm: default eps, not config's
BATCH_NORM_EPS = 1e-5  # the positional conv's optional BatchNorm1d


@dataclasses.dataclass(frozen=True)
class HubertConfig:
    """Shapes of a HuBERT (from `config.hubert`; field names as in transformers' HubertConfig,
    defaults HuBERT base)."""

    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"  # "group" (base) | "layer" (large, x-large)
    feat_extract_activation: str = "gelu"
    feat_proj_layer_norm: bool = True
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    conv_pos_batch_norm: bool = False  # BatchNorm before the positional conv, no weight norm
    do_stable_layer_norm: bool = False  # pre-LN encoder (large) instead of post-LN (base)
    # Pre-LN only: apply the encoder's final LayerNorm after the last layer. `truncate` clears
    # it below layer N (see the module docstring).
    final_layer_norm: bool = True
    sample_rate: int = 16000
    dtype: str = "float32"
    # None: batched einsums on CPU, jax.nn.dot_product_attention elsewhere | "xla" | "cudnn"
    # (see lm.transformer.attend)
    attention_impl: str | None = None
    # Encoder layers stored stacked and run by nn.scan ("layers", the importer's format), or one
    # module each ("layer_0" ..): `truncate` unrolls them, the faster way to run inference.
    scan_layers: bool = True

    def __post_init__(self):
        # Lists (from JSON or a ConfigDict) -> tuples: the config is a static jit argument.
        for f in ("conv_dim", "conv_kernel", "conv_stride"):
            object.__setattr__(self, f, tuple(int(v) for v in getattr(self, f)))
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ValueError(
                f"HuBERT conv_dim, conv_kernel and conv_stride differ in length: "
                f"{self.conv_dim}, {self.conv_kernel}, {self.conv_stride}"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(
                f"HuBERT feat_extract_norm must be 'group' or 'layer', got "
                f"{self.feat_extract_norm!r}"
            )
        for f in ("hidden_act", "feat_extract_activation"):
            if getattr(self, f) not in ACTIVATIONS:
                raise ValueError(
                    f"HuBERT {f}={getattr(self, f)!r} is not supported; known: "
                    f"{', '.join(ACTIVATIONS)}"
                )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"HuBERT hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @property
    def d_model(self) -> int:
        return self.hidden_size

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def samples_per_frame(self) -> int:
        """The conv stack's hop: the product of its strides (320)."""
        return math.prod(self.conv_stride)

    @property
    def receptive_field(self) -> int:
        """Samples one frame of the conv stack sees (400 for HuBERT)."""
        field, hop = 1, 1
        for k, s in zip(self.conv_kernel, self.conv_stride):
            field += (k - 1) * hop
            hop *= s
        return field

    @property
    def frame_rate(self) -> float:
        """Frames (= semantic ids) per second: 50 at 16 kHz."""
        return self.sample_rate / self.samples_per_frame

    @property
    def name(self) -> str:
        return "HuBERT"

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @classmethod
    def from_config(cls, cfg: Any) -> HubertConfig:
        """From `config.hubert`, naming any field this class does not know."""
        return dataclass_from_config(cls, cfg, "hubert")

    @classmethod
    def from_hf(cls, hf: dict) -> HubertConfig:
        """From a transformers `HubertConfig` (its `config.json` as a dict). Raises ValueError
        for what this model does not compute (attention adapters, unknown activations)."""
        if hf.get("adapter_attn_dim") is not None:
            raise ValueError(
                f"HuBERT with attention adapters (adapter_attn_dim={hf['adapter_attn_dim']}) "
                "is not supported"
            )
        defaults = cls()
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in ("final_layer_norm", "sample_rate", "dtype", "scan_layers"):
                continue
            kw[f.name] = hf.get(f.name, getattr(defaults, f.name))
        n = hf.get("num_feat_extract_layers")
        if n is not None and n != len(kw["conv_dim"]):
            raise ValueError(
                f"config.json: num_feat_extract_layers {n} but {len(kw['conv_dim'])} conv_dim"
            )
        return cls(**kw)


def _conv1d(x, kernel, bias, stride: int = 1, groups: int = 1):
    """`[b, t, c_in]` * kernel `[k, c_in / groups, c_out]`, VALID padding."""
    k = kernel.shape[0]
    if x.shape[-1] == 1 and groups == 1 and k % stride == 0 and x.shape[1] >= k:
        # One input channel (the waveform), kernel a whole number of strides: the frames are
        # k / stride shifted views of the wave cut into strides, and the conv one matmul
        # (XLA's CPU conv with one input channel ran 1.4x slower: benchmarks/bench_import.py).
        n = (x.shape[1] - k) // stride + 1
        m = k // stride
        hops = x[:, : (n + m - 1) * stride, 0].reshape(x.shape[0], n + m - 1, stride)
        frames = jnp.concatenate([hops[:, j : j + n] for j in range(m)], axis=-1)
        y = frames @ kernel[:, 0, :].astype(x.dtype)
        return y if bias is None else y + bias.astype(y.dtype)

    def conv(x, kernel, groups):
        return jax.lax.conv_general_dilated(
            x,
            kernel.astype(x.dtype),
            (stride,),
            "VALID",
            dimension_numbers=("NWC", "WIO", "NWC"),
            feature_group_count=groups,
        )

    if groups > 1 and jax.default_backend() == "cpu":
        # XLA's CPU grouped conv is slower than one conv per group: the positional conv of
        # HuBERT base (kernel 128, 16 groups of 48, 250 frames) 37 -> 22 ms on a 2-core CPU
        # (benchmarks/bench_import.py; torch's grouped conv: 30 ms).
        cin, cout = kernel.shape[1], kernel.shape[2] // groups
        y = jnp.concatenate(
            [
                conv(x[..., g * cin : (g + 1) * cin], kernel[..., g * cout : (g + 1) * cout], 1)
                for g in range(groups)
            ],
            axis=-1,
        )
    else:
        y = conv(x, kernel, groups)
    return y if bias is None else y + bias.astype(y.dtype)


class Linear(Dense):
    """`Dense` plus a bias over its output axes (torch's nn.Linear)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x)
        out_shape, out_axes = self.shape[self.contract :], self.axes[self.contract :]
        b = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, out_axes),
            out_shape,
            self.param_dtype,
        )
        return y + b.astype(y.dtype)


class _NormParams(nn.Module):
    """The scale and bias of a `LayerNorm` (same names and logical axes), returned instead of
    applied, for the feature encoder's chunked pass."""

    @nn.compact
    def __call__(self, d: int) -> tuple[jax.Array, jax.Array]:
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (d,)
        )
        bias = self.param(
            "bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), (d,)
        )
        return scale, bias


# Output frames per chunk of the feature encoder's pass (`FeatureEncoder`), per example of the
# batch: 50 frames of HuBERT base keep every intermediate under ~13 MB.
CHUNK_FRAMES = 50


def _first_conv_stats(wav, kernel, bias, stride: int):
    """Per-channel mean and variance over time of the first conv's output `[b, c]`, from the
    waveform's patches alone: the conv is linear, so mean = mean(patches) . W and variance =
    diag(W^T cov(patches) W), without computing the `[b, frames, c]` output."""
    k = kernel.shape[0]
    n = (wav.shape[1] - k) // stride + 1
    idx = stride * jnp.arange(n)[:, None] + jnp.arange(k)[None, :]
    patches = wav.astype(jnp.float32)[:, idx]  # [b, frames, k]
    mu = jnp.mean(patches, axis=1)
    centred = patches - mu[:, None]
    cov = jnp.einsum("bti,btj->bij", centred, centred) / n
    w = kernel[:, 0, :].astype(jnp.float32)
    mean = mu @ w + (0.0 if bias is None else bias.astype(jnp.float32))
    var = jnp.einsum("ic,bij,jc->bc", w, cov, w)
    return mean, var


class FeatureEncoder(nn.Module):
    """Waveform `[b, samples]` -> `[b, frames, conv_dim[-1]]` (HubertFeatureEncoder).

    Runs in chunks of `CHUNK_FRAMES` output frames (`lax.map` over waveform segments of
    `samples_per_frame * (chunk - 1) + receptive_field` samples), each chunk through the whole
    conv stack: every intermediate stays small, where the whole clip's first conv output is
    `[b, 16000, 512]` for 5 s (33 MB). Chunks give the same frames: with VALID convs each
    output frame sees only its own receptive field, and the base model's GroupNorm takes its
    per-channel statistics over the whole clip, computed up front from the waveform
    (`_first_conv_stats`). On a 2-core Xeon the 5 s feature encoder went 104.3 -> 94.8 ms
    (torch 87.8): XLA's CPU temporaries above 32 MB are fresh mmaps every call, whose page
    faults cost the whole-clip pass (the first two convs: 75 against 57 ms with glibc's mmap
    off), and the chunks' activations stay in cache (BENCHMARKS.md, imported checkpoints)."""

    cfg: HubertConfig

    @nn.compact
    def __call__(self, wav: jax.Array) -> jax.Array:
        cfg, dt = self.cfg, self.cfg.compute_dtype
        act = ACTIVATIONS[cfg.feat_extract_activation]
        init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        zeros = nn.initializers.zeros
        layers = []
        c_in = 1
        for i, (c, k) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel)):
            kernel = self.param(
                f"conv_{i}",
                nn.with_logical_partitioning(init, ("conv_kernel", "conv_in", "conv_out")),
                (k, c_in, c),
                jnp.float32,
            )
            bias = None
            if cfg.conv_bias:
                bias = self.param(
                    f"conv_{i}_bias",
                    nn.with_logical_partitioning(zeros, ("conv_out",)),
                    (c,),
                    jnp.float32,
                )
            norm = None
            if cfg.feat_extract_norm == "group" and i == 0:
                ones = nn.with_logical_partitioning(nn.initializers.ones, ("conv_out",))
                norm = (
                    self.param("norm_0_scale", ones, (c,), jnp.float32),
                    self.param(
                        "norm_0_bias", nn.with_logical_partitioning(zeros, ("conv_out",)), (c,)
                    ),
                )
            elif cfg.feat_extract_norm == "layer":
                norm = _NormParams(name=f"norm_{i}")(c)
            layers.append((kernel, bias, norm))
            c_in = c

        b, n = wav.shape
        rf, hop = cfg.receptive_field, cfg.samples_per_frame
        frames = (n - rf) // hop + 1
        if frames < 1:
            raise ValueError(
                f"HuBERT needs at least {rf} samples (one frame), got a waveform of {n}"
            )
        affine = None
        if cfg.feat_extract_norm == "group":
            # GroupNorm of the first conv over the whole clip, folded into one multiply-add.
            kernel, bias, (scale, shift) = layers[0]
            mean, var = _first_conv_stats(wav, kernel, bias, cfg.conv_stride[0])
            inv = jax.lax.rsqrt(var + GROUP_NORM_EPS) * scale
            affine = (inv[:, None], (shift - mean * inv)[:, None])

        def stack(x):  # [b, segment] -> [b, frames of the segment, c]
            x = x[..., None].astype(dt)
            for i, ((kernel, bias, norm), s) in enumerate(zip(layers, cfg.conv_stride)):
                x = _conv1d(x, kernel, bias, s)
                if affine is not None and i == 0:
                    x = (x.astype(jnp.float32) * affine[0] + affine[1]).astype(dt)
                elif cfg.feat_extract_norm == "layer":
                    x = layer_norm(x, *norm, CONV_LAYER_NORM_EPS).astype(dt)
                x = act(x)
            return x

        chunk = max(1, CHUNK_FRAMES // b)
        if frames <= chunk:
            return stack(wav[:, : (frames - 1) * hop + rf])
        count = -(-frames // chunk)
        segment = hop * (chunk - 1) + rf
        need = hop * chunk * (count - 1) + segment
        padded = jnp.pad(wav, ((0, 0), (0, max(0, need - n))))
        starts = jnp.arange(count) * (hop * chunk)
        out = jax.lax.map(
            lambda st: stack(jax.lax.dynamic_slice_in_dim(padded, st, segment, axis=1)), starts
        )  # [count, b, chunk, c]
        return jnp.moveaxis(out, 0, 1).reshape(b, count * chunk, -1)[:, :frames]


class PositionalConv(nn.Module):
    """HubertPositionalConvEmbedding: [BatchNorm], grouped conv (padding kernel // 2, the last
    frame dropped for an even kernel: the output keeps the input's length), activation. The
    weight norm is folded into `kernel` at import."""

    cfg: HubertConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg, dt = self.cfg, self.cfg.compute_dtype
        d, k, g = cfg.hidden_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
        if cfg.conv_pos_batch_norm:
            axes = ("embed",)
            ones = nn.with_logical_partitioning(nn.initializers.ones, axes)
            zeros = nn.with_logical_partitioning(nn.initializers.zeros, axes)
            scale = self.param("bn_scale", ones, (d,), jnp.float32)
            shift = self.param("bn_bias", zeros, (d,), jnp.float32)
            mean = self.param("bn_mean", zeros, (d,), jnp.float32)
            var = self.param("bn_var", ones, (d,), jnp.float32)
            x32 = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + BATCH_NORM_EPS)
            x = (x32 * scale + shift).astype(dt)
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(
                nn.initializers.normal(1.0 / math.sqrt(k * d / g)),
                ("conv_kernel", "conv_in", "conv_out"),
            ),
            (k, d // g, d),
            jnp.float32,
        )
        bias = self.param(
            "bias", nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)), (d,)
        )
        t = x.shape[1]
        xp = jnp.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
        y = _conv1d(xp, kernel, bias, 1, g)[:, :t]
        return ACTIVATIONS[cfg.feat_extract_activation](y)


class EncoderLayer(nn.Module):
    """One HuBERT encoder layer, post-LN (HubertEncoderLayer) or pre-LN
    (HubertEncoderLayerStableLayerNorm). Scan-compatible: x -> (x, None)."""

    cfg: HubertConfig

    @nn.compact
    def __call__(self, x, _=None):
        cfg, dt = self.cfg, self.cfg.compute_dtype
        e, h, d, f = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim, cfg.intermediate_size
        eps = cfg.layer_norm_eps

        def attention(y):
            q, k, v = (
                constrain(
                    Linear((e, h, d), ("embed", "heads", "kv"), 1, dt, name=n)(y),
                    ("batch", "length", "heads", "kv"),
                )
                for n in ("query", "key", "value")
            )
            # Scale 1 / sqrt(head_dim); batched einsums on CPU (faster there), else jax.nn's.
            a = tfm.attend(cfg, q, k, v, None, None, causal=False)
            return Linear((h, d, e), ("heads", "kv", "embed"), 2, dt, name="out")(a)

        def feed_forward(y):
            y = Linear((e, f), ("embed", "mlp"), 1, dt, name="wi")(y)
            y = constrain(ACTIVATIONS[cfg.hidden_act](y), ("batch", "length", "mlp"))
            return Linear((f, e), ("mlp", "embed"), 1, dt, name="wo")(y)

        attn_norm = LayerNorm(eps=eps, dtype=dt, name="attn_norm")
        ffn_norm = LayerNorm(eps=eps, dtype=dt, name="ffn_norm")
        if cfg.do_stable_layer_norm:
            x = x + attention(attn_norm(x))
            x = x + feed_forward(ffn_norm(x))
        else:
            x = attn_norm(x + attention(x))
            x = ffn_norm(x + feed_forward(x))
        return constrain(x, ("batch", "length", "embed")), None


class HubertNet(nn.Module):
    """Waveform `[b, samples]` (as given, unpadded) -> `[b, frames, hidden_size]`, the output of
    the config's last layer."""

    cfg: HubertConfig

    @nn.compact
    def __call__(self, wav: jax.Array) -> jax.Array:
        cfg, dt = self.cfg, self.cfg.compute_dtype
        x = FeatureEncoder(cfg, name="feature_encoder")(wav)
        if cfg.feat_proj_layer_norm:
            x = LayerNorm(eps=cfg.layer_norm_eps, dtype=dt, name="proj_norm")(x)
        x = Linear((cfg.conv_dim[-1], cfg.hidden_size), ("conv_out", "embed"), 1, dt, name="proj")(
            x
        )
        x = x + PositionalConv(cfg, name="pos_conv")(x)
        encoder_norm = LayerNorm(eps=cfg.layer_norm_eps, dtype=dt, name="encoder_norm")
        if not cfg.do_stable_layer_norm:
            x = encoder_norm(x)
        x = constrain(x, ("batch", "length", "embed"))
        if cfg.num_hidden_layers and cfg.scan_layers:
            x, _ = nn.scan(
                EncoderLayer,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                length=cfg.num_hidden_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, name="layers")(x, None)
        elif cfg.num_hidden_layers:
            for i in range(cfg.num_hidden_layers):
                x, _ = EncoderLayer(cfg, name=f"layer_{i}")(x)
        if cfg.do_stable_layer_norm and cfg.final_layer_norm:
            x = encoder_norm(x)
        return x


def pad_waveform(cfg: HubertConfig, wav: jax.Array) -> jax.Array:
    """wav `[b, samples]` with (receptive_field - samples_per_frame) / 2 zeros (40) on each side
    (the right side gets the extra one when the difference is odd)."""
    total = cfg.receptive_field - cfg.samples_per_frame
    return jnp.pad(wav, ((0, 0), (total // 2, total - total // 2)))


def num_frames(cfg: HubertConfig, samples: int) -> int:
    """Frames `features` gives for `samples` of audio: floor(samples / 320)."""
    return samples // cfg.samples_per_frame


def features(cfg: HubertConfig, params: dict, wav: jax.Array, *, pad: bool = True) -> jax.Array:
    """`[b, frames, hidden_size]` output of `cfg`'s last layer for wav `[b, samples]` at 16 kHz
    (pair with `truncate` for an inner layer). With `pad` (the default), the waveform is first
    padded with 40 zeros on each side so that frames = samples // 320 (module docstring);
    `pad=False` runs `HubertModel`'s network on `wav` as given. Pure; jit it."""
    x = pad_waveform(cfg, wav) if pad else wav
    return HubertNet(cfg).apply({"params": params}, x)


def truncate(cfg: HubertConfig, params: dict, layer: int) -> tuple[HubertConfig, dict]:
    """The config and the params that compute `layer` (0 .. num_hidden_layers, numbered as in
    the module docstring) and nothing past it: the first `layer` encoder layers, unrolled
    (`scan_layers=False`, one param subtree per layer: `lm.transformer.split_layers`), and the
    encoder's final LayerNorm of the pre-LN variant only at layer N."""
    n = cfg.num_hidden_layers
    if not 0 <= layer <= n:
        raise ValueError(f"HuBERT layer {layer} out of range: 0 (encoder input) .. {n}")
    keep = tfm.first_layers(params, layer, cfg.scan_layers)
    final = cfg.final_layer_norm and layer == n
    if cfg.do_stable_layer_norm and not final:
        keep.pop("encoder_norm", None)
    cfg_l = dataclasses.replace(
        cfg, num_hidden_layers=layer, final_layer_norm=final, scan_layers=False
    )
    return cfg_l, keep


def init_params(cfg: HubertConfig, rng: jax.Array | None = None, samples: int = 400) -> dict:
    """Randomly initialised params (unboxed), e.g. as the shape template an importer fills."""
    rng = jax.random.key(0) if rng is None else rng
    wav = jnp.zeros((1, samples), jnp.float32)
    return nn.unbox(HubertNet(cfg).init(rng, wav))["params"]


def param_shapes(cfg: HubertConfig) -> dict:
    """The params' tree of `jax.ShapeDtypeStruct` (no computation)."""
    return jax.eval_shape(lambda: init_params(cfg))
