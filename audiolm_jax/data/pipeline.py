"""Stage LM batches from the token cache through seqio, resumable to the exact batch.

    train, eval = cache_sources(config)        # config.data.source == "cache"
    batch = next(train)                        # this host's rows: {inputs, targets, weights,
                                               #   segment_ids, positions} numpy [b / hosts, L]

`CacheSource` is a trainer `DataSource` over a seqio Task or Mixture (`seqio_tasks`). Each host
reads its own shards (`seqio.ShardInfo(process_index, process_count)`) and yields its rows of
the global batch; the trainer turns them into global `jax.Array`s
(`sharding.global_batch` = `jax.make_array_from_process_local_data`).

Exact resume. Every op in the pipeline is a TF-graph op, so the tf.data iterator itself (shuffle
buffers, packing state, the seeded random streams of the crops) is saved with each checkpoint:
`iterator_checkpoint()` hands it to the Checkpointer, whose `DataIteratorHandler` writes
`tf.train.Checkpoint(iterator=it)` per process into the Orbax checkpoint. `get_state()` is the
small JSON the trainer saves beside it:

    {"step": batches served, "process_count": hosts, "seed": config seed,
     "data_seed": seed of the current stream, "seed_step": step at which that stream began}

Restoring on the same number of hosts reads the iterator back and continues with exactly the
next batch. Without a saved iterator (or if it cannot be read) the stream is rebuilt from
(data_seed, seed_step) and the batches before `step` are skipped: the same batches, slower. On a
different number of hosts the shards differ, so no saved position applies: the source logs a
warning and restarts the data order from a seed derived from (seed, step).
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import seqio
import tensorflow as tf

from audiolm_jax.data import seqio_tasks
from audiolm_jax.layouts import TokenLayout

log = logging.getLogger("audiolm_jax")

try:  # the pipeline runs on the host: keep TensorFlow off the accelerators JAX uses
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass


def derived_seed(seed: int, step: int) -> int:
    """A data seed for a stream restarted at `step` (a pure function of both)."""
    digest = hashlib.sha256(f"audiolm_jax-data:{int(seed)}:{int(step)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class CacheSource:
    """An endless, resumable iterator of this host's LM batches from a seqio Task or Mixture.

    `batch_size` is the global batch; each of `process_count` hosts yields batch_size /
    process_count rows from its own shards. `replay` batches are kept so `set_state` can step
    back over them without rebuilding (the trainer peeks one batch; evaluation rewinds to its
    first batch every time).
    """

    def __init__(
        self,
        name: str,
        *,
        batch_size: int,
        seq_len: int,
        split: str = "train",
        shuffle: bool = True,
        pack: bool = True,
        seed: int = 0,
        replay: int = 1,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        import jax

        self.name, self.split, self.seq_len = name, split, int(seq_len)
        self.shuffle, self.pack, self.seed = bool(shuffle), bool(pack), int(seed)
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if batch_size % self.process_count:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by {self.process_count} processes"
            )
        self.batch_size = int(batch_size)
        self.host_batch = self.batch_size // self.process_count
        seqio_tasks.provider(name)  # fail here, naming what is registered, if unknown
        self._recent: collections.deque = collections.deque(maxlen=max(1, int(replay)))
        self._start(self.seed, 0)

    # ---- the tf.data pipeline ----
    def dataset(self, data_seed: int) -> tf.data.Dataset:
        """This host's batches of the stream seeded with `data_seed`."""
        shard = None
        if self.process_count > 1:
            shard = seqio.ShardInfo(index=self.process_index, num_shards=self.process_count)
        ds = seqio_tasks.lm_dataset(
            self.name,
            seq_len=self.seq_len,
            split=self.split,
            seed=data_seed,
            shuffle=self.shuffle,
            pack=self.pack,
            shard_info=shard,
        )
        ds = ds.batch(self.host_batch, drop_remainder=True).prefetch(2)
        options = tf.data.Options()
        options.deterministic = True
        # A stateful op outside the graph would make a saved iterator lie: refuse to save it.
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.FAIL
        return ds.with_options(options)

    def _start(self, data_seed: int, seed_step: int) -> None:
        """A fresh stream seeded with data_seed whose first batch is batch `seed_step`."""
        self._data_seed, self._seed_step = int(data_seed), int(seed_step)
        self._iterator = iter(self.dataset(self._data_seed))
        self._fetched = self.step = self._seed_step  # batches pulled from the iterator / served
        self._recent.clear()

    def _pull(self) -> dict[str, np.ndarray]:
        ex = next(self._iterator)
        batch = {k: v.numpy() for k, v in ex.items()}
        batch["weights"] = batch["weights"].astype(np.float32)
        self._fetched += 1
        return batch

    # ---- DataSource ----
    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        behind = self._fetched - self.step  # > 0 after a rewind: serve the kept batches again
        if behind > 0:
            batch = self._recent[len(self._recent) - behind]
        else:
            batch = self._pull()
            self._recent.append(batch)
        self.step += 1
        return batch

    def get_state(self) -> dict:
        return {
            "step": int(self.step),
            "process_count": int(self.process_count),
            "seed": self.seed,
            "data_seed": self._data_seed,
            "seed_step": self._seed_step,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Moves to `state` (from get_state; {"index": n} is read as step n)."""
        step = int(state.get("step", state.get("index", 0)))
        saved_hosts = int(state.get("process_count", self.process_count))
        if saved_hosts != self.process_count:
            seed = derived_seed(self.seed, step)
            log.warning(
                "The data position was saved by %d processes and this run has %d: their "
                "shards differ, so the data order restarts at step %d from seed %d (derived "
                "from seed %d and the step); batches will not match a run on %d processes.",
                saved_hosts,
                self.process_count,
                step,
                seed,
                self.seed,
                saved_hosts,
            )
            self._start(seed, step)
            return
        data_seed = int(state.get("data_seed", self.seed))
        seed_step = int(state.get("seed_step", 0))
        if state.get("iterator_restored"):  # the Checkpointer read the saved iterator
            self._fetched = self.step = step
            self._recent.clear()
            return
        # After a failed iterator read ("iterator_restored": False) the iterator may be half
        # restored: always rebuild.
        same_stream = (data_seed, seed_step) == (self._data_seed, self._seed_step)
        if (
            same_stream
            and "iterator_restored" not in state
            and self._fetched - len(self._recent) <= step <= self._fetched
        ):
            self.step = step
            return
        if step < seed_step:
            raise ValueError(f"data step {step} precedes its stream's start {seed_step}")
        skip = step - seed_step
        if skip > 100:
            log.warning(
                "No saved data iterator to read: replaying %d batches of the %s stream to "
                "reach step %d.",
                skip,
                self.split,
                step,
            )
        self._start(data_seed, seed_step)
        for _ in range(skip):
            self._recent.append(self._pull())
        self.step = step

    # ---- the iterator checkpoint (see audiolm_jax.train.checkpoint.DataIteratorHandler) ----
    def iterator_checkpoint(self):
        """The tf.data iterator to save with the checkpoint of the current step."""
        if self._fetched != self.step:
            raise RuntimeError(
                f"cannot save the data iterator at step {self.step}: it has already produced "
                f"{self._fetched - self.step} batches beyond it (a peek not consumed)"
            )
        return self._iterator

    def iterator_for_restore(self, state: Mapping[str, Any]):
        """The iterator to read a checkpoint's saved iterator into, for the saved `state`, or
        None when this run's hosts cannot continue it (another process count)."""
        if int(state.get("process_count", self.process_count)) != self.process_count:
            return None
        data_seed = int(state.get("data_seed", self.seed))
        seed_step = int(state.get("seed_step", 0))
        self._start(data_seed, seed_step)  # the same graph (seeds included) that was saved
        return self._iterator

    @classmethod
    def from_config(cls, config: Any, name: str, split: str, **kw) -> CacheSource:
        d = config.data
        return cls(
            name,
            batch_size=int(d.batch_size),
            seq_len=int(d.seq_len),
            split=split,
            pack=bool(d.get("pack", True)),
            seed=int(config.seed),
            **kw,
        )


# ---- config ----
# TokenLayout fields a config chooses; the rest (sizes, rates) come from the cache's manifest.
LAYOUT_CONFIG_FIELDS = (
    "coarse_levels",
    "has_fine_stage",
    "fine_chunk_seconds",
    "semantic_crop_seconds",
    "coarse_crop_seconds",
    "coarse_semantic",
)


def cache_data_config(
    *,
    corpora: Mapping[str, str],
    stage: str,
    batch_size: int,
    seq_len: int,
    layout: Mapping[str, Any] | None = None,
    task: str = "",
    rates: Mapping[str, float] | None = None,
    pack: bool = True,
    shuffle_buffer: int = 10_000,
    eval_split: str = "validation",
):
    """A `config.data` section for a stage LM reading token caches (source "cache").

    corpora: corpus name -> cache dir; each gets a Task "<corpus>_<stage>".
    stage: "semantic", "coarse" or "fine".
    layout: TokenLayout fields the manifest does not fix (coarse_levels, has_fine_stage, crop
      and chunk seconds); the paper's values unless given.
    task: the seqio Task or Mixture to read; "" = the one corpus's Task, or a Mixture of all
      corpora named "<corpora>_<stage>_mix" with `rates` (corpus -> rate; default: each
      corpus's hours of train audio from its manifest).
    """
    import ml_collections

    paper = TokenLayout()
    fields = {k: getattr(paper, k) for k in LAYOUT_CONFIG_FIELDS}
    fields.update(layout or {})
    return ml_collections.ConfigDict(
        dict(
            source="cache",
            corpora=dict(corpora),
            stage=stage,
            layout=fields,
            task=task,
            rates=dict(rates or {}),
            batch_size=batch_size,
            seq_len=seq_len,
            pack=pack,
            shuffle_buffer=shuffle_buffer,
            eval_split=eval_split,
        )
    )


def register_from_config(config: Any):
    """Registers the Tasks (and Mixture) `config.data` names; returns (name, layout)."""
    d = config.data
    if not d.get("corpora"):
        raise ValueError("config.data.corpora must map corpus names to token cache dirs")
    stage, layout, manifests, tasks = d.stage, None, {}, []
    for corpus, cache_dir in sorted(dict(d.corpora).items()):
        manifests[corpus] = seqio_tasks.read_manifest(cache_dir)
        this = seqio_tasks.layout_from_manifest(manifests[corpus], dict(d.get("layout") or {}))
        if layout is not None and this != layout:
            raise ValueError(
                f"corpus {corpus!r} was tokenized differently from the others "
                f"({this} vs {layout}); a Mixture needs one layout"
            )
        layout = this
        names = seqio_tasks.register_stage_tasks(
            cache_dir,
            corpus_name=corpus,
            layout=layout,
            stages=[stage],
            shuffle_buffer=int(d.get("shuffle_buffer", 10_000)),
        )
        tasks.append(names[stage])
    name = d.get("task") or ""
    if not name and len(tasks) == 1:
        name = tasks[0]
    elif not name:
        rates = dict(d.get("rates") or {})
        corpora = sorted(manifests)
        weights = [
            float(rates.get(c) or _size(manifests[c])) for c in corpora
        ]  # default: hours of train audio
        name = seqio_tasks.register_mixture(f"{'_'.join(corpora)}_{stage}_mix", tasks, weights)
    return name, layout


def _size(manifest: Mapping) -> float:
    train = manifest.get("splits", {}).get("train", {})
    return float(train.get("hours") or train.get("utterances") or 1.0)


def cache_sources(config: Any) -> tuple[CacheSource, CacheSource | None]:
    """(train, eval) sources for a stage LM from `config.data` (see `cache_data_config`)."""
    d = config.data
    name, layout = register_from_config(config)
    # Recorded in every checkpoint's config: what `load_pipeline` checks the tokenizers against.
    d.resolved = resolved_cache_info(config, layout)
    vocab = layout.vocab_size(d.stage)
    if vocab > config.lm.vocab_size:
        raise ValueError(
            f"the {d.stage} stage of this cache uses {vocab} ids but config.lm.vocab_size is "
            f"{config.lm.vocab_size}; set it to {layout.padded_vocab_size(d.stage)}"
        )
    longest = layout.max_length(d.stage) - 1
    if int(d.seq_len) < longest:
        log.info(
            "config.data.seq_len=%d < %d (the layout's longest %s example): longer examples "
            "are cut to seq_len.",
            d.seq_len,
            longest,
            d.stage,
        )
    train = CacheSource.from_config(config, name, "train", shuffle=True)
    eval_split = d.get("eval_split", "validation")
    splits = set().union(*(t.splits for t in _tasks(name)))
    if not eval_split or eval_split not in splits:
        log.warning("The token cache has no %r split: no held-out evaluation.", eval_split)
        return train, None
    replay = int(config.train.get("eval_batches", 1) or 1)
    return train, CacheSource.from_config(config, name, eval_split, shuffle=False, replay=replay)


def resolved_cache_info(config: Any, layout: TokenLayout) -> dict:
    """What a stage trained on: {"layout": the TokenLayout's fields, "tokenizers": the cache
    manifest's tokenizer description (rates, sizes, checkpoints), "semantic_runs_per_second":
    de-duplicated semantic ids per second of train audio (None for caches written before runs
    were counted)}. The sampler sizes its semantic output with the last."""
    import dataclasses

    manifests = [seqio_tasks.read_manifest(c) for _, c in sorted(dict(config.data.corpora).items())]
    runs = sum(m["splits"].get("train", {}).get("semantic_runs", 0) for m in manifests)
    hours = sum(m["splits"].get("train", {}).get("hours", 0.0) for m in manifests)
    first = manifests[0]
    return {
        "layout": dataclasses.asdict(layout),
        "tokenizers": {k: first[k] for k in ("sample_rate", "semantic", "acoustic")},
        "semantic_runs_per_second": runs / (3600 * hours) if runs and hours else None,
    }


def _tasks(name: str) -> list:
    p = seqio_tasks.provider(name)
    return list(p.tasks) if isinstance(p, seqio.Mixture) else [p]
