"""Sharding by config: on 8 fake CPU devices, data=2 x fsdp=2 x tensor=2 trains the same model
as one device (dropout included), and each device holds the shard the rules promise."""

import json
import os
import subprocess
import sys

import pytest

from audiolm_jax.train import sharding
from conftest import REPO


def test_mesh_shape_fills_minus_one_and_names_errors():
    assert sharding.mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
    with pytest.raises(ValueError, match="needs 16 devices, have 8"):
        sharding.mesh_shape({"data": 4, "fsdp": 2, "tensor": 2}, 8)
    with pytest.raises(ValueError, match="not divisible by 3"):
        sharding.mesh_shape({"data": -1, "fsdp": 3}, 8)


def test_eight_devices_equal_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
    out = subprocess.run([sys.executable, str(REPO / "tests" / "sharded_check.py")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    assert r["loss_one"] == pytest.approx(r["loss_many"], rel=1e-5)
    assert r["eval_one"] == pytest.approx(r["eval_many"], rel=1e-5)
    assert r["max_param_diff"] < 1e-5
    s = r["shards"]
    # [layers, embed, mlp]: embed over fsdp (2), mlp over tensor (2).
    assert s["wi"] == [[2, 64, 128], [2, 32, 64]]
    # [layers, embed, heads, kv]: embed over fsdp, heads over tensor.
    assert s["query"] == [[2, 64, 4, 16], [2, 32, 2, 16]]
    # [vocab, embed] and [embed, vocab]: vocab over tensor, embed over fsdp.
    assert s["embed"] == [[128, 64], [64, 32]]
    assert s["logits"] == [[64, 128], [32, 64]]
    assert s["wi_adam_mu"] == s["wi"]  # optimizer state sharded like its parameter
    assert r["devices_per_param"] == 8
