"""w2v-BERT (Chung et al. 2021, arXiv:2108.06209): the self-supervised speech model whose layer
AudioLM clusters into semantic tokens (../shared/PAPER.md).

    wav [b, samples] 16 kHz
      -> 80-bin log-mel, 100 frames/s                       (`log_mel`)
      -> two 3x3 conv2d, stride (2, 2) each = 4x subsampling -> linear -> d_model   25 frames/s
         = the feature encoder; its output is the quantizer's input (the targets)
      -> masked (wav2vec 2.0 spans: start p = 0.065, span 10) with a learned vector
      -> contrastive module: linear + N conformer blocks -> context c
      -> MLM module: M conformer blocks -> softmax over the quantizer's ids

    L = L_contrastive + diversity * L_diversity + mlm * L_mlm        (paper: 1, 0.1, 1)

Conformer block (Gulati et al. 2020): x + FFN/2, x + MHSA, x + Conv, x + FFN/2, LayerNorm.
Attention uses T5-style bidirectional relative position buckets (one learned bias per module)
rather than the paper's relative sinusoidal encodings; the convolution module normalises with
LayerNorm, not BatchNorm, as transformers' Wav2Vec2-BERT does (no batch statistics to carry,
shards like everything else). The conformer's options (`position`, `conv_padding`, `use_bias`,
`layer_norm_eps`, `activation`; defaults: this model as trained here) also let it run
w2v-BERT 2.0's conformer (audiolm_jax.semantic.w2v_bert2). The quantizer is wav2vec 2.0's
Gumbel-softmax quantizer with one codebook (G = 1, V = 1024 in the paper), temperature
annealed per step.

Layers are numbered over the two modules together: 0 is the feature encoder's output, 1..N the
contrastive blocks, N+1..N+M the MLM blocks. AudioLM takes "the 7th layer of the MLM module",
layer N + 7 = 19 for XL.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiolm_jax import dsp
from audiolm_jax.config import dataclass_from_config
from audiolm_jax.lm import transformer as tfm
from audiolm_jax.lm.layers import Dense, Dropout, LayerNorm, constrain
from audiolm_jax.lm.model import cross_entropy
from audiolm_jax.lm.position import RelativePositionBias
from audiolm_jax.train.interface import Batch, Model

SUBSAMPLING = 4  # two stride-2 convolutions over time


@dataclasses.dataclass(frozen=True)
class W2VBertConfig:
    """Shapes, rates and loss settings (from `config.w2v_bert`)."""

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400  # 25 ms window
    hop: int = 160  # 10 ms: 100 mel frames/s, 25 model frames/s
    conv_channels: int = 128
    d_model: int = 1024
    num_heads: int = 8
    d_ff: int = 4096
    conv_kernel: int = 5
    contrastive_layers: int = 12
    mlm_layers: int = 12
    codebook_size: int = 1024
    code_dim: int = 1024
    proj_dim: int = 768  # where context and quantized vectors are compared (cosine)
    dropout: float = 0.1
    mask_prob: float = 0.065
    mask_span: int = 10
    num_negatives: int = 100
    negatives_from: str = "masked"  # "masked" frames (wav2vec 2.0) | "all" frames of the clip
    temperature: float = 0.1  # of the contrastive cosine logits
    # Std of the quantizer's initial logits. At 1 the Gumbel noise outweighs them and the
    # targets start as noise; larger starts them as a fixed random partition of the features.
    quantizer_init_scale: float = 1.0
    gumbel_start: float = 2.0  # Gumbel-softmax temperature: start * decay^step, floored at end
    gumbel_end: float = 0.5
    gumbel_decay: float = 0.999995
    diversity_weight: float = 0.1
    mlm_weight: float = 1.0
    rel_buckets: int = 32
    rel_max_distance: int = 128
    scan_layers: bool = True
    remat: str = "none"
    dtype: str = "float32"
    attention_impl: str | None = None
    # Conformer options. The defaults are this model as trained here; w2v-BERT 2.0 (imported,
    # audiolm_jax.semantic.w2v_bert2) sets the other values.
    # "t5": one bucketed relative bias per stack (rel_buckets, rel_max_distance) | "relative_key":
    # Shaw et al. (2018) per-layer distance embeddings E [rel_left + rel_right + 1, kv_dim],
    # score(i, j) += q_i . E[clip(j - i, -rel_left, rel_right)] / sqrt(kv_dim) | "none".
    position: str = "t5"
    rel_left: int = 64
    rel_right: int = 8
    conv_padding: str = "same"  # depthwise conv: "same" (centred) | "causal" (left-padded)
    use_bias: bool = False  # biases on the attention and feed-forward projections
    layer_norm_eps: float = 1e-6  # of every conformer LayerNorm
    # Of the feed-forwards and the conv module: swish | gelu | gelu_tanh | relu.
    activation: str = "swish"
    # Subtract each mel bin's mean over the utterance (`log_mel`). Right for speech (it removes
    # a voice's or microphone's colouring); on music a clip's mean spectrum is its notes: off
    # for piano (configs/piano_quickstart.py), where it halved the tokens' pitch information.
    mel_mean_norm: bool = True

    @property
    def samples_per_frame(self) -> int:
        return self.hop * SUBSAMPLING

    @property
    def frame_rate(self) -> float:
        """Model frames (= semantic ids) per second: 25 at 16 kHz with a 10 ms hop."""
        return self.sample_rate / self.samples_per_frame

    @property
    def num_layers(self) -> int:
        return self.contrastive_layers + self.mlm_layers

    @property
    def name(self) -> str:
        """What logs and `semantic.describe` call this model."""
        return "w2v-BERT"

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def kv_dim(self) -> int:
        return self.d_model // self.num_heads

    @classmethod
    def from_config(cls, cfg: Any) -> W2VBertConfig:
        """From `config.w2v_bert`, naming any field this class does not know."""
        return dataclass_from_config(cls, cfg, "w2v_bert")


def num_frames(cfg: W2VBertConfig, samples: int) -> int:
    """Model frames for `samples` of audio: one per `samples_per_frame` (640) whole samples."""
    return samples // cfg.samples_per_frame


def log_mel(cfg: W2VBertConfig, wav: jax.Array) -> jax.Array:
    """`[b, 4 * frames, n_mels]` log-mel features, each bin minus its mean over the utterance
    when `cfg.mel_mean_norm`.

    Log of the mel magnitude floored at 1e-5 (silence gives a finite constant, never -inf);
    subtracting the per-utterance mean removes a fixed channel colouring (a voice's or a
    microphone's spectral tilt), as cepstral mean normalisation does. It also makes every
    feature depend on the whole clip, so k-means should see clips as long as those tokenized
    (`config.semantic.clip_seconds`).
    """
    frames = num_frames(cfg, wav.shape[1]) * SUBSAMPLING
    mel = dsp.mel_spectrogram(wav, cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels)[:, :frames]
    logmel = jnp.log(jnp.maximum(mel, 1e-5))
    if not cfg.mel_mean_norm:
        return logmel
    return logmel - jnp.mean(logmel, axis=1, keepdims=True)


class FeatureEncoder(nn.Module):
    """Log-mel `[b, 4T, n_mels]` -> `[b, T, d_model]`: two 3x3 stride-2 conv2d + ReLU, a linear
    over (channels x mel bins), LayerNorm."""

    cfg: W2VBertConfig

    @nn.compact
    def __call__(self, feats: jax.Array) -> jax.Array:
        cfg, dt = self.cfg, self.cfg.compute_dtype
        x = feats[..., None].astype(dt)  # [b, time, mel, 1]
        init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        for i in range(2):
            x = nn.Conv(
                cfg.conv_channels,
                (3, 3),
                strides=(2, 2),
                padding="SAME",
                dtype=dt,
                kernel_init=nn.with_logical_partitioning(
                    init, ("conv_kernel", "conv_width", "conv_in", "conv_out")
                ),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
                name=f"conv_{i}",
            )(x)
            x = nn.relu(x)
        b, t, f, c = x.shape
        x = Dense((f * c, cfg.d_model), ("conv_out", "embed"), 1, dt, name="proj")(
            x.reshape(b, t, f * c)
        )
        return constrain(LayerNorm(dtype=dt, name="norm")(x), ("batch", "length", "embed"))


def gelu_exact(x: jax.Array) -> jax.Array:
    """GELU with the Gaussian CDF, 0.5 x (1 + erf(x / sqrt 2)), as torch's nn.GELU() computes it.
    `nn.gelu(approximate=False)` goes through erfc, whose two branches ran 2.5-6x slower on the
    CPU (5.4-12 ms against 2.1 ms for HuBERT's first [16015, 512] activation); the two agree to
    1e-6 there."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


ACTIVATIONS = {
    "swish": nn.swish,
    "silu": nn.swish,
    "gelu": gelu_exact,
    "gelu_tanh": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
}


# transformers' hidden_act names (ACT2FN; "gelu" is the exact, erf-based GELU) -> ACTIVATIONS:
# what the importers of HuBERT and w2v-BERT 2.0 map checkpoints' activations through.
HF_ACTIVATIONS = {
    "swish": "swish",
    "silu": "swish",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


def activation(name: str):
    """The activation function `name` (W2VBertConfig.activation)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"w2v_bert.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class BiasDense(Dense):
    """`Dense` plus, when `use_bias`, a bias over the kernel's output axes. Without it the
    params are Dense's exactly ({"kernel"})."""

    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x)
        if not self.use_bias:
            return y
        out = self.shape[self.contract :]
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, self.axes[self.contract :]),
            out,
            self.param_dtype,
        )
        return y + bias.astype(y.dtype)


