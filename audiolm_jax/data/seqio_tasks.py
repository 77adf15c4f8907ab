"""seqio Tasks over the token cache: one per stage and corpus, Mixtures across corpora, packing.

    names = register_stage_tasks(cache_dir, corpus_name="librilight", layout=layout)
    # {"semantic": "librilight_semantic", "coarse": "librilight_coarse", "fine": "librilight_fine"}
    register_mixture("semantic_mix", ["librilight_semantic", "libritts_semantic"], [3.0, 1.0])
    ds = lm_dataset("librilight_semantic", seq_len=1024, split="train", seed=0, pack=True)

The cache (written by `audiolm_jax.data.token_cache`) is sharded TFRecord files
`<split>.tfrecord-SSSSS-of-NNNNN` of tf.train.Examples {id, speaker, semantic [T_s], codes
[T_a * Q] row-major over (frame, level), levels [1], seconds [1]} plus `manifest.json`.

Each Task yields one unpacked LM example per crop (semantic, coarse) or per fine chunk:

    inputs   int32 [n]  tokens[:-1]   (BOS first)
    targets  int32 [n]  tokens[1:]
    weights  int32 [n]  loss_mask[1:] (the layouts' mask: no loss on a conditioning prefix)

where (tokens, loss_mask) come from `audiolm_jax.data.tf_layouts`, so data and sampling share one
definition of every sequence. `LMFeatureConverter` pads or packs them to the LM's batch features
{inputs, targets, weights[, segment_ids, positions]}. Everything is a TF-graph op: no
tf.py_function, so the tf.data iterator can be saved with `tf.train.Checkpoint` (see
`audiolm_jax.data.pipeline`). Random crops take their seeds from seqio's seeded random datasets
(`seqio.map_over_dataset(num_seeds=1)`), so a seeded pipeline is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence

import seqio
import tensorflow as tf

from audiolm_jax.data import tf_layouts
from audiolm_jax.layouts import EOS, PAD, STAGES, TokenLayout

log = logging.getLogger("audiolm_jax")

FEATURES = ("inputs", "targets", "weights")
MANIFEST = "manifest.json"
SPLITS = ("train", "validation")

# The cache's tf.train.Example features, variable-length lists read densely.
_FEATURE_DESCRIPTION = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "speaker": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "semantic": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    "codes": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    "levels": tf.io.FixedLenFeature([1], tf.int64),
    "seconds": tf.io.FixedLenFeature([1], tf.float32),
}


# ---- the cache ----
def read_manifest(cache_dir: str) -> dict:
    path = os.path.join(cache_dir, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{cache_dir} is not a token cache: no {MANIFEST} (write one with launch.py's "
            "token-cache mode)"
        )
    with tf.io.gfile.GFile(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != 1:
        raise ValueError(f"{path}: unknown cache format {manifest.get('format')!r} (want 1)")
    return manifest


# Manifest field -> TokenLayout field: what the tokenizers fixed when the cache was written.
_FROM_MANIFEST = {
    "semantic_vocab": ("semantic", "vocab_size"),
    "semantic_rate_hz": ("semantic", "frame_rate"),
    "acoustic_levels": ("acoustic", "levels"),
    "codebook_size": ("acoustic", "codebook_size"),
    "acoustic_rate_hz": ("acoustic", "frame_rate"),
}


def layout_from_manifest(manifest: Mapping, overrides: Mapping | None = None) -> TokenLayout:
    """The TokenLayout of a cache: tokenizer sizes and rates from the manifest, the rest
    (coarse_levels, crop lengths, has_fine_stage) from `overrides`. An override that
    contradicts the manifest is an error naming both."""
    overrides = dict(overrides or {})
    fields = {}
    for name, (group, key) in _FROM_MANIFEST.items():
        value = manifest[group][key]
        if name in overrides and float(overrides[name]) != float(value):
            raise ValueError(
                f"layout.{name}={overrides[name]} but the cache's manifest says {group}.{key}="
                f"{value}: the cache was written by other tokenizers"
            )
        fields[name] = type(getattr(TokenLayout, name))(value)
    fields.update({k: v for k, v in overrides.items() if k not in fields})
    return TokenLayout(**fields)


def split_files(cache_dir: str, manifest: Mapping) -> dict[str, list[str]]:
    """split -> its shard files (from the manifest; checked to exist)."""
    out = {}
    for split, info in manifest.get("splits", {}).items():
        files = [os.path.join(cache_dir, f) for f in info.get("files", [])]
        if not files:
            continue
        missing = [f for f in files if not tf.io.gfile.exists(f)]
        if missing:
            raise FileNotFoundError(
                f"{cache_dir}: the manifest lists {len(missing)} shard files that are not there, "
                f"e.g. {missing[0]}"
            )
        out[split] = files
    if not out:
        raise ValueError(f"{cache_dir}: the manifest lists no shard files")
    return out


# ---- preprocessors (TF-graph only) ----
def _shifted(tokens: tf.Tensor, loss_mask: tf.Tensor) -> dict[str, tf.Tensor]:
    """(tokens, loss_mask) [L] -> the LM's unpacked features, [L - 1] each."""
    tokens = tf.cast(tokens, tf.int32)
    return {
        "inputs": tokens[:-1],
        "targets": tokens[1:],
        "weights": tf.cast(loss_mask[1:], tf.int32),
    }


