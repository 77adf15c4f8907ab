"""`launch.py --dry_run`: will this config fit, and how is it laid out, before renting chips.

Builds the train state abstractly (`jax.eval_shape`), applies the config's mesh and logical
rules, and reports per device: parameter, optimizer-state, gradient and batch bytes, model FLOPs
per step (from shapes), and, where the step can be compiled for the target devices, XLA's memory
analysis of the compiled step (arguments, outputs, temporaries = activations and workspace).

Targets:
- the local devices (default): compiles the real step;
- `devices=N`: an abstract mesh of N devices, bytes from the shardings (no compile);
- `target="h100:8"` (h100, h200, a100): N GPUs, bytes and activations estimated from shapes;
- `target="v5e:4x4"` (any TPU topology name): abstract TPU devices from libtpu
  (`pip install -e ".[tpu_aot]"`); compiles the real step for that TPU ahead of time on this CPU.
  `target="2xv5e:4x4"`: two such slices joined by the data-centre network (multi-slice; the
  config's mesh.slices must be 2).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import jax
import numpy as np

from audiolm_jax.train import sharding
from audiolm_jax.train.trainer import (
    _peek,
    make_optimizers,
    make_train_step,
    state_shardings,
)

log = logging.getLogger("audiolm_jax")

# HBM per chip, GiB (Google Cloud TPU docs, "TPU versions"); GPUs by name.
HBM_GIB = {"v4": 32, "v5e": 16, "v5p": 95, "v6e": 32, "h100": 80, "h200": 141, "a100": 80}


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.2f} MiB"


def _gpu_target(target: str | None) -> tuple[str, int] | None:
    """`h100` or `h100:8` -> ("h100", 8); None for TPU topologies."""
    if not target:
        return None
    name, _, count = target.lower().partition(":")
    if name in ("h100", "h200", "a100"):
        return name, int(count or 8)
    return None


# Attention kernels that compile only for their own hardware (lm/transformer.py `attend`).
_KERNEL_PLATFORMS = {"cudnn": "gpu", "pallas": "tpu"}


def local_attention(config: Any, target: str | None) -> dict:
    """A GPU config (cuDNN attention) or a TPU one (Pallas) planned on this host's CPU: their
    kernels do not exist here, so shapes are traced and compiled with the default attention
    (same shapes and memory plan to within the attention workspace). Edits `config` in place
    and returns {field: "was -> now"} for the report; nothing when the target has the kernel.
    """
    if target and not _gpu_target(target):
        platform = "tpu"  # an ahead-of-time TPU compile: Pallas kernels lower, cuDNN does not
    else:  # traced (and compiled, without a GPU target) for this host's devices
        platform = jax.devices()[0].platform
    swapped = {}
    for section in ("lm", "w2v_bert"):
        sub = config.get(section)
        impl = sub.get("attention_impl") if sub is not None else None
        if impl in _KERNEL_PLATFORMS and _KERNEL_PLATFORMS[impl] != platform:
            sub.attention_impl = None
            swapped[f"{section}.attention_impl"] = f"{impl} -> default for {platform}"
            log.info(
                "%s.attention_impl=%s has no %s kernel; planning with the default attention.",
                section,
                impl,
                platform,
            )
    return swapped


def _tpu_devices(target: str):
    """Compile-only devices of a TPU topology: "v5e:8x8", or "2xv5e:8x8" for two slices."""
    try:
        from jax.experimental import topologies
    except ImportError as e:  # pragma: no cover - old jax
        raise RuntimeError(f"--target needs jax.experimental.topologies: {e}") from None
    slices, name = 1, target
    head, sep, rest = target.partition("x")
    if sep and head.isdigit():
        slices, name = int(head), rest
    try:
        topo = topologies.get_topology_desc(
            platform="tpu", topology_name=name, **({"num_slices": slices} if slices > 1 else {})
        )
    except Exception as e:
        raise RuntimeError(
            f"--target={target}: could not describe this TPU topology ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}). TPU ahead-of-time compiles need libtpu: "
            'pip install -e ".[tpu_aot]"'
        ) from None
    return topo.devices


def dry_run(
    config: Any, model, train_source, *, devices: int | None = None, target: str | None = None
) -> dict:
    """Reports (and returns) the per-device memory plan of `config`'s train step."""
    tcfg = config.train
    txs, schedules = make_optimizers(config, model.groups, int(tcfg.steps))
    batch = _peek(train_source)
    rules = sharding.rules_from_config(config)
    mesh_cfg = config.get("mesh") or {"data": -1}
    compile_devices = None
    gpu = _gpu_target(target)
    if gpu:
        name, count = gpu
        mesh = sharding.abstract_mesh(mesh_cfg, devices or count)
        where = f"{devices or count} x {name.upper()} (estimate from shapes, no compile)"
    elif target:
        compile_devices = _tpu_devices(target)
        slices = len({getattr(d, "slice_index", 0) for d in compile_devices})
        if slices != sharding.num_slices(mesh_cfg):
            raise ValueError(
                f"--target={target} has {slices} slice(s) but config.mesh.slices is "
                f"{sharding.num_slices(mesh_cfg)}; set --config.mesh.slices={slices}"
            )
        mesh = sharding.make_mesh(mesh_cfg, compile_devices)
        where = f"TPU {target} ({len(compile_devices)} chips)"
    elif devices and devices != jax.device_count():
        mesh = sharding.abstract_mesh(mesh_cfg, devices)
        where = f"{devices} devices (abstract; bytes from shardings, no compile)"
    else:
        compile_devices = jax.devices()
        mesh = sharding.make_mesh(mesh_cfg, compile_devices)
        where = f"{len(compile_devices)} local {compile_devices[0].platform} device(s)"

    with (
        jax.set_mesh(mesh) if compile_devices is not None else contextlib.nullcontext(),
        jax.sharding.use_abstract_mesh(mesh)
        if compile_devices is None
        else contextlib.nullcontext(),
    ):
        import flax.linen as nn

        with nn.logical_axis_rules(rules):
            state_sh, abstract = state_shardings(model, txs, batch, config.seed, mesh, rules)
    batch_sh = sharding.batch_sharding(mesh, rules)
    abstract_batch = {
        k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype, sharding=batch_sh)
        for k, v in batch.items()
    }
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params))
    params_b = sharding.per_device_bytes(abstract.params, state_sh.params)
    opt_b = sharding.per_device_bytes(abstract.opt_state, state_sh.opt_state)
    batch_b = sharding.per_device_bytes(abstract_batch, {k: batch_sh for k in abstract_batch})
    report = {
        "config": config.name,
        "where": where,
        "mesh": dict(zip(sharding.MESH_AXES, mesh.axis_sizes)),
        "parameters": n_params,
        "per_device_bytes": {
            "params": params_b,
            "optimizer": opt_b,
            "gradients": params_b,
            "batch": batch_b,
        },
        "model_flops_per_step": model.flops_per_step(batch),
    }
    act = model.activation_bytes(batch)
    if act is not None:
        rows = next(iter(abstract_batch.values())).shape[0]
        batch_shards = rows // batch_sh.shard_shape((rows,))[0]
        # With gradient accumulation only one micro-batch's activations are alive at a time.
        accum = int(tcfg.get("grad_accum", 1))
        report["per_device_bytes"]["activations_estimate"] = int(act / batch_shards / accum)
    if compile_devices is not None:
        t0 = time.time()
        step = jax.jit(
            make_train_step(model, txs, schedules, int(tcfg.get("grad_accum", 1))),
            in_shardings=(state_sh, batch_sh),
            out_shardings=(state_sh, None),
            donate_argnums=0,
        )
        with sharding.activate(mesh, rules):
            compiled = step.lower(abstract, abstract_batch).compile()
        mem = compiled.memory_analysis()
        if mem is not None:
            report["compiled"] = {
                "arguments": mem.argument_size_in_bytes,
                "outputs": mem.output_size_in_bytes,
                "temporaries": mem.temp_size_in_bytes,
                "aliased": mem.alias_size_in_bytes,
                "peak_estimate": mem.argument_size_in_bytes
                + mem.output_size_in_bytes
                + mem.temp_size_in_bytes
                - mem.alias_size_in_bytes,
                "compile_s": round(time.time() - t0, 1),
            }
    _advise(report, target)
    _log(report)
    return report