def _norm(cfg: W2VBertConfig, name: str) -> LayerNorm:
    return LayerNorm(eps=cfg.layer_norm_eps, dtype=cfg.compute_dtype, name=name)


class FeedForward(nn.Module):
    cfg: W2VBertConfig
    deterministic: bool

    @nn.compact
    def __call__(self, x):
        cfg, dt = self.cfg, self.cfg.compute_dtype
        drop = Dropout(cfg.dropout, deterministic=self.deterministic)
        y = _norm(cfg, "norm")(x)
        y = BiasDense(
            (cfg.d_model, cfg.d_ff), ("embed", "mlp"), 1, dt, name="wi", use_bias=cfg.use_bias
        )(y)
        y = constrain(activation(cfg.activation)(y), ("batch", "length", "mlp"))
        y = BiasDense(
            (cfg.d_ff, cfg.d_model), ("mlp", "embed"), 1, dt, name="wo", use_bias=cfg.use_bias
        )(drop(y))
        return drop(y)


class ConvModule(nn.Module):
    """LayerNorm, pointwise conv to 2d + GLU, depthwise conv (kernel `conv_kernel`, centred, or
    causal: left-padded by k - 1, `conv_padding`), LayerNorm, activation (swish), pointwise
    conv. No biases."""

    cfg: W2VBertConfig
    deterministic: bool

    @nn.compact
    def __call__(self, x):
        cfg, dt = self.cfg, self.cfg.compute_dtype
        d, k = cfg.d_model, cfg.conv_kernel
        y = _norm(cfg, "norm")(x)
        y = Dense((d, 2 * d), ("embed", "mlp"), 1, dt, name="pointwise_in")(y)
        y = nn.glu(y, axis=-1)
        kernel = self.param(
            "depthwise",
            nn.with_logical_partitioning(
                nn.initializers.normal(stddev=1.0 / math.sqrt(k)), ("conv_kernel", "embed")
            ),
            (k, d),
            jnp.float32,
        )
        if cfg.conv_padding == "same":
            pad = (k - 1) // 2
        elif cfg.conv_padding == "causal":
            pad = k - 1
        else:
            raise ValueError(
                f"w2v_bert.conv_padding must be 'same' or 'causal', got {cfg.conv_padding!r}"
            )
        yp = jnp.pad(y, ((0, 0), (pad, k - 1 - pad), (0, 0)))
        t = y.shape[1]
        y = sum(yp[:, i : i + t] * kernel[i].astype(dt) for i in range(k))
        y = activation(cfg.activation)(_norm(cfg, "depthwise_norm")(y))
        y = Dense((d, d), ("mlp", "embed"), 1, dt, name="pointwise_out")(y)
        return Dropout(cfg.dropout, deterministic=self.deterministic)(y)


