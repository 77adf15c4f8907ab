"""The small interface between the one trainer and every model in the project.

A model (the LM stages, the SoundStream GAN, w2v-BERT, ...) gives the trainer:

- `groups`: names of its parameter groups, one optimizer each, updated in this order every step
  (a GAN: ("discriminator", "generator"); most models: ("model",)).
- `init(rng, batch) -> (params, model_state)`: `params` maps each group to its (logically
  partitioned) parameter tree; `model_state` holds what gradients do not train (EMA codebooks,
  batch statistics), or `{}`.
- `loss(group, params, model_state, batch, rng, train) -> (loss, (model_state, metrics))`:
  the trainer differentiates it with respect to `params[group]` only.
- `eval_metrics(params, model_state, batch) -> metrics` on held-out data.
- `tokens(batch)`: how many tokens (or samples) a batch holds, for throughput.
- `flops_per_step(batch)`: model FLOPs of one train step from shapes, or None.

Data sources are iterators of numpy batches with `get_state()`/`set_state()` (JSON-able), so
the data position is saved with every checkpoint and a resumed run sees the same batches.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, Protocol

import jax

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


class Model(abc.ABC):
    """Base class of everything the trainer drives."""

    groups: tuple[str, ...] = ("model",)

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: Batch) -> tuple[dict[str, Any], Any]:
        """Returns (params by group, non-gradient model state)."""

    @abc.abstractmethod
    def loss(
        self,
        group: str,
        params: dict[str, Any],
        model_state: Any,
        batch: Batch,
        rng: jax.Array,
        train: bool,
    ) -> tuple[jax.Array, tuple[Any, Metrics]]:
        """Scalar loss for `group`'s update, the new model state and metrics."""

    def eval_metrics(self, params: dict[str, Any], model_state: Any, batch: Batch) -> Metrics:
        """Held-out metrics; by default each group's loss without dropout."""
        out = {}
        for group in self.groups:
            loss, (_, metrics) = self.loss(
                group, params, model_state, batch, jax.random.key(0), train=False
            )
            out.update(metrics)
        return out

    def tokens(self, batch: Batch) -> int:
        """Tokens (or samples) in one batch; used for throughput in the logs."""
        first = next(iter(batch.values()))
        return int(first.size)

    def activation_bytes(self, batch: Batch) -> float | None:
        """Bytes of activations a train step keeps for backward, estimated from shapes."""
        return None

    def flops_per_step(self, batch: Batch) -> float | None:
        """Model FLOPs of one train step from shapes (for MFU), or None if unknown."""
        return None


class DataSource(Protocol):
    """An endless iterator of numpy batches whose position can be saved and restored."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __next__(self) -> Batch: ...

    def get_state(self) -> dict: ...

    def set_state(self, state: dict) -> None: ...
