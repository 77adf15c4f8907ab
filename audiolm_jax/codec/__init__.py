"""SoundStream: the acoustic tokenizer (causal SEANet encoder/decoder, residual vector quantizer,
discriminators). The library API is `encode`, `decode`, `encode_stream`, `decode_stream`, `load`."""

from audiolm_jax.codec.api import (
    Codec,
    decode,
    decode_stream,
    describe,
    encode,
    encode_stream,
    from_state,
    load,
)

__all__ = [
    "Codec",
    "decode",
    "decode_stream",
    "describe",
    "encode",
    "encode_stream",
    "from_state",
    "load",
]