def relative_key_bias(q: jax.Array, table: jax.Array, left: int, right: int) -> jax.Array:
    """Shaw et al. (2018) relative-key scores `[b, h, T, T]` for queries q `[b, T, h, d]`:
    bias[b, h, i, j] = q[b, i, h] . table[clip(j - i, -left, right) + left] / sqrt(d), as
    transformers' Wav2Vec2-BERT ("relative_key"). Computed as q @ table^T `[b, h, T, R]` (R =
    left + right + 1, small) and then gathered, never as a [T, T, d] embedding."""
    t, d = q.shape[1], q.shape[-1]
    rel = jnp.einsum(
        "bqhd,rd->bhqr", q, table.astype(q.dtype), preferred_element_type=jnp.float32
    ) * (d**-0.5)
    pos = jnp.arange(t, dtype=jnp.int32)
    idx = jnp.clip(pos[None, :] - pos[:, None], -left, right) + left  # [T(query), T(key)]
    return rel[:, :, pos[:, None], idx]


class ConformerBlock(nn.Module):
    """Macaron FFN/2, self-attention, convolution, FFN/2, LayerNorm. Scan-compatible.

    `bias`: the stack's shared position bias (None unless position "t5"); with position
    "relative_key" each block adds its own from a `distance_embedding` table."""

    cfg: W2VBertConfig
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, bias, mask):
        cfg, dt = self.cfg, self.cfg.compute_dtype
        h, d, e = cfg.num_heads, cfg.kv_dim, cfg.d_model
        x = x + 0.5 * FeedForward(cfg, self.deterministic, name="ffn_1")(x)
        y = _norm(cfg, "attn_norm")(x)
        q, k, v = (
            constrain(
                BiasDense(
                    (e, h, d), ("embed", "heads", "kv"), 1, dt, name=n, use_bias=cfg.use_bias
                )(y),
                ("batch", "length", "heads", "kv"),
            )
            for n in ("query", "key", "value")
        )
        if cfg.position == "relative_key":
            table = self.param(
                "distance_embedding",
                nn.with_logical_partitioning(
                    nn.initializers.normal(0.02), ("relpos_buckets", "kv")
                ),
                (cfg.rel_left + cfg.rel_right + 1, d),
                jnp.float32,
            )
            rk = relative_key_bias(q, table, cfg.rel_left, cfg.rel_right).astype(dt)
            bias = rk if bias is None else bias + rk
        a = tfm.attend(cfg, q, k, v, bias, mask, causal=False)
        a = BiasDense(
            (h, d, e), ("heads", "kv", "embed"), 2, dt, name="out", use_bias=cfg.use_bias
        )(a)
        x = x + Dropout(cfg.dropout, deterministic=self.deterministic)(a)
        x = x + ConvModule(cfg, self.deterministic, name="conv")(x)
        x = x + 0.5 * FeedForward(cfg, self.deterministic, name="ffn_2")(x)
        x = _norm(cfg, "final_norm")(x)
        return constrain(x, ("batch", "length", "embed")), None


