"""What every importer shares: reading a Hugging Face checkpoint from disk (never the network),
taking its tensors by name with clear errors, folding weight norm, and writing the Orbax
checkpoint that the rest of the project loads like a trained one.

A checkpoint is a folder holding `config.json` and `model.safetensors` (or
`pytorch_model.bin`), as `save_pretrained` writes it, or the weights file itself with its
`config.json` beside it. Safetensors files are read with NumPy alone; `.bin` state dicts need
torch (`pip install torch`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
from typing import Any

import numpy as np

log = logging.getLogger("audiolm_jax")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointImportError(ValueError):
    """The file is not the model the importer expects: wrong model type, a tensor missing, a
    tensor of the wrong shape. The message names the file and the tensor."""


def _weight_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    for name in WEIGHT_FILES:
        if os.path.isfile(os.path.join(path, name)):
            return [os.path.join(path, name)]
    shards = sorted(glob.glob(os.path.join(path, "model-*-of-*.safetensors")))
    if shards:
        return shards
    raise FileNotFoundError(
        f"{path} holds no weights (looked for {', '.join(WEIGHT_FILES)} and "
        "model-*-of-*.safetensors)"
    )


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """name -> float32/int array of every tensor in the checkpoint at `path` (folder or file)."""
    out: dict[str, np.ndarray] = {}
    for f in _weight_files(path):
        if f.endswith(".safetensors"):
            from safetensors.numpy import load_file

            out.update(load_file(f))
        elif f.endswith((".bin", ".pt", ".pth")):
            try:
                import torch
            except ImportError as e:
                raise CheckpointImportError(
                    f"{f} is a PyTorch state dict; reading it needs torch (pip install torch), "
                    "or save the model with safetensors"
                ) from e
            sd = torch.load(f, map_location="cpu", weights_only=True)
            sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
            for k, v in sd.items():
                if hasattr(v, "numpy"):
                    v = v.detach()
                    out[k] = (v.float() if v.is_floating_point() else v).numpy()
        else:
            raise CheckpointImportError(f"{f}: unknown weights format (want .safetensors or .bin)")
    return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in out.items()}


def read_hf_config(path: str) -> dict:
    """The `config.json` of the checkpoint at `path` (folder, or file with config.json beside)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    f = os.path.join(folder, "config.json")
    if not os.path.isfile(f):
        raise FileNotFoundError(
            f"{folder} has no config.json; importers read the model's shape from it "
            "(save_pretrained writes it)"
        )
    with open(f, encoding="utf-8") as fh:
        return json.load(fh)


def check_model_type(hf_config: dict, expected: tuple[str, ...], path: str) -> None:
    """Raises CheckpointImportError when config.json's model_type is not one of `expected`."""
    got = hf_config.get("model_type")
    if got not in expected:
        raise CheckpointImportError(
            f"{path} holds a {got!r} model (config.json model_type); this importer reads "
            f"{' or '.join(repr(e) for e in expected)}"
        )


class Tensors:
    """A state dict taken tensor by tensor: `take` checks presence and shape and names the
    tensor and file on failure; `unused` lists what no importer step took."""

    def __init__(self, state: dict[str, np.ndarray], source: str, prefix: str = ""):
        self.state, self.source = state, source
        self.prefix = prefix
        self.taken: set[str] = set()

    def has(self, name: str) -> bool:
        return self.prefix + name in self.state

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        key = self.prefix + name
        if key not in self.state:
            near = [k for k in self.state if k.startswith(key.rsplit(".", 1)[0])][:5]
            hint = f"; tensors under that module: {near}" if near else ""
            raise CheckpointImportError(f"{self.source}: tensor {key!r} is missing{hint}")
        value = self.state[key]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise CheckpointImportError(
                f"{self.source}: tensor {key!r} has shape {tuple(value.shape)}, the config "
                f"(config.json) implies {tuple(shape)}"
            )
        self.taken.add(key)
        return value

    def weight_norm_parts(
        self, name: str, shape: tuple[int, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(g, v) of a weight-normalised module `name`, in either the
        parametrizations.weight.original0/1 or the weight_g/weight_v spelling; None when the
        module has a plain weight."""
        for g_name, v_name in (
            (
                f"{name}.parametrizations.weight.original0",
                f"{name}.parametrizations.weight.original1",
            ),
            (f"{name}.weight_g", f"{name}.weight_v"),
        ):
            if self.has(v_name):
                return self.take(g_name), self.take(v_name, shape)
        return None

    def weight_norm(self, name: str, shape: tuple[int, ...] | None = None, axis: int = 0):
        """The effective weight of module `name`: `name.weight`, or weight norm g * v / ||v||
        with the norm over every axis of v but `axis` (PyTorch's `dim`)."""
        parts = self.weight_norm_parts(name, shape)
        if parts is None:
            return self.take(f"{name}.weight", shape)
        return weight_norm_fold(*parts, self.prefix + name, axis=axis)

    def unused(self, ignore: tuple[str, ...] = ()) -> list[str]:
        return sorted(
            k
            for k in self.state
            if k.startswith(self.prefix) and k not in self.taken and not k.startswith(ignore)
        )

    def finish(self, ignore: tuple[str, ...] = ()) -> None:
        """Logs (does not fail on) tensors the importer did not use: training-only buffers are
        expected; anything else is worth a look."""
        left = self.unused(ignore)
        if left:
            log.warning(
                "%s: %d tensors not imported: %s%s",
                self.source,
                len(left),
                ", ".join(left[:8]),
                " ..." if len(left) > 8 else "",
            )


def weight_norm_fold(g: np.ndarray, v: np.ndarray, name: str = "", axis: int = 0) -> np.ndarray:
    """w = g * v / ||v||, the norm taken over every axis of v but `axis` (PyTorch's `dim`)."""
    axes = tuple(i for i in range(v.ndim) if i != axis)
    norm = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=axes, keepdims=True))
    if g.size != v.shape[axis]:
        raise CheckpointImportError(
            f"weight norm of {name!r}: g has {g.size} entries, v has {v.shape[axis]} along "
            f"axis {axis}"
        )
    shape = [1] * v.ndim
    shape[axis] = v.shape[axis]
    return (np.reshape(g, shape) * v / np.maximum(norm, 1e-12)).astype(np.float32)


def write_checkpoint(
    workdir: str, config: Any, params: dict, model_state: Any, *, source: str
) -> str:
    """Saves imported weights as step 0 of `<workdir>/checkpoints`, with `config` (the
    project config that rebuilds the model) in the meta, so `codec.load`, `semantic.load_model`
    and every workflow read it like a trained checkpoint. Returns the step folder."""
    import jax.numpy as jnp

    from audiolm_jax.train.checkpoint import Checkpointer

    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if os.path.isdir(directory) and os.listdir(directory):
        raise FileExistsError(
            f"{directory} already holds checkpoints; import into a fresh --workdir (nothing "
            "was written)"
        )
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "model_state": model_state,
    }
    from audiolm_jax.train.trainer import config_meta

    meta = {**config_meta(config), "step": 0, "imported_from": os.path.abspath(source)}
    ckpt = Checkpointer(workdir, keep=1, async_save=False)
    try:
        ckpt.save(0, state, {}, meta, wait=True)
    finally:
        ckpt.close()
    return os.path.join(directory, "0")
