"""Coordinated preemption on a 2-process job (CPU devices, gloo collectives): a SIGTERM to one
worker makes both save the same step and exit cleanly; the restarted pair resumes there and
ends with the parameters of an unbroken run."""

import json
import signal
import sys
import time

import jax
import numpy as np
from conftest import REPO, restore_state
from multihost import TINY_LM_FLAGS, run_job, start_job, wait_job

STEPS = 120
ARGS = [
    sys.executable,
    str(REPO / "launch.py"),
    *TINY_LM_FLAGS,
    f"--config.train.steps={STEPS}",
    "--config.train.log_every=1",
    "--config.train.eval_every=0",
    f"--config.train.checkpoint_every={STEPS}",
]
ENV = {"PYTHONPATH": str(REPO)}


def _wait_for_step(log_file, step: int, procs, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log_file.exists() and f"step {step}/{STEPS}" in log_file.read_text():
            return
        if any(p.poll() is not None for p in procs):
            raise AssertionError("a worker exited before the SIGTERM")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not logged in {timeout} s")


def test_sigterm_to_one_worker_saves_the_same_step_on_both_and_resumes(tmp_path):
    work = tmp_path / "preempted"
    cmd = [*ARGS, f"--workdir={work}"]
    procs = start_job(cmd, cwd=str(REPO), env=ENV)
    _wait_for_step(work / "log.txt", 5, procs)
    procs[1].send_signal(signal.SIGTERM)  # the non-primary worker gets the notice
    outs = wait_job(procs, cmd)
    for o in outs:
        assert o.returncode == 0, o.stderr[-3000:]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["stopped"] == "preempted"
    saved = summary["step"]
    assert 5 < saved < STEPS
    assert [p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()] == [str(saved)]
    # Both processes agreed on the step: each logs the coordinated save.
    msg = f"every process saves step {saved}"
    assert msg in (work / "log.txt").read_text()
    assert msg in (work / "log.process1.txt").read_text()

    outs = run_job(cmd, cwd=str(REPO), env=ENV)
    for o in outs:
        assert o.returncode == 0, o.stderr[-3000:]
    resumed = json.loads((work / "summary.json").read_text())
    assert resumed["stopped"] == "finished" and resumed["step"] == STEPS
    assert f"Resumed at step {saved}" in (work / "log.txt").read_text()

    ref = tmp_path / "unbroken"
    outs = run_job([*ARGS, f"--workdir={ref}"], cwd=str(REPO), env=ENV)
    for o in outs:
        assert o.returncode == 0, o.stderr[-3000:]
    a = restore_state(work / "checkpoints" / str(STEPS) / "state")
    b = restore_state(ref / "checkpoints" / str(STEPS) / "state")
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