class ConformerStack(nn.Module):
    """`num_layers` conformer blocks sharing one relative position bias (position "t5"; other
    positions: no shared bias, no `rel_bias` param)."""

    cfg: W2VBertConfig
    num_layers: int
    deterministic: bool = True

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        t = x.shape[1]
        idx = jnp.arange(t, dtype=jnp.int32)
        if cfg.position == "t5":
            bias = RelativePositionBias(
                cfg.num_heads,
                cfg.rel_buckets,
                cfg.rel_max_distance,
                causal=False,
                dtype=cfg.compute_dtype,
                name="rel_bias",
            )(idx, idx)
        elif cfg.position in ("relative_key", "none"):
            bias = None
        else:
            raise ValueError(
                f"w2v_bert.position must be 't5', 'relative_key' or 'none', got {cfg.position!r}"
            )
        mask = jnp.ones((1, 1, 1, t), bool)
        block = ConformerBlock
        if cfg.remat != "none":
            block = nn.remat(
                block, policy=tfm._REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers
            )
        if cfg.scan_layers:
            x, _ = nn.scan(
                block,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=self.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, self.deterministic, name="layers")(x, bias, mask)
        else:
            for i in range(self.num_layers):
                x, _ = block(cfg, self.deterministic, name=f"layer_{i}")(x, bias, mask)
        return x


