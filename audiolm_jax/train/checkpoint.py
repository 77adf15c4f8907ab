"""Orbax checkpoints of the train state, the data position and the config.

- Async saves (the trainer calls `save` every `train.checkpoint_every` steps), keep-last-K.
- Resume from the newest checkpoint that restores. One that fails (truncated, half-written) is
  reported with its path, moved aside to `<workdir>/unreadable_checkpoints/` (nothing is deleted)
  and the previous one is tried.
- A checkpoint written by another config refuses to load, naming the mismatched shapes.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger("audiolm_jax")


class ShapeMismatchError(ValueError):
    """The checkpoint's arrays do not have the shapes the current config builds."""


def _path_name(path: tuple) -> str:
    """`opt_state.model.1.0.mu.w`: the same name for a dataclass field, dict key or tuple index."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
    return ".".join(parts)


def _flat_shapes(tree: Any) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path_name(path): tuple(np.shape(leaf)) for path, leaf in flat}


def _metadata_shapes(meta: Any) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(
        meta, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict)
    )[0]
    return {_path_name(path): tuple(leaf.shape) for path, leaf in flat}


def check_shapes(saved: dict[str, tuple], expected: dict[str, tuple], where: str) -> None:
    """Raises ShapeMismatchError listing every array whose shape (or presence) differs."""
    problems = []
    # Parameters first: optimizer moments mirror them and say nothing new.
    for key in sorted(set(saved) | set(expected), key=lambda k: (not k.startswith("params."), k)):
        a, b = saved.get(key), expected.get(key)
        if a != b:
            problems.append(
                f"  {key}: checkpoint {a if a is not None else 'absent'}, "
                f"config {b if b is not None else 'absent'}"
            )
    if problems:
        shown = "\n".join(problems[:20]) + (
            f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        raise ShapeMismatchError(
            f"checkpoint {where} was written by a different config; {len(problems)} arrays "
            f"differ:\n{shown}\nUse the config it was trained with, or a fresh --workdir."
        )


class Checkpointer:
    """Saves and restores {state, data position, config} under `<workdir>/checkpoints`."""

    def __init__(self, workdir: str, *, keep: int, async_save: bool = True):
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=1,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._open()

    def _open(self) -> None:
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=self._options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(
        self, step: int, state: Any, data_state: dict, meta: dict, *, wait: bool = False
    ) -> None:
        """Saves (asynchronously unless `wait`); a step already on disk is left as it is."""
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        if wait:
            self.manager.wait_until_finished()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _set_aside(self, step: int) -> str:
        dest_root = os.path.join(self.workdir, "unreadable_checkpoints")
        os.makedirs(dest_root, exist_ok=True)
        dest = os.path.join(dest_root, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(self._step_dir(step), dest)
        self.manager.close()
        self._open()
        return dest

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict, dict] | None:
        """(step, state, data_state, meta) of the newest readable checkpoint, or None.

        `abstract_state` is a tree of `jax.ShapeDtypeStruct` (with shardings) to restore into.
        """
        expected = _flat_shapes(abstract_state)
        for step in reversed(self.steps()):
            where = self._step_dir(step)
            try:
                meta = self.manager.item_metadata(step)
                saved = _metadata_shapes(meta["state"])
            except Exception as e:  # unreadable metadata: treat as a broken checkpoint
                saved, err = None, e
            if saved is not None:
                check_shapes(
                    saved, expected, where
                )  # a config mismatch is an error, not a fallback
                try:
                    out = self.manager.restore(
                        step,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(abstract_state),
                            data=ocp.args.JsonRestore(),
                            meta=ocp.args.JsonRestore(),
                        ),
                    )
                    log.info("Resuming from checkpoint %s (step %d).", where, step)
                    return step, out["state"], dict(out["data"]), dict(out["meta"])
                except ShapeMismatchError:
                    raise
                except Exception as e:
                    err = e
            moved = self._set_aside(step)
            log.warning(
                "Checkpoint %s could not be restored (%s: %s); moved it to %s and trying the "
                "previous one.",
                where,
                type(err).__name__,
                str(err).splitlines()[0][:200],
                moved,
            )
        return None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def single_device_target(metadata: Any) -> Any:
    """ShapeDtypeStructs on this process's first device for a saved tree's array metadata:
    restores a checkpoint whatever device layout it was saved from."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        metadata,
        is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict),
    )


def read_checkpoint(workdir: str, step: int | None = None) -> tuple[int, Any, dict]:
    """(step, state, meta) of a checkpoint in `workdir` for inference: the saved TrainState as
    a tree of arrays (dicts) on this process's first device, whatever layout it was saved from,
    and the meta (its `config` is the training config). Newest step unless `step` is given.
    Read-only: nothing in the workdir is moved or written."""
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{workdir} holds no checkpoints (no {directory})")
    manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"{directory} holds no finished checkpoint")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(f"{directory} has no step {step}; it has {steps}")
        target = single_device_target(manager.item_metadata(step)["state"])
        out = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return step, out["state"], dict(out["meta"])
    finally:
        manager.close()


def read_trained(workdir: str, model: str, what: str, step: int | None = None):
    """(step, state, training config) of the `config.model == model` run in `workdir` (newest
    checkpoint, or `step`; see `read_checkpoint`). Another model's workdir is a ValueError
    naming both (`what` names the expected one in words, e.g. "a codec")."""
    import ml_collections

    step, state, meta = read_checkpoint(workdir, step)
    config = ml_collections.ConfigDict(meta["config"])
    if config.get("model") != model:
        raise ValueError(
            f"{workdir} holds a {config.get('model')!r} model, not {what} (model={model!r})"
        )
    return step, state, config
