"""audiolm-jax: AudioLM (Borsos et al. 2022, arXiv:2209.03143) in JAX/Flax.

Importing the package imports neither TensorFlow nor the data pipeline; submodules load on use:

    from audiolm_jax.lm.transformer import Transformer, TransformerConfig
    from audiolm_jax.train.trainer import train
    from audiolm_jax import codec          # SoundStream: encode / decode / load
"""

__version__ = "0.1.0"
