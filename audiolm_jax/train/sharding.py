"""Meshes and logical axis rules: parallelism is a config edit, never a code edit.

Every parameter and key activation carries logical names (batch, length, embed, heads, kv, mlp,
vocab, layers, ...). `config.mesh` sizes the mesh axes (data, fsdp, tensor; -1 = the devices
left over) and `config.sharding.rules` maps each logical name to mesh axes:

    mesh:  data=-1, fsdp=1, tensor=1          # pure data parallelism on every device
    rules: batch -> (data, fsdp), embed -> fsdp, mlp/heads/vocab -> tensor

FSDP shards parameters and optimizer state along `embed` over the `fsdp` axis (and the batch
over both data axes); tensor parallelism splits heads, FFN and vocabulary over `tensor`.

Multi-slice (several TPU slices joined by the data-centre network, or GPU nodes joined by
InfiniBand): `config.mesh.slices = S` splits the `data` axis S ways across slices, so only the
gradient all-reduce crosses the slow network while fsdp/tensor traffic stays on each slice's
fast interconnect (the layout of maxtext's `dcn_data_parallelism`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
_AUTO = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)

# The default rules (config.sharding.rules); a logical name not listed is replicated.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("vocab", "tensor"),
    ("kv", None),
    ("length", None),
    ("layers", None),
    ("relpos_buckets", None),
    ("conv_kernel", None),
    ("conv_width", None),
    ("conv_in", None),
    ("conv_out", None),
)


def mesh_shape(mesh_cfg: Any, num_devices: int) -> tuple[int, ...]:
    """(data, fsdp, tensor) sizes from config, one -1 filled with the devices left over."""
    sizes = [int(mesh_cfg.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(
            f"config.mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}"
        )
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(
                f"config.mesh {dict(zip(MESH_AXES, sizes))}: {num_devices} devices are not "
                f"divisible by {known}"
            )
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"config.mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
            f"have {num_devices}"
        )
    return tuple(sizes)


def num_slices(mesh_cfg: Any) -> int:
    """`config.mesh.slices` (default 1): how many slices/nodes the data axis spans."""
    get = mesh_cfg.get if hasattr(mesh_cfg, "get") else lambda k, d=None: d
    return int(get("slices", 1) or 1)


def slice_groups(devices: Sequence[Any], slices: int) -> list[list[Any]]:
    """`devices` split into `slices` equal groups joined by the slow network: by the TPU
    runtime's `slice_index` where devices have one, else by process (one GPU node = one
    group), else into contiguous runs of device ids (fake CPU devices in tests)."""
    n = len(devices)
    if n % slices:
        raise ValueError(f"config.mesh.slices={slices} does not divide {n} devices")
    for key in ("slice_index", "process_index"):
        ids = [getattr(d, key, None) for d in devices]
        if None not in ids and len(set(ids)) == slices:
            groups = [[d for d in devices if getattr(d, key) == i] for i in sorted(set(ids))]
            if len({len(g) for g in groups}) == 1:
                return groups
    ordered = sorted(devices, key=lambda d: d.id)
    size = n // slices
    return [ordered[i * size : (i + 1) * size] for i in range(slices)]


def make_mesh(mesh_cfg: Any, devices: Sequence[Any] | None = None) -> Mesh:
    """The device mesh of `config.mesh` over `devices` (default: all devices of the job).

    With `mesh.slices` = S > 1 the data axis is S blocks, one per slice (slice_groups), each
    block laid out over its slice's interconnect."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(mesh_cfg, len(devices))
    slices = num_slices(mesh_cfg)
    # Auto axes: XLA propagates shardings from our annotations (Explicit axes, the default of
    # jax.make_mesh here, would make every activation constraint an assertion instead).
    if slices == 1:
        return jax.make_mesh(shape, MESH_AXES, axis_types=_AUTO, devices=devices)
    if shape[0] % slices:
        raise ValueError(
            f"config.mesh.slices={slices} must divide the data axis, which is {shape[0]} "
            f"(mesh {dict(zip(MESH_AXES, shape))})"
        )
    from jax.experimental import mesh_utils

    per_slice = (shape[0] // slices, *shape[1:])
    blocks = []
    for group in slice_groups(devices, slices):
        if group[0].platform == "tpu":
            blocks.append(mesh_utils.create_device_mesh(per_slice, group))
        else:
            blocks.append(np.asarray(group, dtype=object).reshape(per_slice))
    return Mesh(np.concatenate(blocks, axis=0), MESH_AXES, axis_types=_AUTO)


def abstract_mesh(mesh_cfg: Any, num_devices: int) -> AbstractMesh:
    """A mesh of `num_devices` that needs no devices: for dry runs of a pod on a laptop."""
    return AbstractMesh(mesh_shape(mesh_cfg, num_devices), MESH_AXES, axis_types=_AUTO)


def rules_from_config(config: Any) -> tuple[tuple[str, Any], ...]:
    """`config.sharding.rules` as flax logical axis rules (tuples), or the defaults."""
    sharding = config.get("sharding") if hasattr(config, "get") else None
    rules = sharding.get("rules") if sharding is not None else None
    if not rules:
        return DEFAULT_RULES
    out = []
    for name, axes in rules:
        axes = tuple(axes) if isinstance(axes, (list, tuple)) else axes
        for a in axes if isinstance(axes, tuple) else (axes,):
            if a is not None and a not in MESH_AXES:
                raise ValueError(
                    f"config.sharding.rules: {name} -> {a!r}; mesh axes are {MESH_AXES}"
                )
        out.append((name, axes))
    return tuple(out)


def logical_shardings(specs: Any, mesh: Mesh | AbstractMesh, rules) -> Any:
    """NamedShardings for a tree of logical PartitionSpecs (None leaves: replicated)."""

    def one(spec):
        spec = spec if isinstance(spec, P) else P()
        return NamedSharding(mesh, nn.logical_to_mesh_axes(tuple(spec), rules))

    return jax.tree.map(one, specs, is_leaf=lambda x: isinstance(x, P) or x is None)


def batch_sharding(mesh: Mesh | AbstractMesh, rules) -> NamedSharding:
    """Leading (batch) axis over the rules' `batch` mesh axes, the rest replicated."""
    return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch",), rules))


@contextlib.contextmanager
def activate(mesh: Mesh, rules):
    """Makes `mesh` and `rules` current for tracing (activation constraints read them)."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def global_batch(batch: dict, sharding: NamedSharding) -> dict:
    """This host's slice of the batch -> global jax.Arrays laid out by `sharding`.

    Each process passes only its own rows (`process_count` hosts each feed batch/hosts rows).
    """
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


def per_device_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes one device holds of a tree of ShapeDtypeStructs under `shardings`."""
    total = 0
    for leaf, sh in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
        total += math.prod(sh.shard_shape(leaf.shape)) * np.dtype(leaf.dtype).itemsize
    return total
