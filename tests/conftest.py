"""Shared test set-up: JAX's persistent compilation cache, tiny configs, shared audio path."""

import os
from pathlib import Path

import jax
import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
jax.config.update("jax_compilation_cache_dir", str(CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def tiny_lm_config():
    """semantic_tiny shrunk to seconds: 1 layer, d 64, vocab 64."""
    from audiolm_jax.config import load_config

    c = load_config("semantic_tiny")
    c.lm.update(num_layers=1, num_heads=2, d_model=64, d_ff=128, vocab_size=128)
    c.data.update(vocab=64, batch_size=4, seq_len=32)
    c.train.update(
        steps=8, log_every=2, eval_every=4, eval_batches=1, checkpoint_every=4, keep_checkpoints=3
    )
    c.optimizer.update(warmup_steps=2)
    return c


def restore_state(path):
    """A saved TrainState as a tree of arrays on this process's first device, whatever the
    device layout it was saved from."""
    import orbax.checkpoint as ocp

    from audiolm_jax.train.checkpoint import single_device_target

    ckptr = ocp.StandardCheckpointer()
    meta = ckptr.metadata(str(path)).item_metadata
    return ckptr.restore(str(path), single_device_target(meta.tree))