def _codes(layout: TokenLayout, ex: Mapping[str, tf.Tensor]) -> tf.Tensor:
    q = layout.acoustic_levels
    check = tf.debugging.assert_equal(
        ex["levels"][0], tf.constant(q, tf.int64), message=f"cache codes must have {q} levels"
    )
    with tf.control_dependencies([check]):
        return tf.reshape(tf.cast(ex["codes"], tf.int32), [-1, q])


def _uniform_start(count: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed=seed, minval=0, maxval=count, dtype=tf.int32)


@seqio.map_over_dataset(num_seeds=1)
def _semantic_example(ex, seed, layout: TokenLayout):
    """A random crop of semantic_crop_seconds: BOS z_1..z_m, + EOS where the crop reaches the
    utterance's end (crops cut mid-utterance go without it, as the layout says)."""
    ids = tf.cast(ex["semantic"], tf.int32)
    n, crop = tf.size(ids), layout.semantic_crop_tokens
    start = _uniform_start(tf.maximum(n - crop + 1, 1), seed)
    tokens, mask, _ = tf_layouts.semantic_sequence(layout, ids[start : start + crop])
    at_end = tf.cast(start + crop >= n, tf.int32)
    tokens = tf.concat([tokens, tf.fill([at_end], EOS)], 0)
    mask = tf.concat([mask, tf.fill([at_end], True)], 0)
    return _shifted(tokens, mask)


@seqio.map_over_dataset(num_seeds=1)
def _coarse_example(ex, seed, layout: TokenLayout):
    """A random grid-aligned crop of coarse_crop_seconds of both streams:
    BOS z SEP y EOS, loss on y and EOS only."""
    ids, codes = tf.cast(ex["semantic"], tf.int32), _codes(layout, ex)
    seconds = layout.coarse_crop_seconds
    starts = tf_layouts.num_crop_starts(layout, tf.size(ids), tf.shape(codes)[0], seconds)
    ids, codes = tf_layouts.aligned_crop(layout, ids, codes, _uniform_start(starts, seed), seconds)
    tokens, mask, _ = tf_layouts.coarse_sequence(layout, ids, codes)
    return _shifted(tokens, mask)


