"""audiolm-jax: AudioLM (Borsos et al. 2022, arXiv:2209.03143) in JAX/Flax.

    import jax
    from audiolm_jax import load_pipeline, sample, score

    pipe = load_pipeline("runs/quickstart/pipeline")    # codec, semantic tokenizer, 3 stages
    wav = sample(pipe, prompt=prompt_wav, seconds=10, rng=jax.random.key(0))

Importing the package imports neither TensorFlow nor the data pipeline; `sample`,
`load_pipeline` and `score` (audiolm_jax.sampling.pipeline) load on first use, as do the
submodules:

    from audiolm_jax.lm.transformer import Transformer, TransformerConfig
    from audiolm_jax.train.trainer import train
    from audiolm_jax import codec          # SoundStream: encode / decode / load
"""

__version__ = "0.1.0"

_LAZY = {
    "sample": "audiolm_jax.sampling.pipeline",
    "load_pipeline": "audiolm_jax.sampling.pipeline",
    "score": "audiolm_jax.sampling.pipeline",
    "Pipeline": "audiolm_jax.sampling.pipeline",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'audiolm_jax' has no attribute {name!r}")
