"""Joining a multi-process JAX job (TPU pod workers, GPU nodes, or processes on one machine).

`maybe_initialize()` runs `jax.distributed.initialize()` when this process is one of many:
- explicitly, from JAX_COORDINATOR_ADDRESS (host:port), JAX_NUM_PROCESSES, JAX_PROCESS_ID;
- on Cloud TPU pods and SLURM, where JAX finds these itself (AUDIOLM_DISTRIBUTED=auto).
On CPUs the processes talk through gloo collectives (used by the tests' 2-process harness).
It must run before anything touches a JAX device.
"""

from __future__ import annotations

import os

import jax


def maybe_initialize() -> bool:
    """Initializes jax.distributed if the environment asks for it; True if it did."""
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        num = int(os.environ["JAX_NUM_PROCESSES"])
        pid = int(os.environ["JAX_PROCESS_ID"])
        if os.environ.get("JAX_PLATFORMS", "cpu").startswith("cpu") or not _has_accelerator():
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    elif os.environ.get("AUDIOLM_DISTRIBUTED") == "auto":
        jax.distributed.initialize()
    else:
        return False
    return True


def describe() -> str:
    """`Process 0 of 2; 1 local of 2 global devices (cpu).`"""
    return (
        f"Process {jax.process_index()} of {jax.process_count()}; "
        f"{jax.local_device_count()} local of {jax.device_count()} global devices "
        f"({jax.devices()[0].platform})."
    )


def _has_accelerator() -> bool:
    # Checked without initializing a backend: a lent GPU/TPU sets one of these.
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("TPU_NAME"))


def is_primary() -> bool:
    """True on the process that writes logs, TensorBoard events and reports."""
    return jax.process_index() == 0