class GumbelQuantizer(nn.Module):
    """One codebook of `codebook_size` vectors picked by a (hard, straight-through) Gumbel
    softmax over logits of the input (wav2vec 2.0, Baevski et al. 2020, sec. 2)."""

    cfg: W2VBertConfig

    @nn.compact
    def __call__(self, x, rng=None, tau=None):
        """Returns (quantized [b, T, code_dim], ids [b, T], soft probs [b, T, V] without noise)."""
        cfg = self.cfg
        logits = Dense(
            (cfg.d_model, cfg.codebook_size),
            ("embed", "vocab"),
            1,
            cfg.compute_dtype,
            init_scale=cfg.quantizer_init_scale,
            out_dtype=jnp.float32,
            name="logits",
        )(x).astype(jnp.float32)
        codebook = self.param(
            "codebook",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "code")),
            (cfg.codebook_size, cfg.code_dim),
            jnp.float32,
        )
        probs = jax.nn.softmax(logits, axis=-1)
        ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        if rng is not None:
            g = -jnp.log(-jnp.log(jax.random.uniform(rng, logits.shape, minval=1e-6, maxval=1.0)))
            soft = jax.nn.softmax((logits + g) / tau, axis=-1)
            hard = jax.nn.one_hot(jnp.argmax(soft, -1), cfg.codebook_size, dtype=soft.dtype)
            onehot = hard + soft - jax.lax.stop_gradient(soft)
        else:
            onehot = jax.nn.one_hot(ids, cfg.codebook_size, dtype=jnp.float32)
        q = jnp.dot(onehot, codebook)
        return q, ids, probs


