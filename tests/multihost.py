"""A harness that runs N processes on this machine as one JAX job (CPU collectives via gloo,
coordinator on 127.0.0.1), so multi-host behaviour is testable without a pod.

    outs = run_job([sys.executable, "launch.py", ...], num_processes=2, devices_per_process=1)
"""

from __future__ import annotations

import os
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(
    cmd: list[str],
    *,
    num_processes: int = 2,
    devices_per_process: int = 1,
    cwd: str | None = None,
    env: dict | None = None,
    timeout: float = 600,
):
    """Starts `cmd` once per process with JAX_COORDINATOR_ADDRESS/NUM_PROCESSES/PROCESS_ID set;
    returns each process's CompletedProcess-like (returncode, stdout, stderr)."""
    port = free_port()
    base = {
        **os.environ,
        **(env or {}),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}",
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(num_processes),
    }
    procs = [
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
