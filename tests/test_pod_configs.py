"""The pod and GPU-node configs: each plans with `--dry_run` on this CPU in its own subprocess
(with the fake device count its mesh needs), says it fits the slice or node it names, and, in
the slow step, compiles for that slice (TPU ahead of time) or for 8 local devices (GPU)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import run_launch

from audiolm_jax.config import load_config
from audiolm_jax.train import sharding

TPU = ["semantic_tpu", "coarse_tpu", "fine_tpu", "soundstream_tpu", "w2v_bert_tpu"]
GPU = [n.replace("_tpu", "_gpu") for n in TPU]


def _dry_run(name: str, workdir, *args, devices: int = 1) -> dict:
    return _dry_run_args(workdir, f"--config={name}", *args, devices=devices)


def _fixed_devices(config) -> int:
    """Devices the mesh needs at least: every axis but the -1 one, times the slices."""
    sizes = [int(config.mesh.get(a, 1)) for a in sharding.MESH_AXES]
    n = 1
    for s in sizes:
        n *= s if s > 0 else 1
    return n * int(config.mesh.get("slices", 1))


def test_every_tpu_config_has_a_gpu_twin_and_names_its_target():
    for tpu, gpu in zip(TPU, GPU):
        a, b = load_config(tpu), load_config(gpu)
        assert a.target == "v5e:8x8" and b.target == "h100:8", (tpu, gpu)
        assert a.name == tpu and b.name == gpu
        assert sharding.mesh_shape(a.mesh, 64)[0] * _fixed_devices(a) == 64
        assert sharding.mesh_shape(b.mesh, 8)[0] * _fixed_devices(b) == 8
        # The same model and global batch: only the layout and kernels change.
        assert a.data.batch_size == b.data.batch_size
        if "lm" in a:
            assert b.lm.attention_impl == "cudnn"
            assert {**a.lm.to_dict(), "attention_impl": "cudnn"} == b.lm.to_dict()


@pytest.mark.slow
@pytest.mark.parametrize("name", TPU)
def test_tpu_config_plans_for_its_slice(name, tmp_path):
    config = load_config(name)
    chips = 64  # the v5e:8x8 slice every *_tpu config names
    r = _dry_run(name, tmp_path, f"--devices={chips}", devices=_fixed_devices(config))
    assert r["where"].startswith(f"{chips} devices")
    mesh = r["mesh"]
    assert mesh["data"] * mesh["fsdp"] * mesh["tensor"] == chips
    b = r["per_device_bytes"]
    hbm = 16 * 2**30  # v5e
    assert b["params"] + b["optimizer"] + b["gradients"] < 0.5 * hbm


@pytest.mark.slow
@pytest.mark.parametrize("name", GPU)
def test_gpu_config_fits_one_h100_node(name, tmp_path):
    r = _dry_run(name, tmp_path, "--target=h100:8", devices=8)
    assert r["mesh"]["data"] * r["mesh"]["fsdp"] * r["mesh"]["tensor"] == 8
    if "fits" in r:  # models with an activation estimate (the stage LMs)
        assert r["fits"], r


@pytest.mark.slow
@pytest.mark.parametrize("name", GPU[:3])
def test_stage_gpu_config_compiles_on_eight_local_devices(name, tmp_path):
    """The stage LMs' GPU layout (fsdp 8, micro-batches) compiles for 8 devices; cuDNN's
    kernel does not exist on a CPU, so the plan uses the default attention and says so."""
    r = _dry_run(name, tmp_path, devices=8)
    assert r["compiled"]["peak_estimate"] > 0
    assert r["attention_compiled_as"] == {"lm.attention_impl": "cudnn -> default for cpu"}


@pytest.mark.slow
@pytest.mark.parametrize("name", TPU)
def test_tpu_config_compiles_ahead_of_time_and_fits_its_slice(name, tmp_path):
    import libtpu  # noqa: F401  (.ci/run installs .[tpu_aot]; missing is a failure)

    config = load_config(name)
    r = _dry_run(name, tmp_path, f"--target={config.target}")
    assert r["where"] == "TPU v5e:8x8 (64 chips)"
    assert r["compiled"]["peak_estimate"] > 0
    assert r["fits"], r


_TINY = [
    "--config=semantic_tiny",
    "--config.lm.num_layers=2",
    "--config.data.seq_len=256",
]


@pytest.mark.slow
def test_pallas_attention_compiles_sharded_for_tpu_ahead_of_time(tmp_path):
    """lm.attention_impl=pallas (with RoPE) lowers the flash kernel per shard for a v5e:2x2
    slice with data x fsdp sharding."""
    import libtpu  # noqa: F401

    r = _dry_run_args(
        tmp_path,
        *_TINY,
        "--target=v5e:2x2",
        "--config.mesh.fsdp=2",
        "--config.lm.attention_impl=pallas",
        "--config.lm.position=rope",
    )
    assert r["mesh"] == {"data": 2, "fsdp": 2, "tensor": 1}
    assert r["compiled"]["peak_estimate"] > 0 and "attention_compiled_as" not in r


@pytest.mark.slow
def test_multi_slice_mesh_compiles_for_two_tpu_slices(tmp_path):
    import libtpu  # noqa: F401

    r = _dry_run_args(
        tmp_path, *_TINY, "--target=2xv5e:2x2", "--config.mesh.fsdp=4", "--config.mesh.slices=2"
    )
    assert r["where"] == "TPU 2xv5e:2x2 (8 chips)"
    assert r["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
    assert r["compiled"]["peak_estimate"] > 0


def test_multi_slice_target_needs_matching_slices(tmp_path):
    pytest.importorskip("libtpu")
    out = _launch(tmp_path, *_TINY, "--dry_run", "--target=2xv5e:2x2")
    assert out.returncode == 2
    assert "--config.mesh.slices=2" in out.stderr


def test_multi_slice_mesh_keeps_each_slice_inside_one_data_block():
    """mesh.slices=2 on 8 devices: the data axis's first half is one slice, the second the
    other, so fsdp all-gathers never cross slices."""
    script = (
        "from audiolm_jax.train import sharding\n"
        "m = sharding.make_mesh({'data': -1, 'fsdp': 2, 'slices': 2})\n"
        "print([[d.id for d in row] for row in m.devices[:, :, 0]])\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = eval(out.stdout.strip().splitlines()[-1])
    assert len(rows) == 4 and all(len(r) == 2 for r in rows)
    first, second = {i for r in rows[:2] for i in r}, {i for r in rows[2:] for i in r}
    assert first == {0, 1, 2, 3} and second == {4, 5, 6, 7}
    with pytest.raises(ValueError, match="must divide the data axis"):
        sharding.make_mesh({"data": 1, "fsdp": 1, "slices": 2}, [object()])


def _launch(workdir, *args, devices: int = 1):
    return run_launch(
        *args,
        f"--workdir={workdir}",
        timeout=900,
        env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"},
    )


def _dry_run_args(workdir, *args, devices: int = 1) -> dict:
    out = _launch(workdir, "--dry_run", *args, devices=devices)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((workdir / "dry_run.json").read_text())
