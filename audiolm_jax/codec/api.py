"""The codec as a library: pure, jit-able `encode`/`decode`, chunked streaming, `load(workdir)`.

    from audiolm_jax import codec
    c = codec.load("runs/soundstream_tiny")        # newest checkpoint of a trained codec
    codes = codec.encode(c, wav)                   # [batch, frames, levels] int32
    audio = codec.decode(c, codes)                 # [batch, frames * hop] float32

`Codec` is a pytree (arrays: generator params and codebooks; static: the config), so
`jax.jit(codec.encode)(c, wav)` works. No TensorFlow is imported on this path.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import dsp
from audiolm_jax.codec import rvq
from audiolm_jax.codec.model import CodecConfig, decode_latents, encode_latents
from audiolm_jax.codec.seanet import Decoder, Encoder

log = logging.getLogger("audiolm_jax")


@flax.struct.dataclass
class Codec:
    """A trained codec: `params` (encoder, decoder, quantizer projections), `codebooks` (the RVQ
    state) and its `cfg` (sample rate, hop, levels, codebook size)."""

    params: dict
    codebooks: dict
    cfg: CodecConfig = flax.struct.field(pytree_node=False)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def levels(self) -> int:
        return self.cfg.levels


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def prepare(codec: Codec, wav: Any, sample_rate: int | None = None) -> jax.Array:
    """Checks and shapes audio for `encode`: `[samples]` or `[batch, samples]` float; resampled
    (with a warning) when `sample_rate` differs from the codec's; right-padded with zeros to a
    whole number of frames. Raises ValueError for wrong rank, empty or non-finite audio."""
    return dsp.prepare_audio(wav, codec.sample_rate, codec.hop, sample_rate, "codec audio")


def encode(
    codec: Codec, wav: Any, *, levels: int | None = None, sample_rate: int | None = None
) -> jax.Array:
    """Audio -> codes `[batch, frames, levels]` int32, frames = ceil(samples / hop).

    Args:
      codec: from `load` (or `from_state`).
      wav: `[samples]` or `[batch, samples]` at the codec's rate (or at `sample_rate`, then
        resampled on the host with a warning; that call is not jit-able).
      levels: how many RVQ levels to return (the bitrate); default all.
    """
    x = prepare(codec, wav, sample_rate)
    n = codec.levels if levels is None else int(levels)
    if not 1 <= n <= codec.levels:
        raise ValueError(f"levels={n}: this codec has 1 to {codec.levels}")
    return _encode(codec, x, n)


@functools.partial(jax.jit, static_argnums=2)
def _encode(codec: Codec, x: jax.Array, n: int) -> jax.Array:
    z = encode_latents(codec.cfg, codec.params, x)
    q = rvq.quantize(codec.params["quantizer"], codec.codebooks, codec.cfg.rvq, z, n, refine=True)
    return q.codes[..., :n]


def decode(codec: Codec, codes: jax.Array) -> jax.Array:
    """Codes `[batch, frames, n]` (the first n <= Q levels) -> audio `[batch, frames * hop]`."""
    return _decode(codec, _check_codes(codec, codes))


@jax.jit
def _decode(codec: Codec, codes: jax.Array) -> jax.Array:
    zq = rvq.dequantize(codec.params["quantizer"], codec.codebooks, codec.cfg.rvq, codes)
    return decode_latents(codec.cfg, codec.params, zq)


def resynthesize(codec: Codec, wav: np.ndarray, bucket_seconds: float = 0.5) -> np.ndarray:
    """One waveform `[samples]` at the codec's rate through encode and decode (all levels),
    zero-padded to a multiple of `bucket_seconds` first (clips of many lengths then share a few
    compilations) and cut back to its own length."""
    wav = np.asarray(wav, np.float32)
    padded = np.pad(wav, (0, -len(wav) % int(bucket_seconds * codec.sample_rate)))
    return np.asarray(decode(codec, encode(codec, padded)))[0, : len(wav)]


def _check_codes(codec: Codec, codes: Any) -> jax.Array:
    if np.ndim(codes) != 3:
        raise ValueError(f"codes must be [batch, frames, levels], got shape {np.shape(codes)}")
    if not _is_traced(codes):
        c = np.asarray(codes)
        if c.size and (c.min() < 0 or c.max() >= codec.cfg.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {codec.cfg.codebook_size}), got {c.min()}..{c.max()}"
            )
    return jnp.asarray(codes, jnp.int32)


# --- streaming ---------------------------------------------------------------------------------


@jax.jit
def _encode_chunk(codec: Codec, state: dict, chunk: jax.Array):
    z, new = Encoder(codec.cfg.seanet).apply(
        {"params": codec.params["encoder"], "cache": state}, chunk, mutable=["cache"]
    )
    q = rvq.quantize(codec.params["quantizer"], codec.codebooks, codec.cfg.rvq, z, refine=True)
    return q.codes, new["cache"]


@jax.jit
def _decode_chunk(codec: Codec, state: dict, codes: jax.Array):
    zq = rvq.dequantize(codec.params["quantizer"], codec.codebooks, codec.cfg.rvq, codes)
    wav, new = Decoder(codec.cfg.seanet).apply(
        {"params": codec.params["decoder"], "cache": state}, zq, mutable=["cache"]
    )
    return wav, new["cache"]


def _zero_cache(module, variables: dict, example: jax.Array) -> dict:
    shapes = jax.eval_shape(lambda: module.apply(variables, example, mutable=["cache"])[1])
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])


def encode_stream(codec: Codec, chunk: Any, state: dict | None = None):
    """Encodes one chunk of a longer signal: (codes `[batch, chunk / hop, Q]`, state).

    Start with `state=None`; pass the returned state with the next chunk. Chunks are
    `[batch, samples]` with samples a multiple of the hop. The codes of all chunks, concatenated,
    equal `encode` of the whole signal (every convolution is causal).
    """
    chunk = jnp.asarray(chunk, jnp.float32)
    if chunk.ndim != 2 or chunk.shape[1] % codec.hop or chunk.shape[1] == 0:
        raise ValueError(
            f"stream chunks must be [batch, k * {codec.hop}] samples, got {chunk.shape}"
        )
    if state is None:
        enc = Encoder(codec.cfg.seanet)
        state = _zero_cache(enc, {"params": codec.params["encoder"]}, chunk)
    return _encode_chunk(codec, state, chunk)


def decode_stream(codec: Codec, codes: Any, state: dict | None = None):
    """Decodes one chunk of codes `[batch, frames, Q]`: (audio `[batch, frames * hop]`, state).
    Concatenated outputs equal `decode` of all the codes at once."""
    codes = _check_codes(codec, codes)
    if state is None:
        zq = jnp.zeros((*codes.shape[:2], codec.cfg.seanet.dim), jnp.float32)
        state = _zero_cache(Decoder(codec.cfg.seanet), {"params": codec.params["decoder"]}, zq)
    return _decode_chunk(codec, state, codes)


# --- from training ---------------------------------------------------------------------------


def from_state(cfg: CodecConfig, params: dict, model_state: dict) -> Codec:
    """A Codec from a trainer's params (by group) and model_state, as device arrays (numpy
    params, an importer's, would be copied in on every jitted call)."""
    return Codec(
        params=jax.device_put(params["generator"]),
        codebooks=jax.device_put(model_state["quantizer"]),
        cfg=cfg,
    )


