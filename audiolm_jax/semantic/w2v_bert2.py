"""w2v-BERT 2.0 (Meta's Seamless, facebook/w2v-bert-2.0; transformers' `Wav2Vec2BertModel`),
imported (`audiolm_jax.importers.w2v_bert2`) and run on our conformer (`w2v_bert.ConformerStack`)
as a semantic feature model: its 50 frames/s hidden states, k-means clustered.

    wav [b, samples] 16 kHz
      -> Kaldi fbank: 80 log-mel bins, 25 ms Povey window, 10 ms hop; per utterance and bin,
         zero mean / unit variance; 2 consecutive frames stacked -> 160 dims, 50 frames/s
         (`fbank_features`, = transformers' SeamlessM4TFeatureExtractor)
      -> feature projection: LayerNorm(160), linear 160 -> d (layer 0)
      -> N conformer blocks (layer i = the i-th block's output = HF's hidden_states[i])

Framing. Kaldi frames only whole windows ("snip_edges"): n samples give 1 + (n - 400) // 160
fbank frames, so 320 T samples give 2 T - 2 of them and HF's extractor T - 1 model frames. To
give the semantic API's T = ceil(samples / 320) frames, `fbank_features` right-pads the audio
with zeros to 320 T + `FBANK_PAD` (240) samples, which gives exactly 2 T fbank frames, and then
does everything as HF does on that padded audio (the per-bin statistics included). So
`features(wav)` equals HF's model on `SeamlessM4TFeatureExtractor()(wav ++ 240 zeros)`; frame t
covers samples [320 t, 320 t + 560), HF's own framing, plus one frame at the end.

What maps onto our conformer (options of `w2v_bert.W2VBertConfig`, see `W2VBert2Config.conformer`):
macaron FFN/2 + self-attention + conv module + FFN/2 + final LayerNorm in each block, pre-norm
residuals; biases on q/k/v/out and the FFN linears (`use_bias`); LayerNorm eps 1e-5
(`layer_norm_eps`); swish in the FFNs and the conv module (`activation`); the conv module's
bias-free pointwise convs, GLU, depthwise conv padded causally on the left (`conv_padding`) and
LayerNorm; Shaw-style "relative_key" attention, a per-layer distance embedding over key - query
clipped to [-64, 8], whose q.E term is scaled by 1/sqrt(head_dim) like q.k (`position`).

What does not map (the importer refuses these configs, naming the field): the other position
types ("relative": Transformer-XL sinusoids with linear_pos and pos_bias_u/v; "rotary": rotary
embeddings applied to the block input before the q/k projections); the adapter (`add_adapter`)
and the intermediate FFN (`use_intermediate_ffn_before_adapter`), which act on the last layer's
output only; a front end other than 160 = 2 x 80 fbank dims. Not carried over at all, being
training-time only: SpecAugment masking (`masked_spec_embed`), dropouts, LayerDrop. Padding
masks: like our w2v-BERT, no attention mask; batch rows padded with zeros attend to the zeros
(HF, given an attention_mask, would not), and the per-bin statistics include them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.config import dataclass_from_config
from audiolm_jax.lm import transformer as tfm
from audiolm_jax.lm.layers import LayerNorm
from audiolm_jax.semantic.w2v_bert import (
    HF_ACTIVATIONS,
    BiasDense,
    ConformerStack,
    W2VBertConfig,
)

SAMPLE_RATE = 16000
FBANK_WINDOW = 400  # 25 ms
FBANK_HOP = 160  # 10 ms
FBANK_FFT = 512
FBANK_BINS = 80
FBANK_STACK = 2  # fbank frames per model frame
FBANK_PAD = FBANK_WINDOW - FBANK_HOP  # 240 zeros: 320 T samples -> 2 T whole windows
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07  # float32 epsilon, Kaldi's
INT16_SCALE = 32768.0  # Kaldi reads 16-bit integer samples
NORM_EPS = 1e-7

POSITIONS = {"relative_key": "relative_key", None: "none"}


@dataclasses.dataclass(frozen=True)
class W2VBert2Config:
    """transformers' Wav2Vec2BertConfig fields that shape the model (defaults: w2v-bert-2.0's,
    the 600M model: 24 layers, d 1024), plus ours (`sample_rate`, `dtype`, `attention_impl`)."""

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    feature_projection_input_dim: int = FBANK_BINS * FBANK_STACK
    hidden_act: str = "swish"
    layer_norm_eps: float = 1e-5
    position_embeddings_type: str | None = "relative_key"
    left_max_position_embeddings: int = 64
    right_max_position_embeddings: int = 8
    conv_depthwise_kernel_size: int = 31
    sample_rate: int = SAMPLE_RATE
    dtype: str = "float32"
    attention_impl: str | None = None
    # Conformer blocks stored stacked and run by nn.scan (the importer's format), or one module
    # each ("layer_0" ..): `truncate` unrolls them, the faster way to run inference.
    scan_layers: bool = True

    @property
    def samples_per_frame(self) -> int:
        return FBANK_HOP * FBANK_STACK  # 320

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.samples_per_frame  # 50.0

    @property
    def d_model(self) -> int:
        return self.hidden_size

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def name(self) -> str:
        return "w2v-BERT 2.0"

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def conformer(self) -> W2VBertConfig:
        """Our conformer's config for these blocks (inference: no dropout; scanned layers)."""
        if self.hidden_act not in HF_ACTIVATIONS:
            raise ValueError(
                f"hidden_act {self.hidden_act!r} is not supported; known: {sorted(HF_ACTIVATIONS)}"
            )
        if self.position_embeddings_type not in POSITIONS:
            raise ValueError(
                f"position_embeddings_type {self.position_embeddings_type!r} is not supported "
                "(only 'relative_key' or None)"
            )
        return W2VBertConfig(
            sample_rate=self.sample_rate,
            d_model=self.hidden_size,
            num_heads=self.num_attention_heads,
            d_ff=self.intermediate_size,
            conv_kernel=self.conv_depthwise_kernel_size,
            contrastive_layers=self.num_hidden_layers,
            mlm_layers=0,
            dropout=0.0,
            scan_layers=self.scan_layers,
            dtype=self.dtype,
            attention_impl=self.attention_impl,
            position=POSITIONS[self.position_embeddings_type],
            rel_left=self.left_max_position_embeddings,
            rel_right=self.right_max_position_embeddings,
            conv_padding="causal",
            use_bias=True,
            layer_norm_eps=self.layer_norm_eps,
            activation=HF_ACTIVATIONS[self.hidden_act],
        )

    @classmethod
    def from_config(cls, cfg: Any) -> W2VBert2Config:
        """From `config.w2v_bert2`, naming any field this class does not know."""
        return dataclass_from_config(cls, cfg, "w2v_bert2")

    @classmethod
    def from_hf(cls, hf: dict) -> W2VBert2Config:
        """From a transformers config.json dict; fields it lacks take HF's defaults."""
        ours = {"sample_rate", "dtype", "attention_impl", "scan_layers"}
        names = {f.name for f in dataclasses.fields(cls)} - ours
        return cls(**{k: hf[k] for k in names if k in hf})