class W2VBertNet(nn.Module):
    """The network. `__call__` is the training forward; `features` runs without masking and
    returns the output of the last block the config has (see `truncate`)."""

    cfg: W2VBertConfig
    deterministic: bool = True

    def setup(self):
        cfg, dt = self.cfg, self.cfg.compute_dtype
        self.encoder = FeatureEncoder(cfg)
        self.quantizer = GumbelQuantizer(cfg)
        self.mask_embedding = self.param(
            "mask_embedding",
            nn.with_logical_partitioning(nn.initializers.uniform(1.0), ("embed",)),
            (cfg.d_model,),
            jnp.float32,
        )
        self.input_proj = Dense((cfg.d_model, cfg.d_model), ("embed", "mlp"), 1, dt)
        self.contrastive = ConformerStack(cfg, cfg.contrastive_layers, self.deterministic)
        if cfg.mlm_layers:
            self.mlm = ConformerStack(cfg, cfg.mlm_layers, self.deterministic)
        self.context_proj = Dense((cfg.d_model, cfg.proj_dim), ("embed", "code"), 1, dt)
        self.target_proj = Dense((cfg.code_dim, cfg.proj_dim), ("code", "embed"), 1, dt)
        self.mlm_head = Dense(
            (cfg.d_model, cfg.codebook_size), ("embed", "vocab"), 1, dt, out_dtype=jnp.float32
        )

    def features(self, wav: jax.Array) -> jax.Array:
        """`[b, frames, d_model]` output of the config's last layer (no masking, no dropout)."""
        x = self.encoder(log_mel(self.cfg, wav))
        if self.cfg.contrastive_layers == 0:
            return x
        c = self.contrastive(self.input_proj(x))
        return self.mlm(c) if self.cfg.mlm_layers else c

    def __call__(self, wav, mask, rng=None, tau=1.0):
        """Training forward. `mask` [b, T] bool: frames replaced by the mask embedding; `rng`
        draws the Gumbel noise (None: hard argmax codes).

        Returns a dict: ids [b, T] (quantizer codes), probs [b, T, V] (quantizer softmax),
        context / target [b, T, proj_dim] (for the contrastive loss), mlm_logits [b, T, V].
        """
        cfg = self.cfg
        x = self.encoder(log_mel(cfg, wav))
        q, ids, probs = self.quantizer(x, rng, tau)
        xm = jnp.where(mask[..., None], self.mask_embedding.astype(x.dtype), x)
        c = self.contrastive(self.input_proj(xm))
        m = self.mlm(c)
        return {
            "ids": ids,
            "probs": probs,
            "context": self.context_proj(c).astype(jnp.float32),
            "target": self.target_proj(q.astype(cfg.compute_dtype)).astype(jnp.float32),
            "mlm_logits": self.mlm_head(m).astype(jnp.float32),
        }


def span_mask(rng: jax.Array, batch: int, frames: int, prob: float, span: int) -> jax.Array:
    """wav2vec 2.0 masking `[batch, frames]` bool: each frame starts a masked span of `span`
    frames with probability `prob` (p = 0.065, span 10 mask about 49% of frames). At least one
    span per utterance, so every example gives the losses something to predict."""
    starts = jax.random.uniform(rng, (batch, frames)) < prob
    first = jax.random.randint(jax.random.fold_in(rng, 1), (batch,), 0, max(frames - span, 0) + 1)
    none = ~jnp.any(starts, axis=1)
    starts = starts | (none[:, None] & (jnp.arange(frames)[None] == first[:, None]))
    c = jnp.cumsum(starts.astype(jnp.int32), axis=1)
    before = jnp.pad(c, ((0, 0), (span, 0)))[:, :frames]
    return (c - before) > 0


def contrastive_loss(
    context: jax.Array,
    target: jax.Array,
    mask: jax.Array,
    rng: jax.Array,
    num_negatives: int,
    temperature: float,
    negatives_from: str = "masked",
) -> tuple[jax.Array, jax.Array]:
    """wav2vec 2.0's contrastive task at the masked frames: pick the frame's quantized target
    among `num_negatives` distractors drawn uniformly from the other masked frames of the same
    utterance (`negatives_from="masked"`) or from all its other frames ("all"), by cosine
    similarity / temperature. Returns (mean loss over masked frames, accuracy).

    Distractors that share the target's code stay in (wav2vec 2.0 drops them): dropping them
    rewards a collapsed codebook, where every distractor is dropped and the loss is 0 (seen
    within 50 steps on one batch); kept, collapse costs the most, log(1 + num_negatives).

    In short clips the masked frames are a few spans, so "masked" distractors are mostly the
    target's neighbours in its own span: near-copies that no context can tell apart. "all"
    keeps the task learnable there (configs/w2v_bert_tiny.py).
    """
    b, t, _ = context.shape
    cn = context * jax.lax.rsqrt(jnp.sum(context**2, -1, keepdims=True) + 1e-8)
    tn = target * jax.lax.rsqrt(jnp.sum(target**2, -1, keepdims=True) + 1e-8)
    sims = jnp.einsum("btp,bsp->bts", cn, tn) / temperature  # [b, t, t]
    pos = jnp.diagonal(sims, axis1=1, axis2=2)  # [b, t]
    if negatives_from == "all":
        pool = jnp.ones_like(mask)
    elif negatives_from == "masked":
        pool = mask
    else:
        raise ValueError(f"negatives_from must be 'masked' or 'all', got {negatives_from!r}")
    n_masked = pool.sum(1)
    order = jnp.argsort(~pool, axis=1, stable=True)  # pool frames first, in time order
    rank = jnp.cumsum(pool, axis=1) - 1
    hi = jnp.maximum(n_masked - 1, 1)[:, None, None]
    r = jax.random.randint(rng, (b, t, num_negatives), 0, hi)
    r = r + (r >= rank[..., None])  # skip the frame itself
    neg_idx = jnp.take_along_axis(order, r.reshape(b, -1), axis=1).reshape(b, t, num_negatives)
    neg = jnp.take_along_axis(sims, neg_idx, axis=2)
    neg = jnp.where(n_masked[:, None, None] > 1, neg, tfm.NEG_INF)  # no other frame to draw
    logits = jnp.concatenate([pos[..., None], neg], axis=-1)
    per_frame = jax.nn.logsumexp(logits, axis=-1) - pos
    w = mask.astype(jnp.float32)
    denom = jnp.maximum(w.sum(), 1.0)
    acc = ((jnp.argmax(logits, -1) == 0) * w).sum() / denom
    return (per_frame * w).sum() / denom, acc