def _fine_examples(ds: tf.data.Dataset, layout: TokenLayout) -> tf.data.Dataset:
    """One example per fine chunk (BOS coarse SEP fine, loss on the fine tokens), the short
    last chunk without its PAD tail."""

    def rows(ex):
        tokens, mask = tf_layouts.fine_sequence(layout, _codes(layout, ex))
        return {"tokens": tokens, "mask": mask}

    def row(r):
        n = tf.reduce_sum(tf.cast(r["tokens"] != PAD, tf.int32))
        return _shifted(r["tokens"][:n], r["mask"][:n])

    ds = ds.map(rows, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return ds.map(row, num_parallel_calls=tf.data.AUTOTUNE)


def _drop_empty(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Drops utterances with no tokens (an empty crop would be a sequence with nothing to
    predict)."""
    return ds.filter(lambda ex: tf.size(ex["semantic"]) > 0)


def _drop_untrained(ds: tf.data.Dataset) -> tf.data.Dataset:
    return ds.filter(lambda ex: tf.reduce_sum(ex["weights"]) > 0)


# ---- registration ----
def task_name(corpus_name: str, stage: str) -> str:
    return f"{corpus_name}_{stage}"


def output_features(layout: TokenLayout, stage: str) -> dict[str, seqio.Feature]:
    vocab = seqio.PassThroughVocabulary(layout.vocab_size(stage))
    return {
        "inputs": seqio.Feature(vocab, add_eos=False, dtype=tf.int32),
        "targets": seqio.Feature(vocab, add_eos=False, dtype=tf.int32),
        "weights": seqio.Feature(seqio.PassThroughVocabulary(2), add_eos=False, dtype=tf.int32),
    }


def _replace(registry, name: str) -> None:
    if name in registry.names():
        registry.remove(name)


def register_stage_tasks(
    cache_dir: str,
    *,
    corpus_name: str,
    layout: TokenLayout,
    stages: Sequence[str] | None = None,
    shuffle_buffer: int = 10_000,
) -> dict[str, str]:
    """Registers seqio Tasks "<corpus>_<stage>" reading the cache in `cache_dir`; returns
    {stage: task name}. Stages default to all of the layout's. Registering again (same name)
    replaces the Task, so a process may call this once per config it builds."""
    manifest = read_manifest(cache_dir)
    layout_from_manifest(manifest, dataclasses.asdict(layout))  # the cache's sizes and rates?
    files = split_files(cache_dir, manifest)
    source = seqio.TFExampleDataSource(
        split_to_filepattern=files, feature_description=_FEATURE_DESCRIPTION
    )
    stages = tuple(stages or (STAGES if layout.has_fine_stage else STAGES[:2]))
    names = {}
    for stage in stages:
        layout._check_stage(stage)
        if stage == "semantic":
            steps = [_drop_empty, functools.partial(_semantic_example, layout=layout)]
        elif stage == "coarse":
            steps = [_drop_empty, functools.partial(_coarse_example, layout=layout)]
        else:
            steps = [_drop_empty, functools.partial(_fine_examples, layout=layout)]
        name = task_name(corpus_name, stage)
        _replace(seqio.TaskRegistry, name)
        seqio.TaskRegistry.add(
            name,
            source=source,
            preprocessors=[*steps, _drop_untrained],
            output_features=output_features(layout, stage),
            shuffle_buffer_size=shuffle_buffer,
        )
        names[stage] = name
    return names


def register_mixture(name: str, tasks: Sequence[str], rates: Sequence[float]) -> str:
    """A seqio Mixture drawing from `tasks` in proportion to `rates` (replaces one of the same
    name). Its Tasks must share a stage and a layout."""
    if len(tasks) != len(rates) or not tasks:
        raise ValueError(f"need one rate per task, got tasks {tasks} and rates {rates}")
    if any(r <= 0 for r in rates):
        raise ValueError(f"mixture rates must be > 0, got {rates}")
    _replace(seqio.MixtureRegistry, name)
    seqio.MixtureRegistry.add(name, [(t, float(r)) for t, r in zip(tasks, rates)])
    return name


# ---- batches ----
class LMFeatureConverter(seqio.FeatureConverter):
    """Task features {inputs, targets, weights} -> the LM's batch features, padded to
    `seq_len` or packed (pack=True adds segment_ids, 0 = padding, and positions).

    seqio's packing drops a feature's zeros when it measures an example, so a 0/1 loss mask
    cannot be packed as it is: weights travel as weight + 1 and come back after packing.
    """

    TASK_FEATURES = {k: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32) for k in FEATURES}
    MODEL_FEATURES = {k: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32) for k in FEATURES}
    PACKING_FEATURE_DTYPES = {"segment_ids": tf.int32, "positions": tf.int32}

    def _convert_features(self, ds, task_feature_lengths):
        if not self.pack:
            return self._pack_or_pad(ds, task_feature_lengths)

        def shift(ex):
            return {**ex, "weights": ex["weights"] + 1}

        def unshift(ex):
            return {
                "inputs": ex["inputs"],
                "targets": ex["targets"],
                "weights": tf.maximum(ex["weights"] - 1, 0),
                "segment_ids": ex["targets_segment_ids"],
                "positions": ex["targets_positions"],
            }

        ds = ds.map(shift, num_parallel_calls=tf.data.AUTOTUNE)
        ds = self._pack_or_pad(ds, task_feature_lengths)
        return ds.map(unshift, num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths):
        lengths = {k: task_feature_lengths[k] for k in FEATURES}
        if self.pack:
            lengths.update(segment_ids=lengths["targets"], positions=lengths["targets"])
        return lengths


def provider(name: str) -> seqio.Task | seqio.Mixture:
    """The registered Task or Mixture `name`, or an error listing what is registered."""
    try:
        return seqio.get_mixture_or_task(name)
    except ValueError:
        known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
        raise ValueError(f"no seqio Task or Mixture named {name!r}; registered: {known}") from None


def lm_dataset(
    name: str,
    *,
    seq_len: int,
    split: str = "train",
    seed: int = 0,
    shuffle: bool = True,
    pack: bool = True,
    shard_info: seqio.ShardInfo | None = None,
    num_epochs: int | None = None,
) -> tf.data.Dataset:
    """Unbatched LM examples of the Task or Mixture `name`, each feature [seq_len]; endless
    unless num_epochs is given. A pure function of its arguments (and the cache)."""
    lengths = {k: int(seq_len) for k in FEATURES}
    ds = provider(name).get_dataset(
        sequence_length=lengths,
        split=split,
        shuffle=shuffle,
        seed=int(seed),
        shard_info=shard_info,
        num_epochs=num_epochs,
        trim_output_features=True,
        try_in_mem_cache=False,  # a cached split would be saved whole with every iterator
    )
    return LMFeatureConverter(pack=pack)(ds, lengths)
