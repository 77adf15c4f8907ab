"""SoundStream: the acoustic tokenizer (causal SEANet encoder/decoder, residual vector quantizer,
discriminators). The library API is `encode`, `decode`, `encode_stream`, `decode_stream`, `load`,
`levels_for_bitrate`, `resynthesize`. Imported EnCodec checkpoints load the same way
(audiolm_jax/importers)."""

from audiolm_jax.codec.api import (
    Codec,
    decode,
    decode_stream,
    describe,
    encode,
    encode_stream,
    from_state,
    levels_for_bitrate,
    load,
    resynthesize,
)

__all__ = [
    "Codec",
    "decode",
    "decode_stream",
    "describe",
    "encode",
    "encode_stream",
    "from_state",
    "levels_for_bitrate",
    "load",
    "resynthesize",
]