def num_frames(samples: int) -> int:
    """Model frames for `samples` of 16 kHz audio: ceil(samples / 320)."""
    return -(-samples // (FBANK_HOP * FBANK_STACK))


def _kaldi_mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)


@functools.lru_cache(maxsize=1)
def kaldi_mel_filters() -> np.ndarray:
    """`[257, 80]` triangular filters, 20 Hz..8 kHz, triangles in Kaldi's mel scale (1127
    ln(1 + f / 700)), unnormalised: the matrix transformers' SeamlessM4TFeatureExtractor uses."""
    mel = np.linspace(_kaldi_mel(20.0), _kaldi_mel(SAMPLE_RATE / 2), FBANK_BINS + 2)
    bins = _kaldi_mel(SAMPLE_RATE / FBANK_FFT * np.arange(FBANK_FFT // 2 + 1))
    slopes = mel[None, :] - bins[:, None]
    diff = np.diff(mel)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def fbank_features(wav: jax.Array) -> jax.Array:
    """SeamlessM4TFeatureExtractor's `input_features` `[b, T, 160]` for wav `[b, samples]` at
    16 kHz in [-1, 1], T = ceil(samples / 320): the audio right-padded with zeros to 320 T + 240
    samples (see the module docstring), then per 25 ms frame (10 ms hop) x 32768, minus its mean,
    pre-emphasis 0.97, Povey window, |512-point FFT|^2, Kaldi mel filters, floor, log; each bin
    normalised over the utterance (mean, unbiased variance + 1e-7); frame pairs stacked. Pure,
    jit-able; float32 (HF computes the FFT in float64: log-mel bins agree to ~1e-4)."""
    wav = jnp.asarray(wav, jnp.float32)
    b, n = wav.shape
    t = num_frames(n)
    x = jnp.pad(wav, ((0, 0), (0, t * FBANK_HOP * FBANK_STACK + FBANK_PAD - n))) * INT16_SCALE
    f = FBANK_STACK * t
    idx = np.arange(f)[:, None] * FBANK_HOP + np.arange(FBANK_WINDOW)[None, :]
    frames = x[:, idx]  # [b, f, 400]
    frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
    prev = jnp.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = frames - PREEMPHASIS * prev
    window = jnp.asarray(np.hanning(FBANK_WINDOW) ** 0.85, jnp.float32)  # Povey
    spec = jnp.fft.rfft(frames * window, n=FBANK_FFT, axis=-1)
    power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    mel = jnp.dot(power, jnp.asarray(kaldi_mel_filters()), precision=jax.lax.Precision.HIGHEST)
    logmel = jnp.log(jnp.maximum(mel, MEL_FLOOR))  # [b, f, 80]
    mean = jnp.mean(logmel, axis=1, keepdims=True)
    var = jnp.sum(jnp.square(logmel - mean), axis=1, keepdims=True) / max(f - 1, 1)
    normed = (logmel - mean) / jnp.sqrt(var + NORM_EPS)
    return normed.reshape(b, t, FBANK_STACK * FBANK_BINS)


class W2VBert2Net(nn.Module):
    """input_features `[b, T, 160]` -> feature projection -> `num_hidden_layers` conformer
    blocks. Params: feature_norm, feature_proj, encoder (a scanned `ConformerStack`)."""

    cfg: W2VBert2Config

    @nn.compact
    def __call__(self, feats: jax.Array) -> jax.Array:
        cfg, dt = self.cfg, self.cfg.compute_dtype
        d_in = cfg.feature_projection_input_dim
        if feats.shape[-1] != d_in:
            raise ValueError(f"w2v-BERT 2.0 takes {d_in}-dim features, got shape {feats.shape}")
        x = LayerNorm(eps=cfg.layer_norm_eps, dtype=dt, name="feature_norm")(feats)
        x = BiasDense(
            (d_in, cfg.hidden_size),
            ("conv_out", "embed"),
            1,
            dt,
            name="feature_proj",
            use_bias=True,
        )(x)
        if cfg.num_hidden_layers:
            x = ConformerStack(cfg.conformer, cfg.num_hidden_layers, name="encoder")(x)
        return x


def features_from_fbank(cfg: W2VBert2Config, params: dict, input_features: jax.Array) -> jax.Array:
    """`[b, T, d]` output of `cfg`'s last layer for HF-style input_features `[b, T, 160]`."""
    return W2VBert2Net(cfg).apply({"params": params}, input_features)


def features(cfg: W2VBert2Config, params: dict, wav: jax.Array) -> jax.Array:
    """`[b, ceil(samples / 320), d]` output of `cfg`'s last layer (pair with `truncate` for an
    inner layer) for wav `[b, samples]` at 16 kHz. Pure; jit it."""
    return features_from_fbank(cfg, params, fbank_features(wav).astype(cfg.compute_dtype))


def truncate(cfg: W2VBert2Config, params: dict, layer: int) -> tuple[W2VBert2Config, dict]:
    """The config and params that compute `layer` and nothing past it: 0 = the feature
    projection's output (HF's hidden_states[0]), i = block i's output (hidden_states[i])."""
    if not 0 <= layer <= cfg.num_hidden_layers:
        raise ValueError(
            f"w2v-BERT 2.0 layer {layer} out of range: 0 (feature projection) .. "
            f"{cfg.num_hidden_layers}"
        )
    keep = {"feature_norm": params["feature_norm"], "feature_proj": params["feature_proj"]}
    if layer:
        keep["encoder"] = tfm.first_layers(params["encoder"], layer, cfg.scan_layers)
    return dataclasses.replace(cfg, num_hidden_layers=layer, scan_layers=False), keep
