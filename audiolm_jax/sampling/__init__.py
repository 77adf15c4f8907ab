"""Pure-function samplers: `sample_tokens` continues one stage LM's tokens (a KV cache filled
in one compiled loop); `pipeline.sample` chains the three stages from a prompt to audio, with
`load_pipeline` and `score` beside it (also importable as `audiolm_jax.sample` etc.)."""

from audiolm_jax.sampling.lm import filter_logits, sample_tokens

__all__ = ["filter_logits", "sample_tokens"]
