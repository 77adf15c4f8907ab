"""Shared helpers for benchmark scripts: timing medians, the machine's matmul peak, reporting.

Machines are noisy (this project's CI machines are 2-core VMs with busy neighbours), so every
script measures its baseline in the same run, interleaved with the measured code, and reports
medians.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np


def add_malloc_flag(parser) -> None:
    """`--malloc auto|on|off`: audiolm_jax.host.tune_malloc's mode (launch.py's --malloc;
    default off, as there)."""
    parser.add_argument(
        "--malloc",
        choices=("auto", "on", "off"),
        default="off",
        help="glibc malloc tuning of audiolm_jax.host.tune_malloc, as launch.py --malloc applies "
        "it (auto: on without a GPU/TPU); peers get the same settings",
    )


def setup_malloc(mode: str) -> dict[str, str]:
    """Applies `host.tune_malloc(mode)` to this process (call before any JAX computation) and
    returns the environment that gives a peer process the same settings ({} when off)."""
    from audiolm_jax import host

    return dict(host.MALLOC_ENV) if host.tune_malloc(mode) else {}


def median_time(
    fn: Callable[[], object], repeats: int, warmup: int = 1
) -> tuple[float, list[float]]:
    """Median wall seconds of `fn()` (which must block until its work is done)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times


def matmul_peak_fn(n: int = 2048, dtype: str = "float32"):
    """A jitted n x n matmul and its FLOPs: the machine's practical peak for our ratios. dtype
    "bfloat16": bf16 operands accumulated in fp32 (the peak of `lm.matmul_dtype=bfloat16`;
    5x the fp32 one on a CPU with AMX)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()
    return (lambda: f(a).block_until_ready()), 2.0 * n**3


def copy_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """This machine's memory copy bandwidth in bytes/s (bytes read + bytes written by a
    `numpy.copyto` of a `megabytes` array, median of `repeats`): the limit of a decoding step
    that reads every weight once."""
    src = np.ones(megabytes * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    t, _ = median_time(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / t


def read_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes/s at which a jitted matrix-vector product streams a `megabytes` float32 matrix
    (every thread XLA uses; median of `repeats`): the rate a decoding step can read that many
    bytes of weights at when nothing else limits it. Size it like the weights: a matrix that
    fits the last-level cache (260 MB on the 2026-11-28 VM) reads faster than DRAM. Higher than
    `copy_bandwidth`, which is one thread and writes as much as it reads."""
    import jax
    import jax.numpy as jnp

    n = megabytes * 2**20 // 4 // 1024
    a = jnp.ones((n, 1024), jnp.float32)
    v = jnp.ones((1024,), jnp.float32)
    f = jax.jit(lambda a, v: a @ v)
    t, _ = median_time(lambda: f(a, v).block_until_ready(), repeats, warmup=1)
    return a.nbytes / t


def machine() -> str:
    """`2 cores x86_64, Linux 6.x, jax 0.10.2 cpu`."""
    import jax

    return (
        f"{os.cpu_count()} cores {platform.machine()}, {platform.system()} "
        f"{platform.release().split('-')[0]}, jax {jax.__version__} {jax.default_backend()}"
    )


def report(name: str, row: dict) -> None:
    """Prints the row as JSON and appends it to benchmarks/results.jsonl."""
    row = {
        "benchmark": name,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        **row,
    }
    line = json.dumps(row)
    print(line)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.jsonl")
    with open(out, "a") as f:
        f.write(line + "\n")