def perplexity(probs: jax.Array) -> jax.Array:
    """exp(entropy) of a distribution over the last axis."""
    return jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-9), axis=-1))


def truncate(cfg: W2VBertConfig, params: dict, layer: int) -> tuple[W2VBertConfig, dict]:
    """The config and the params that compute `layer`'s output and nothing past it: layers are
    numbered 0 (feature encoder) to `cfg.num_layers` (see the module docstring). The kept
    layers come unrolled (`scan_layers=False`, one param subtree each), the faster form for
    inference (`lm.transformer.split_layers`)."""
    if not 0 <= layer <= cfg.num_layers:
        raise ValueError(
            f"w2v-BERT layer {layer} out of range: 0 (feature encoder) .. {cfg.num_layers}"
        )
    n_c = min(layer, cfg.contrastive_layers)
    n_m = layer - n_c
    keep = {"encoder": params["encoder"], "mask_embedding": params["mask_embedding"]}
    if n_c:
        keep["input_proj"] = params["input_proj"]
        keep["contrastive"] = tfm.first_layers(params["contrastive"], n_c, cfg.scan_layers)
    if n_m:
        keep["mlm"] = tfm.first_layers(params["mlm"], n_m, cfg.scan_layers)
    return dataclasses.replace(cfg, contrastive_layers=n_c, mlm_layers=n_m, scan_layers=False), keep


def features(cfg: W2VBertConfig, params: dict, wav: jax.Array) -> jax.Array:
    """`[b, frames, d_model]` output of `cfg`'s last layer for wav `[b, samples]` (pair with
    `truncate` for an inner layer). Pure; jit it."""
    return W2VBertNet(cfg).apply({"params": params}, wav, method=W2VBertNet.features)


