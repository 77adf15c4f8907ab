"""Shared test set-up: JAX's persistent compilation cache, tiny configs, shared audio path."""

import json
import os
import subprocess
import sys
from pathlib import Path

# The tests run on the CPU. With libtpu installed (`.[tpu_aot]`, for the TPU ahead-of-time
# compiles) JAX would otherwise probe for TPU chips in this process and hold
# /tmp/libtpu_lockfile, and the launch.py subprocesses that compile for a TPU slice then fail
# to load libtpu (.ci/run sets the same).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
jax.config.update("jax_compilation_cache_dir", str(CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_launch(*args, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python launch.py ARGS` from the repository root, output captured; `env` adds to the
    environment (e.g. XLA_FLAGS for a fake device count)."""
    return subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def launch_summary(*args, timeout: float = 600) -> dict:
    """`run_launch` that must succeed; returns the JSON summary launch.py prints."""
    out = run_launch(*args, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout[out.stdout.index("{") :])


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


def eight_device_result(script: str) -> dict:
    """Runs tests/<script> with 8 fake CPU devices (XLA_FLAGS set before jax starts) and
    returns the JSON it prints on its `RESULT ` line."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "PYTHONPATH": f"{REPO}:{REPO / 'tests'}",
    }
    out = subprocess.run(
        [sys.executable, str(REPO / "tests" / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])