def _advise(report: dict, target: str | None) -> None:
    """Adds `fits` and, when it does not, the levers that would make it fit."""
    if not target:
        return
    chip = target.split(":")[0].lower()
    hbm = HBM_GIB.get(chip)
    peak = report.get("compiled", {}).get("peak_estimate")
    if peak is None and "activations_estimate" in report["per_device_bytes"]:
        b = report["per_device_bytes"]  # no compile (GPU targets): the estimate from shapes
        peak = (
            b["params"] + b["optimizer"] + b["gradients"] + b["batch"] + b["activations_estimate"]
        )
        report["peak_estimate_from_shapes"] = peak
    if hbm is None or peak is None:
        return
    report["hbm_bytes"] = hbm * 2**30
    report["fits"] = peak <= hbm * 2**30
    if not report["fits"]:
        b = report["per_device_bytes"]
        levers = []
        if b["params"] + b["optimizer"] > 0.3 * hbm * 2**30:
            levers.append("shard parameters and optimizer state further: raise config.mesh.fsdp")
        levers.append("recompute activations: --config.lm.remat=full (or dots_no_batch)")
        levers.append(
            "smaller per-device batch: lower config.data.batch_size or raise "
            "config.train.grad_accum"
        )
        report["levers"] = levers


def _log(r: dict) -> None:
    b = r["per_device_bytes"]
    lines = [
        f"Dry run of {r['config']} on {r['where']}, mesh {r['mesh']}",
        f"  parameters            {r['parameters']:,}",
        "  model FLOPs per step  "
        + (
            f"{r['model_flops_per_step']:.3e}"
            if r["model_flops_per_step"] is not None
            else "not counted for this model"
        ),
        "  per device:",
        f"    parameters          {_gib(b['params'])}",
        f"    optimizer state     {_gib(b['optimizer'])}",
        f"    gradients           {_gib(b['gradients'])}",
        f"    batch               {_gib(b['batch'])}",
    ]
    if "activations_estimate" in b:
        lines.append(f"    activations (est.)  {_gib(b['activations_estimate'])}")
    if "compiled" in r:
        c = r["compiled"]
        lines += [
            f"  compiled step (XLA memory analysis, {c['compile_s']} s to compile):",
            f"    arguments {_gib(c['arguments'])}, outputs {_gib(c['outputs'])}, "
            f"temporaries (activations, workspace) {_gib(c['temporaries'])}",
            f"    peak estimate       {_gib(c['peak_estimate'])}",
        ]
    if "fits" in r:
        lines.append(f"  fits in {_gib(r['hbm_bytes'])} of HBM: {'yes' if r['fits'] else 'NO'}")
        for lever in r.get("levers", []):
            lines.append(f"    lever: {lever}")
    log.info("\n".join(lines))
