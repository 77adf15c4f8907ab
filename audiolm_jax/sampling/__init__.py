"""Pure-function samplers: `sample_tokens` for one stage LM (the three-stage `sample()` that
turns a prompt into audio builds on it)."""

from audiolm_jax.sampling.lm import filter_logits, sample_tokens

__all__ = ["filter_logits", "sample_tokens"]
