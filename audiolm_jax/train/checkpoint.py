"""Orbax checkpoints of the train state, the data position and the config.

- Async saves (the trainer calls `save` every `train.checkpoint_every` steps), keep-last-K.
- Resume from the newest checkpoint that restores. One that fails (truncated, half-written) is
  reported with its path, moved aside to `<workdir>/unreadable_checkpoints/` (nothing is deleted)
  and the previous one is tried.
- A checkpoint written by another config refuses to load, naming the mismatched shapes.
- Sources that stream through tf.data (`audiolm_jax.data.pipeline.CacheSource`) also have their
  iterator saved, per process (`DataIteratorHandler`), so a resumed run continues with exactly
  the next batch; other sources see none of this.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from audiolm_jax.train import files

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


ITERATOR_ITEM = "data_iterator"


def _process_dir() -> str:
    return f"process_{jax.process_index()}-of-{jax.process_count()}"


class DataIteratorHandler(ocp.CheckpointHandler):
    """Saves a tf.data iterator per process: `<item>/process_<i>-of-<n>/iterator.*`, written by
    `tf.train.Checkpoint(iterator=it)` (every op in the pipeline must be a TF-graph op).

    Restore reads this process's iterator into the one given and returns True, or returns False
    when the checkpoint holds none for this process and process count (then the source decides
    how to continue)."""

    def save(self, directory, args: DataIteratorSave) -> None:
        import tensorflow as tf

        path = os.path.join(os.fspath(directory), _process_dir())
        tf.io.gfile.makedirs(path)
        tf.train.Checkpoint(iterator=args.iterator).write(os.path.join(path, "iterator"))

    def restore(self, directory, args: DataIteratorRestore) -> bool:
        import tensorflow as tf

        path = os.path.join(os.fspath(directory), _process_dir())
        if not tf.io.gfile.isdir(path):
            return False
        status = tf.train.Checkpoint(iterator=args.iterator).read(os.path.join(path, "iterator"))
        status.assert_consumed()
        return True


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    iterator: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    iterator: Any


class Checkpointer:
    """Saves and restores {state, data position, config} under `<workdir>/checkpoints`.

    `iterator_source`: a data source with `iterator_checkpoint()` (the tf.data iterator to
    save) and `iterator_for_restore(data_state)` (the iterator to read a saved one into, or
    None); its iterator is saved with every checkpoint and read back on restore, and the
    restored data state then says `iterator_restored: True`.
    """

    def __init__(
        self, workdir: str, *, keep: int, async_save: bool = True, iterator_source: Any = None
    ):
        self.workdir = workdir if files.is_remote(workdir) else os.path.abspath(workdir)
        self._iterator_source = iterator_source
        self.directory = files.join(self.workdir, "checkpoints")
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=1,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._open()

    def _open(self) -> None:
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        }
        if self._iterator_source is not None:
            handlers[ITERATOR_ITEM] = DataIteratorHandler()
        self.manager = ocp.CheckpointManager(
            self.directory, options=self._options, item_handlers=handlers
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
        items = dict(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta),
        )
        if self._iterator_source is not None:
            items[ITERATOR_ITEM] = DataIteratorSave(self._iterator_source.iterator_checkpoint())
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        if wait:
            self.manager.wait_until_finished()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def _step_dir(self, step: int) -> str:
        return files.join(self.directory, str(step))

    def _set_aside(self, step: int) -> str:
        dest_root = files.join(self.workdir, "unreadable_checkpoints")
        files.makedirs(dest_root)
        dest = files.join(dest_root, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        files.move(self._step_dir(step), dest)
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
                    data_state = self._restore_iterator(step, dict(out["data"]))
                    return step, out["state"], data_state, dict(out["meta"])
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

    def _restore_iterator(self, step: int, data_state: dict) -> dict:
        """Reads the saved data iterator of `step` into the source's, if there is one that
        this run can continue; `data_state` gains `iterator_restored`."""
        source = self._iterator_source
        if source is None:
            return data_state
        where = os.path.join(self._step_dir(step), ITERATOR_ITEM)
        restored = False
        if not os.path.isdir(where):
            log.info("Checkpoint step %d holds no data iterator.", step)
            return {**data_state, "iterator_restored": False}
        # A data iterator that does not read back is no reason to drop the checkpoint: the
        # source can still reach the saved position by replaying its stream.
        try:
            iterator = source.iterator_for_restore(data_state)
            if iterator is not None:
                args = ocp.args.Composite(**{ITERATOR_ITEM: DataIteratorRestore(iterator)})
                restored = bool(self.manager.restore(step, args=args)[ITERATOR_ITEM])
                if not restored:
                    log.warning("%s holds no data iterator for %s.", where, _process_dir())
        except Exception as e:
            log.warning(
                "The data iterator in %s could not be read (%s: %s); the data source replays "
                "its stream to the saved position instead.",
                where,
                type(e).__name__,
                str(e).splitlines()[0][:200] if str(e) else "",
            )
        return {**data_state, "iterator_restored": restored}

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
    directory = files.join(
        workdir if files.is_remote(workdir) else os.path.abspath(workdir), "checkpoints"
    )
    if not files.isdir(directory):
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
