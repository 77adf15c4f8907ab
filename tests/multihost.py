"""A harness that runs N processes on this machine as one JAX job (CPU collectives via gloo,
coordinator on 127.0.0.1), so multi-host behaviour is testable without a pod.

    outs = run_job([sys.executable, "launch.py", ...], num_processes=2, devices_per_process=1)
"""

from __future__ import annotations

import os
import socket
import subprocess

# A one-layer semantic LM small enough for multi-process jobs on 2 CPU cores.
TINY_LM_FLAGS = [
    "--config=semantic_tiny",
    "--config.lm.num_layers=1",
    "--config.lm.d_model=64",
    "--config.lm.d_ff=128",
    "--config.data.batch_size=4",
    "--config.data.seq_len=32",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_job(
    cmd: list[str],
    *,
    num_processes: int = 2,
    devices_per_process: int = 1,
    cwd: str | None = None,
    env: dict | None = None,
) -> list[subprocess.Popen]:
    """Starts `cmd` once per process with JAX_COORDINATOR_ADDRESS/NUM_PROCESSES/PROCESS_ID set
    and returns the running processes (text pipes for stdout and stderr)."""
    port = free_port()
    base = {
        **os.environ,
        **(env or {}),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(num_processes),
    }
    return [
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**base, "JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(num_processes)
    ]


def wait_job(procs: list[subprocess.Popen], cmd: list[str], timeout: float = 600):
    """Each process's CompletedProcess (returncode, stdout, stderr); kills stragglers."""
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            outs.append(subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outs


def run_job(
    cmd: list[str],
    *,
    num_processes: int = 2,
    devices_per_process: int = 1,
    cwd: str | None = None,
    env: dict | None = None,
    timeout: float = 600,
):
    """Runs `cmd` as an N-process job to the end; returns each process's CompletedProcess."""
    procs = start_job(
        cmd, num_processes=num_processes, devices_per_process=devices_per_process, cwd=cwd, env=env
    )
    return wait_job(procs, cmd, timeout)