def train_flops_per_frame(cfg: W2VBertConfig, frames: int) -> float:
    """Model FLOPs of one training frame (forward + backward = 3x forward), from shapes."""
    d, f, v, c = cfg.d_model, cfg.d_ff, cfg.codebook_size, cfg.conv_channels
    mels = cfg.n_mels
    conv = 4 * 9 * c * mels / 2 + 9 * c * c * mels / 4  # conv_0 on 4 x mel/2, conv_1 on mel/4
    encoder = conv + c * (mels // 4) * d
    layer = 4 * d * f + 7 * d * d + cfg.conv_kernel * d + 2 * frames * d  # + attention
    heads = d * v + v * cfg.code_dim + d * cfg.proj_dim + cfg.code_dim * cfg.proj_dim + d * d
    heads += d * v + frames * cfg.proj_dim  # MLM softmax, contrastive similarities
    return 3.0 * 2.0 * (encoder + cfg.num_layers * layer + heads)


class W2VBert(Model):
    """w2v-BERT pretraining as a trainer `Model`. Batches: {"wav": [b, samples]} at 16 kHz.

    model_state: {"step"} (anneals the Gumbel temperature).
    """

    groups = ("model",)

    def __init__(self, cfg: W2VBertConfig):
        self.cfg = cfg

    @classmethod
    def from_config(cls, config: Any) -> W2VBert:
        return cls(W2VBertConfig.from_config(config.w2v_bert))

    def _frames(self, batch: Batch) -> int:
        t = num_frames(self.cfg, batch["wav"].shape[1])
        if t < 2:
            raise ValueError(
                f"w2v-BERT batches need at least 2 frames ({2 * self.cfg.samples_per_frame} "
                f"samples); got wav of shape {tuple(batch['wav'].shape)}"
            )
        return t

    def init(self, rng, batch):
        wav = batch["wav"]
        mask = jnp.zeros((wav.shape[0], self._frames(batch)), bool)
        params = W2VBertNet(self.cfg).init({"params": rng}, wav, mask)["params"]
        return {"model": params}, {"step": jnp.zeros((), jnp.int32)}

    def tau(self, step: jax.Array) -> jax.Array:
        """Gumbel-softmax temperature at `step`: start * decay^step, floored at end."""
        c = self.cfg
        return jnp.maximum(
            c.gumbel_end, c.gumbel_start * c.gumbel_decay ** step.astype(jnp.float32)
        )

    def loss(self, group, params, model_state, batch, rng, train):
        cfg = self.cfg
        wav = batch["wav"]
        b, t = wav.shape[0], self._frames(batch)
        k_mask, k_gumbel, k_neg, k_drop = jax.random.split(rng, 4)
        mask = span_mask(k_mask, b, t, cfg.mask_prob, cfg.mask_span)
        tau = self.tau(model_state["step"])
        out = W2VBertNet(cfg, deterministic=not train).apply(
            {"params": params["model"]},
            wav,
            mask,
            k_gumbel if train else None,
            tau,
            rngs={"dropout": k_drop} if train else None,
        )
        ids = out["ids"]
        l_c, c_acc = contrastive_loss(
            out["context"],
            out["target"],
            mask,
            k_neg,
            cfg.num_negatives,
            cfg.temperature,
            cfg.negatives_from,
        )
        avg_probs = jnp.mean(out["probs"].reshape(-1, cfg.codebook_size), axis=0)
        prob_ppl = perplexity(avg_probs)
        l_d = (cfg.codebook_size - prob_ppl) / cfg.codebook_size
        w = mask.astype(jnp.float32)
        l_m, mlm = cross_entropy(out["mlm_logits"], jax.lax.stop_gradient(ids), w)
        loss = l_c + cfg.diversity_weight * l_d + cfg.mlm_weight * l_m
        hist = jnp.mean(jax.nn.one_hot(ids.reshape(-1), cfg.codebook_size), axis=0)
        metrics = {
            "contrastive_loss": l_c,
            "contrastive_accuracy": c_acc,
            "diversity_loss": l_d,
            "mlm_loss": l_m,
            "mlm_accuracy": mlm["accuracy"],
            "code_perplexity": perplexity(hist),
            "prob_perplexity": prob_ppl,
            "gumbel_tau": tau,
            "mask_fraction": w.mean(),
        }
        new_state = dict(model_state)
        if train:
            new_state["step"] = model_state["step"] + 1
        return loss, (new_state, metrics)

    def tokens(self, batch: Batch) -> int:
        return int(batch["wav"].shape[0] * num_frames(self.cfg, batch["wav"].shape[1]))

    def flops_per_step(self, batch: Batch) -> float:
        t = num_frames(self.cfg, batch["wav"].shape[1])
        return batch["wav"].shape[0] * t * train_flops_per_frame(self.cfg, t)
