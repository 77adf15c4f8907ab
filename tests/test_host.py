"""audiolm_jax.host.tune_malloc: XLA's CPU temporaries stop faulting in fresh pages per call."""

import subprocess
import sys

import pytest

from audiolm_jax import host
from tests.conftest import REPO

# semantic_tiny's train step at batch 8 x 256 (a ~100 MB temporary buffer per call), run in a
# fresh process: malloc's settings must precede JAX's threads.
_PROBE = """
import resource, sys
from audiolm_jax import host
print("applied", host.tune_malloc(sys.argv[1]))
import jax
from audiolm_jax import tasks
from audiolm_jax.config import load_config
from audiolm_jax.train.trainer import init_state, make_optimizers, make_train_step
c = load_config("semantic_tiny")
c.data.update(batch_size=8, seq_len=256)
model, source, _ = tasks.build(c)
batch = next(source)
txs, schedules = make_optimizers(c, model.groups, 1000)
state = init_state(model, txs, batch, seed=0)
step = jax.jit(make_train_step(model, txs, schedules), donate_argnums=0)
for _ in range(8):  # the heap grows to its steady size over the first few steps
    state, m = step(state, batch)
    jax.block_until_ready(m)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    state, m = step(state, batch)
    jax.block_until_ready(m)
print("faults", (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 5)
"""


def _probe(mode: str) -> tuple[bool, float]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    return lines["applied"] == "True", float(lines["faults"])


@pytest.mark.skipif(host._libc() is None, reason="glibc only (mallopt)")
def test_tuned_malloc_keeps_xla_temporaries_mapped():
    tuned, faults_tuned = _probe("on")
    plain, faults_plain = _probe("off")
    assert tuned and not plain
    # Untuned: the step's temporaries are a fresh mmap each call (~66,000 pages); tuned: none.
    assert faults_plain > 20000, faults_plain
    assert faults_tuned < faults_plain / 10, (faults_tuned, faults_plain)


def test_modes(monkeypatch):
    with pytest.raises(ValueError, match="auto, on, off"):
        host.tune_malloc("yes")
    monkeypatch.setattr(host, "_applied", None)
    assert host.tune_malloc("off") is False and host._applied is None
    # auto leaves malloc alone on a GPU / TPU host, judged without starting JAX's backends.
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert host.has_accelerator()
    assert host.tune_malloc("auto") is False and host._applied is None
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not host.has_accelerator()