def load(workdir: str, step: int | None = None) -> Codec:
    """The codec trained in `workdir` (its newest checkpoint, or `step`), config included."""
    from audiolm_jax.train.checkpoint import read_trained

    step, state, config = read_trained(workdir, "soundstream", "a codec", step)
    cfg = CodecConfig.from_config(config.codec)
    log.info("Loaded codec from %s (step %d): %s", workdir, step, describe(cfg))
    return from_state(cfg, state["params"], state["model_state"])


def levels_for_bitrate(codec: Codec, kbps: float) -> int:
    """The most RVQ levels whose bitrate stays within `kbps` (at least 1): EnCodec 24 kHz's
    1.5 / 3 / 6 / 12 / 24 kbps are 2 / 4 / 8 / 16 / 32 levels (as its `bandwidth` argument)."""
    per_level = codec.cfg.frame_rate * float(np.log2(codec.cfg.codebook_size)) / 1000
    return int(min(codec.levels, max(1, np.floor(kbps / per_level + 1e-9))))


def describe(cfg: CodecConfig) -> str:
    """One line: rates, levels, bitrate."""
    return (
        f"{cfg.sample_rate} Hz, hop {cfg.hop} ({cfg.frame_rate:g} frames/s), {cfg.levels} levels "
        f"x {cfg.codebook_size} codes = {cfg.bitrate / 1000:g} kbps"
    )
