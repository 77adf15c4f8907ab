"""Resume: a run killed by SIGTERM and resumed equals an unbroken one, bit for bit; broken and
foreign checkpoints are handled without losing a file."""

import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, restore_state

from audiolm_jax import tasks
from audiolm_jax.train.checkpoint import ShapeMismatchError
from audiolm_jax.train.trainer import train

TINY = [
    "--config=semantic_tiny",
    "--config.lm.num_layers=1",
    "--config.lm.d_model=64",
    "--config.lm.d_ff=128",
    "--config.lm.dropout=0.1",
    "--config.data.batch_size=4",
    "--config.data.seq_len=32",
    "--config.train.log_every=1",
    "--config.train.eval_every=0",
    "--config.train.checkpoint_every=1000",
    "--config.train.log_batch_hashes=true",
]


def _cmd(workdir, steps):
    return [
        sys.executable,
        str(REPO / "launch.py"),
        *TINY,
        f"--workdir={workdir}",
        f"--config.train.steps={steps}",
    ]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _final_state(workdir, step):
    return restore_state(os.path.join(workdir, "checkpoints", str(step), "state"))


def test_sigterm_then_resume_equals_straight_run(tmp_path):
    n = 30
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    subprocess.run(_cmd(straight, n), check=True, cwd=REPO, env=_env(), capture_output=True)

    proc = subprocess.Popen(
        _cmd(broken, n), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    hashes = broken / "batch_hashes.txt"
    deadline = time.time() + 240
    while time.time() < deadline:
        if hashes.exists() and len(hashes.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0  # a clean exit after saving
    saved = sorted(int(s) for s in os.listdir(broken / "checkpoints") if s.isdigit())
    assert len(saved) == 1 and 5 <= saved[0] < n, saved
    assert "after SIGTERM" in (broken / "log.txt").read_text()

    subprocess.run(_cmd(broken, n), check=True, cwd=REPO, env=_env(), capture_output=True)
    assert (
        f"Resuming from checkpoint {broken}/checkpoints/{saved[0]}"
        in (broken / "log.txt").read_text()
    )
    # The same batches, in the same order, each seen once.
    assert hashes.read_text() == (straight / "batch_hashes.txt").read_text()
    a, b = _final_state(straight, n), _final_state(broken, n)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y)  # params, optimizer state, step, rng: bit for bit


def _tiny(config, steps):
    config.train.update(steps=steps, checkpoint_every=4, async_checkpoints=False, eval_every=0)
    return config


def test_truncated_newest_checkpoint_falls_back(tmp_path, tiny_lm_config, caplog):
    config = _tiny(tiny_lm_config, 8)
    train(config, str(tmp_path), *tasks.build(config))
    newest = tmp_path / "checkpoints" / "8"
    files = [p for p in newest.rglob("*") if p.is_file() and p.stat().st_size > 0]
    before = {p.relative_to(newest): p.stat().st_size for p in files}
    for p in files:  # truncate every data file of the newest checkpoint to half
        if "state" in p.parts:
            with open(p, "r+b") as f:
                f.truncate(p.stat().st_size // 2)

    config.train.steps = 8
    with caplog.at_level(logging.WARNING, logger="audiolm_jax"):
        result = train(config, str(tmp_path), *tasks.build(config))
    assert result.resumed_from == 4 and result.step == 8
    assert "could not be restored" in caplog.text and str(newest) in caplog.text
    # Nothing was deleted: the broken checkpoint was moved aside, every file still there.
    (moved,) = (tmp_path / "unreadable_checkpoints").iterdir()
    assert moved.name.startswith("8-")
    kept = {p.relative_to(moved) for p in moved.rglob("*") if p.is_file()}
    assert set(before) <= kept
    assert (tmp_path / "checkpoints" / "8").is_dir()  # re-trained and saved again


def test_checkpoint_from_other_config_names_shapes(tmp_path, tiny_lm_config):
    config = _tiny(tiny_lm_config, 4)
    train(config, str(tmp_path), *tasks.build(config))
    config.lm.d_model = 96
    with pytest.raises(ShapeMismatchError) as err:
        train(config, str(tmp_path), *tasks.build(config))
    msg = str(err.value)
    assert "different config" in msg and "params.model.embed.embedding" in msg
    assert "checkpoint (128, 64), config (128, 96)" in msg


def test_rerun_of_a_finished_run_reports_its_eval_metrics(tmp_path, tiny_lm_config):
    c = tiny_lm_config
    c.train.async_checkpoints = False
    first = train(c, str(tmp_path), *tasks.build(c))
    again = train(c, str(tmp_path), *tasks.build(c))
    assert again.step == first.step == 8 and again.resumed_from == 8
    assert again.eval_metrics["loss"] == pytest.approx(first.eval_metrics["loss"], rel=1e-5)
