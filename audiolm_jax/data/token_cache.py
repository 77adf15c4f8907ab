"""The token cache: both tokenizers run once over a corpus, their output kept in sharded TFRecords.

    toks = token_cache.Tokenizers.from_workdirs("runs/soundstream", "runs/w2v_bert")
    token_cache.write_cache(examples, "train", "cache/librilight", toks, num_shards=256)
    tokens = token_cache.read_cache("cache/librilight", "train")   # {id: {semantic, codes, ...}}

Layout of `cache_dir` (format 1; the seqio Tasks read it):

- `<split>.tfrecord-<shard:05d>-of-<num_shards:05d>`: `tf.train.Example`s, one per utterance, with
  "id" and "speaker" (bytes), "semantic" (int64 [T_s]), "codes" (int64 [T_a * Q], frame-major,
  level-minor), "levels" (int64 [1] = Q) and "seconds" (float [1]).
- `<shard file>.json`: that shard's counts and token histograms (its "sidecar").
- `manifest.json`: tokenizers (checkpoints, rates, vocabularies), per split the shard files and
  totals (utterances, hours, semantic tokens, acoustic frames).
- `stats.json`: per split the semantic id histogram, one acoustic code histogram per RVQ level,
  and length statistics (seconds and semantic ids per utterance: min / mean / max).

Shards and processes. An utterance goes to shard `crc32(id) % num_shards` and shard s belongs to
process `s % process_count`: the files do not depend on how many processes wrote them. Every
process reads the whole example stream and tokenizes only the utterances of its own shards, in
source order (so within a shard, records are in source order and a 1-process and an N-process
cache have identical files). Each process writes its own shard files and sidecars.

Resuming. A shard is written to `<file>.tmp`; when the stream ends its sidecar is written and the
file moved (`os.replace`, atomic) to its final name. A shard under its final name is complete; a
restarted job skips complete shards and redoes the rest, overwriting any `.tmp` a killed job left.
`shards_per_pass` trades re-reading the source for how much work a kill can lose: with it, each
pass over the stream completes that many of the process's shards.

Finishing. Process 0, after its own shards, polls (every few seconds, up to `wait_timeout`) until
every shard of the split and its sidecar exist, then writes `stats.json` and `manifest.json` from
the sidecars alone (no shard is read again). Polling needs no JAX collective, so the same code
serves one machine, a pod whose workers share a bucket, and processes started by hand with
explicit `process_index` / `process_count`.

Memory. Audio is held for at most `max_pending` utterances (the batching window, at each
tokenizer's own rate); tokens go straight into the open `.tmp` writers. So a process holds
`max_pending x longest utterance` of audio, `max_pending` utterances' tokens, one open writer per
shard of the current pass, and per such shard its histograms (K_s + Q x K_a counts) and ids (for
the duplicate check): independent of the corpus size.

Batching. Utterances are tokenized in batches of up to `batch_size`, padded to a common number of
frames: each tokenizer's `*_pad_frames` says to what multiple its frame counts may be rounded up
(1: only utterances with the same frame count share a batch, which is exact for any tokenizer that
pads each utterance with zeros to whole frames; more is exact for causal models such as the
codec). Each row is then cut to its own frame count: T = ceil(samples / hop) at the tokenizer's
rate. Batch rows are padded with silence to a power of two, bounding the shapes jit compiles.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

log = logging.getLogger("audiolm_jax")

FORMAT = 1
MANIFEST = "manifest.json"
STATS = "stats.json"
_SHARD_RE = re.compile(r"^(?P<split>.+)\.tfrecord-(?P<shard>\d{5})-of-(?P<num>\d{5})$")


# --- names -----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A str from a str or utf-8 bytes (tfds' numpy examples hold bytes)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def shard_of(utterance_id: str, num_shards: int) -> int:
    """The shard an utterance goes to: crc32 of its utf-8 id, mod `num_shards` (stable across
    machines, Python versions and process counts)."""
    return zlib.crc32(utterance_id.encode("utf-8")) % num_shards


def shard_name(split: str, shard: int, num_shards: int) -> str:
    """`<split>.tfrecord-<shard:05d>-of-<num_shards:05d>`."""
    return f"{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def shard_path(cache_dir: str, split: str, shard: int, num_shards: int) -> str:
    return os.path.join(cache_dir, shard_name(split, shard, num_shards))


def process_shards(num_shards: int, process_index: int, process_count: int) -> list[int]:
    """The shards a process writes: those with `shard % process_count == process_index`."""
    return [s for s in range(num_shards) if s % process_count == process_index]


# --- tokenizers ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tokenizers:
    """The two tokenizers as batch functions, with what the manifest records about them.

    `semantic(wav [b, n]) -> ids [b, n / semantic_hop]` and
    `acoustic(wav [b, n]) -> codes [b, n / acoustic_hop, acoustic_levels]` take float32 audio
    at their own rate (`semantic_sample_rate` / `acoustic_sample_rate`, default `sample_rate`),
    n a multiple of their hop; they may return numpy or jax arrays of any integer type.
    `write_cache` resamples each utterance (from `sample_rate`, the audio's and the cache's
    rate) to each tokenizer's rate on its own, before any padding, so batching never changes
    what resampling sees.

    `*_pad_frames`: to what multiple of frames an utterance may be zero-padded to share a batch
    (module docstring); 1 is exact for every tokenizer.
    """

    semantic: Callable[[np.ndarray], Any]
    acoustic: Callable[[np.ndarray], Any]
    sample_rate: int
    semantic_vocab: int
    semantic_hop: int
    acoustic_levels: int
    acoustic_codebook_size: int
    acoustic_hop: int
    semantic_sample_rate: int | None = None
    acoustic_sample_rate: int | None = None
    semantic_checkpoint: str | None = None
    acoustic_checkpoint: str | None = None
    semantic_describe: str = ""
    acoustic_describe: str = ""
    semantic_pad_frames: int = 1
    acoustic_pad_frames: int = 1

    @property
    def semantic_input_rate(self) -> int:
        return int(self.semantic_sample_rate or self.sample_rate)

    @property
    def acoustic_input_rate(self) -> int:
        return int(self.acoustic_sample_rate or self.sample_rate)

    @property
    def semantic_rate(self) -> float:
        """Semantic ids per second."""
        return self.semantic_input_rate / self.semantic_hop

    @property
    def acoustic_rate(self) -> float:
        """Acoustic frames (of Q codes each) per second."""
        return self.acoustic_input_rate / self.acoustic_hop

    def metadata(self) -> dict:
        """The manifest's description of the tokenizers: {sample_rate, semantic, acoustic}."""
        return {
            "sample_rate": int(self.sample_rate),
            "semantic": {
                "vocab_size": int(self.semantic_vocab),
                "frame_rate": float(self.semantic_rate),
                "checkpoint": self.semantic_checkpoint,
                "describe": self.semantic_describe,
            },
            "acoustic": {
                "levels": int(self.acoustic_levels),
                "codebook_size": int(self.acoustic_codebook_size),
                "frame_rate": float(self.acoustic_rate),
                "checkpoint": self.acoustic_checkpoint,
                "describe": self.acoustic_describe,
            },
        }

    @classmethod
    def from_models(
        cls,
        codec_model: Any,
        semantic_tokenizer: Any,
        *,
        sample_rate: int | None = None,
        levels: int | None = None,
        codec_checkpoint: str | None = None,
        semantic_checkpoint: str | None = None,
        acoustic_pad_frames: int = 1,
    ) -> Tokenizers:
        """From a `codec.Codec` and a `semantic.Tokenizer` (through `codec.encode` and
        `semantic.encode`). `sample_rate`: the audio's (default the semantic tokenizer's);
        `levels`: how many RVQ levels to keep (default all). The semantic model attends over
        the whole utterance, so its batches hold equal frame counts only (exact). The codec is
        causal: `acoustic_pad_frames` > 1 lets longer padding share its batches, exact but for
        float rounding of convolutions over another length (the default 1 assumes nothing)."""
        from audiolm_jax import codec, semantic

        q = codec_model.levels if levels is None else int(levels)
        if not 1 <= q <= codec_model.levels:
            raise ValueError(f"levels={q}: the codec has 1 to {codec_model.levels}")

        def semantic_fn(wav: np.ndarray) -> np.ndarray:
            return np.asarray(semantic.encode(semantic_tokenizer, wav))

        def acoustic_fn(wav: np.ndarray) -> np.ndarray:
            return np.asarray(codec.encode(codec_model, wav, levels=q))

        return cls(
            semantic=semantic_fn,
            acoustic=acoustic_fn,
            sample_rate=int(sample_rate or semantic_tokenizer.sample_rate),
            semantic_vocab=semantic_tokenizer.vocab_size,
            semantic_hop=semantic_tokenizer.samples_per_frame,
            acoustic_levels=q,
            acoustic_codebook_size=codec_model.cfg.codebook_size,
            acoustic_hop=codec_model.hop,
            semantic_sample_rate=semantic_tokenizer.sample_rate,
            acoustic_sample_rate=codec_model.sample_rate,
            semantic_checkpoint=semantic_checkpoint,
            acoustic_checkpoint=codec_checkpoint,
            semantic_describe=semantic.describe(semantic_tokenizer),
            acoustic_describe=codec.describe(codec_model.cfg) + f"; {q} levels kept",
            semantic_pad_frames=1,
            acoustic_pad_frames=acoustic_pad_frames,
        )

    @classmethod
    def from_workdirs(
        cls,
        codec_workdir: str,
        semantic_workdir: str,
        *,
        sample_rate: int | None = None,
        levels: int | None = None,
        codec_step: int | None = None,
        semantic_step: int | None = None,
        acoustic_pad_frames: int = 1,
    ) -> Tokenizers:
        """The codec trained in `codec_workdir` (`codec.load`) and the semantic tokenizer of
        `semantic_workdir` (`semantic.load`: feature model + k-means), newest checkpoints unless
        steps are given; the manifest records `<workdir>/checkpoints/<step>` of each."""
        from audiolm_jax import codec, semantic

        c = codec.load(codec_workdir, codec_step)
        s = semantic.load(semantic_workdir, semantic_step)
        return cls.from_models(
            c,
            s,
            sample_rate=sample_rate,
            levels=levels,
            codec_checkpoint=_checkpoint_name(codec_workdir, codec_step),
            semantic_checkpoint=_checkpoint_name(semantic_workdir, semantic_step),
            acoustic_pad_frames=acoustic_pad_frames,
        )


def _checkpoint_name(workdir: str, step: int | None) -> str:
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if step is None:
        steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
        if not steps:
            return os.path.abspath(workdir)
        step = max(steps)
    return os.path.join(directory, str(step))


# --- batching --------------------------------------------------------------------------------


class _Item:
    """One utterance on its way through both tokenizers."""

    __slots__ = ("id", "speaker", "shard", "seconds", "inputs", "frames", "out")

    def __init__(self, uid, speaker, shard, seconds, inputs, frames):
        self.id, self.speaker, self.shard, self.seconds = uid, speaker, shard, seconds
        self.inputs, self.frames = inputs, frames
        self.out = [None, None]


class _Batcher:
    """Tokenizes items in batches of equal padded length and hands them back in arrival order.

    Each tokenizer k keeps buckets (padded frame count -> waiting items). A bucket runs when it
    holds `batch_size` items; when `max_pending` items wait, the bucket of the oldest item still
    waiting for k runs, for each k, so the head of the queue is always finished then."""

    def __init__(self, tokenizers: Tokenizers, batch_size: int, max_pending: int):
        t = tokenizers
        self.kinds = [
            (t.semantic, t.semantic_hop, max(1, t.semantic_pad_frames), "semantic"),
            (t.acoustic, t.acoustic_hop, max(1, t.acoustic_pad_frames), "acoustic"),
        ]
        self.t = t
        self.batch_size = max(1, int(batch_size))
        self.max_pending = max(self.batch_size, int(max_pending))
        self.queue: collections.deque[_Item] = collections.deque()
        self.buckets: list[dict[int, list[_Item]]] = [{}, {}]

    def _key(self, k: int, item: _Item) -> int:
        g = self.kinds[k][2]
        return -(-item.frames[k] // g) * g

    def add(self, item: _Item) -> list[_Item]:
        self.queue.append(item)
        for k in range(2):
            key = self._key(k, item)
            bucket = self.buckets[k].setdefault(key, [])
            bucket.append(item)
            if len(bucket) >= self.batch_size:
                self._run(k, key)
        if len(self.queue) >= self.max_pending:
            for k in range(2):
                oldest = next((it for it in self.queue if it.out[k] is None), None)
                if oldest is not None:
                    self._run(k, self._key(k, oldest))
        return self._emit()

    def finish(self) -> list[_Item]:
        for k in range(2):
            while self.buckets[k]:
                oldest = next(it for it in self.queue if it.out[k] is None)
                self._run(k, self._key(k, oldest))
        return self._emit()

    def _emit(self) -> list[_Item]:
        done = []
        while self.queue and self.queue[0].out[0] is not None and self.queue[0].out[1] is not None:
            done.append(self.queue.popleft())
        return done

    def _run(self, k: int, key: int) -> None:
        fn, hop, _, name = self.kinds[k]
        items = self.buckets[k].pop(key)
        rows = min(self.batch_size, 1 << (len(items) - 1).bit_length())
        batch = np.zeros((rows, key * hop), np.float32)
        for i, it in enumerate(items):
            batch[i, : len(it.inputs[k])] = it.inputs[k]
        out = np.asarray(fn(batch))
        if k == 0:
            want, limit = (rows, key), self.t.semantic_vocab
            ok = out.ndim == 2 and out.shape[0] == rows and out.shape[1] >= key
        else:
            want, limit = (rows, key, self.t.acoustic_levels), self.t.acoustic_codebook_size
            ok = (
                out.ndim == 3
                and out.shape[0] == rows
                and out.shape[1] >= key
                and out.shape[2] == self.t.acoustic_levels
            )
        if not ok:
            raise ValueError(f"the {name} tokenizer gave shape {out.shape} for {want}")
        if not np.issubdtype(out.dtype, np.integer):
            raise ValueError(f"the {name} tokenizer gave {out.dtype}, not integers")
        for i, it in enumerate(items):
            tokens = out[i, : it.frames[k]].astype(np.int32)
            if tokens.size and (tokens.min() < 0 or tokens.max() >= limit):
                raise ValueError(
                    f"the {name} tokenizer gave ids {tokens.min()}..{tokens.max()} for "
                    f"{it.id!r}, outside [0, {limit})"
                )
            it.out[k] = tokens
            it.inputs[k] = None


# --- shard writing ---------------------------------------------------------------------------


def _is_remote(path: str) -> bool:
    return "://" in path


def _exists(path: str) -> bool:
    if _is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _replace(src: str, dst: str) -> None:
    """Atomic on a local file system (os.replace); on a bucket, a rename (the object appears
    whole)."""
    if _is_remote(src):
        import tensorflow as tf

        tf.io.gfile.rename(src, dst, overwrite=True)
    else:
        os.replace(src, dst)


def _write_json(path: str, obj: Any) -> None:
    import tensorflow as tf

    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1))
    _replace(tmp, path)


def _read_json(path: str) -> Any:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _listdir(path: str) -> list[str]:
    import tensorflow as tf

    return tf.io.gfile.listdir(path) if tf.io.gfile.isdir(path) else []


def _example_bytes(item: _Item, levels: int) -> bytes:
    import tensorflow as tf

    feat = tf.train.Feature
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "id": feat(bytes_list=tf.train.BytesList(value=[item.id.encode("utf-8")])),
                "speaker": feat(
                    bytes_list=tf.train.BytesList(value=[item.speaker.encode("utf-8")])
                ),
                "semantic": feat(int64_list=tf.train.Int64List(value=item.out[0].tolist())),
                "codes": feat(int64_list=tf.train.Int64List(value=item.out[1].ravel().tolist())),
                "levels": feat(int64_list=tf.train.Int64List(value=[levels])),
                "seconds": feat(float_list=tf.train.FloatList(value=[item.seconds])),
            }
        )
    ).SerializeToString(deterministic=True)  # sorted keys: the same bytes in every process


class _ShardWriter:
    """One shard of the current pass: records into `<file>.tmp`, counts and histograms."""

    def __init__(self, path: str, shard: int, num_shards: int, split: str, t: Tokenizers):
        import tensorflow as tf

        self.path, self.shard = path, shard
        self.writer = tf.io.TFRecordWriter(path + ".tmp")
        self.levels = t.acoustic_levels
        self.ids: set[str] = set()
        self.info = {
            "format": FORMAT,
            "split": split,
            "shard": shard,
            "num_shards": num_shards,
            "tokenizers": t.metadata(),
            "utterances": 0,
            "seconds": 0.0,
            "seconds_min": None,
            "seconds_max": None,
            "semantic_tokens": 0,
            "semantic_runs": 0,  # ids left after dropping consecutive repeats (layouts.dedup)
            "semantic_min": None,
            "semantic_max": None,
            "acoustic_frames": 0,
            "acoustic_min": None,
            "acoustic_max": None,
            "skipped": [],
            "duplicates": [],
        }
        self.semantic_hist = np.zeros(t.semantic_vocab, np.int64)
        self.acoustic_hist = np.zeros((t.acoustic_levels, t.acoustic_codebook_size), np.int64)

    def admit(self, uid: str, ex: dict, t: Tokenizers) -> _Item | None:
        """The example as an item to tokenize, or None (logged and recorded) for a repeated id
        or audio that cannot be tokenized."""
        if uid in self.ids:
            log.warning("Token cache: id %r repeated in the source; left out.", uid)
            self.info["duplicates"].append(uid)
            return None
        self.ids.add(uid)
        inputs, why = _prepare(ex, t)
        if inputs is None:
            log.warning("Token cache: %r left out: %s.", uid, why)
            self.info["skipped"].append([uid, why])
            return None
        hops = (t.semantic_hop, t.acoustic_hop)
        frames = [max(1, -(-len(x) // h)) for x, h in zip(inputs, hops)]
        seconds = len(ex["audio"]) / t.sample_rate
        return _Item(uid, _text(ex.get("speaker", "")), self.shard, seconds, inputs, frames)

    def write(self, item: _Item) -> None:
        self.writer.write(_example_bytes(item, self.levels))
        info, ns, na = self.info, len(item.out[0]), len(item.out[1])
        info["utterances"] += 1
        info["seconds"] += item.seconds
        info["semantic_tokens"] += ns
        info["semantic_runs"] += int(np.count_nonzero(np.diff(item.out[0]))) + (ns > 0)
        info["acoustic_frames"] += na
        for key, v in (("seconds", item.seconds), ("semantic", ns), ("acoustic", na)):
            lo, hi = info[f"{key}_min"], info[f"{key}_max"]
            info[f"{key}_min"] = v if lo is None else min(lo, v)
            info[f"{key}_max"] = v if hi is None else max(hi, v)
        self.semantic_hist += np.bincount(item.out[0], minlength=self.semantic_hist.shape[0])
        for q in range(self.levels):
            self.acoustic_hist[q] += np.bincount(
                item.out[1][:, q], minlength=self.acoustic_hist.shape[1]
            )

    def commit(self) -> None:
        """Closes the records, writes the sidecar, then moves the shard to its final name."""
        self.writer.close()
        info = dict(self.info)
        info["semantic_histogram"] = self.semantic_hist.tolist()
        info["acoustic_histograms"] = self.acoustic_hist.tolist()
        _write_json(self.path + ".json", info)
        _replace(self.path + ".tmp", self.path)

    def abandon(self) -> None:
        self.writer.close()


def _shard_done(path: str, meta: dict) -> bool:
    """A shard is done when its file (and the sidecar written before it) exist; a done shard
    made with other tokenizers is an error, never silently mixed in."""
    if not (_exists(path) and _exists(path + ".json")):
        return False
    got = _read_json(path + ".json").get("tokenizers")
    if got != meta:
        raise ValueError(
            f"{path} was written with other tokenizers ({got}), not {meta}: use another "
            "cache_dir, or delete that split's shards"
        )
    return True


def _check_layout(cache_dir: str, split: str, num_shards: int, meta: dict) -> None:
    for name in _listdir(cache_dir):
        m = _SHARD_RE.match(name)
        if m and m["split"] == split and int(m["num"]) != num_shards:
            raise ValueError(
                f"{cache_dir} holds {split} shards of {int(m['num'])} (e.g. {name}), not "
                f"num_shards={num_shards}: use another cache_dir or delete them"
            )
    manifest = os.path.join(cache_dir, MANIFEST)
    if _exists(manifest):
        old = _read_json(manifest)
        old_meta = {k: old.get(k) for k in ("sample_rate", "semantic", "acoustic")}
        if old_meta != meta:
            raise ValueError(
                f"{manifest} describes other tokenizers ({old_meta}) than these ({meta}); one "
                "cache holds one pair of tokenizers"
            )


# --- the job ---------------------------------------------------------------------------------


def _open_stream(examples: Any) -> Iterator[dict]:
    if callable(examples):
        return iter(examples())
    return iter(examples)


def _prepare(ex: dict, t: Tokenizers) -> tuple[list[np.ndarray] | None, str]:
    """(audio at each tokenizer's rate, "") or (None, why it cannot be tokenized)."""
    from audiolm_jax import dsp

    audio = np.asarray(ex["audio"], np.float32)
    if audio.ndim != 1:
        return None, f"audio must be [samples], got shape {audio.shape}"
    if audio.size == 0:
        return None, "no samples"
    if not np.all(np.isfinite(audio)):
        return None, "NaN or infinite samples"
    rates = (t.semantic_input_rate, t.acoustic_input_rate)
    return [dsp.resample(audio, t.sample_rate, r) for r in rates], ""


def _hms(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(0.0, seconds))))


def write_cache(
    examples: Callable[[], Iterable[dict]] | Iterable[dict],
    split: str,
    cache_dir: str,
    tokenizers: Tokenizers,
    *,
    num_shards: int,
    process_index: int | None = None,
    process_count: int | None = None,
    batch_size: int = 8,
    max_pending: int | None = None,
    shards_per_pass: int | None = None,
    total: int | None = None,
    log_every: float = 60.0,
    wait_timeout: float = 6 * 3600.0,
    poll_interval: float = 5.0,
) -> dict:
    """Tokenizes this process's shards of `split` into `cache_dir`; process 0 then waits for all
    shards and writes `manifest.json` and `stats.json` (module docstring).

    Args:
      examples: a function returning a fresh iterable of examples (needed for more than one
        pass), or a sequence; examples are dicts {"id": str, "speaker": str, "audio": float32
        [n] at `tokenizers.sample_rate`} (other keys are ignored). Ids must be unique: a repeated
        id is logged and left out. Empty or non-finite audio is logged and left out.
      num_shards: shards of this split (the same in every process and every restart).
      process_index, process_count: default `jax.process_index()` / `jax.process_count()`.
      batch_size: utterances per tokenizer call at most; max_pending: the batching window
        (default 4 x batch_size), the bound on utterances whose audio is held.
      shards_per_pass: complete this many of this process's shards per pass over the stream
        (default all in one pass).
      total: the stream's length, for the ETA (default len(examples) where it has one).
      log_every: seconds between progress lines.
      wait_timeout, poll_interval: process 0's wait for the other processes' shards.

    Returns a summary: this process's shards written and skipped (already complete), utterances
    and seconds tokenized, wall time, examples left out, and the manifest's path (process 0) or
    None.
    """
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} with process_count={process_count}")
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards}")
    import tensorflow as tf

    tf.io.gfile.makedirs(cache_dir)
    t = tokenizers
    meta = t.metadata()
    _check_layout(cache_dir, split, num_shards, meta)
    if total is None and hasattr(examples, "__len__"):
        total = len(examples)

    mine = process_shards(num_shards, process_index, process_count)
    done = [s for s in mine if _shard_done(shard_path(cache_dir, split, s, num_shards), meta)]
    todo = [s for s in mine if s not in done]
    per_pass = len(todo) if not shards_per_pass else int(shards_per_pass)
    passes = [todo[i : i + per_pass] for i in range(0, len(todo), max(1, per_pass))]
    if len(passes) > 1 and not callable(examples) and iter(examples) is examples:
        raise ValueError("more than one pass needs a function returning the examples")
    log.info(
        f"Token cache {split} -> {cache_dir}: process {process_index} of {process_count}, "
        f"{len(mine)} of {num_shards} shards its own, {len(done)} already complete, "
        f"{len(todo)} to write in {len(passes)} pass(es)."
    )
    prog = _Progress(split, len(passes), total, len(mine), len(done), log_every)
    for p, group in enumerate(passes):
        prog.new_pass(p)
        writers = {
            s: _ShardWriter(shard_path(cache_dir, split, s, num_shards), s, num_shards, split, t)
            for s in group
        }
        batcher = _Batcher(t, batch_size, max_pending or 4 * batch_size)

        def emit(items: list[_Item]) -> None:
            for it in items:
                writers[it.shard].write(it)
                prog.tokenized(it.seconds)

        try:
            for ex in _open_stream(examples):
                uid = _text(ex["id"])
                w = writers.get(shard_of(uid, num_shards))
                if w is not None:
                    item = w.admit(uid, ex, t)
                    if item is not None:
                        emit(batcher.add(item))
                prog.read()
            emit(batcher.finish())
        except BaseException:
            for w in writers.values():
                w.abandon()
            raise
        for s in group:
            writers[s].commit()
            prog.shard_done(s)
            prog.skipped += writers[s].info["skipped"]
            prog.duplicates += writers[s].info["duplicates"]
        log.info(
            f"Token cache {split}: pass {p + 1}/{len(passes)} done, shards {prog.shards}/"
            f"{len(mine)} of process {process_index} complete."
        )

    wall = time.time() - prog.start
    log.info(
        f"Token cache {split}: process {process_index} tokenized {prog.utterances} utterances "
        f"({prog.seconds / 3600:.2f} h of audio) in {_hms(wall)}: {prog.summary()}; "
        f"{len(prog.skipped)} left out, {len(prog.duplicates)} repeated ids."
    )
    manifest = None
    if process_index == 0:
        manifest = finalize(
            cache_dir, split, num_shards, meta, timeout=wait_timeout, poll_interval=poll_interval
        )
    return {
        "split": split,
        "process_index": process_index,
        "process_count": process_count,
        "num_shards": num_shards,
        "shards_written": prog.written,
        "shards_already_complete": done,
        "utterances": prog.utterances,
        "seconds": prog.seconds,
        "wall_seconds": wall,
        "skipped": prog.skipped,
        "duplicates": prog.duplicates,
        "manifest": manifest,
    }


class _Progress:
    """Counters of one process's job and its progress lines (utterances/s, hours of audio per
    hour, shards done, ETA from the stream position when its length is known)."""

    def __init__(self, split, passes, total, mine, done, every):
        self.split, self.passes, self.total, self.mine = split, passes, total, mine
        self.every = every
        self.shards = done
        self.start = self.last = time.time()
        self.utterances, self.seconds, self.n_read, self.p = 0, 0.0, 0, 0
        self.written: list[int] = []
        self.skipped: list[list[str]] = []
        self.duplicates: list[str] = []

    def new_pass(self, p: int) -> None:
        self.p, self.n_read = p, 0

    def tokenized(self, seconds: float) -> None:
        self.utterances += 1
        self.seconds += seconds

    def shard_done(self, shard: int) -> None:
        self.written.append(shard)
        self.shards += 1

    def summary(self) -> str:
        dt = max(time.time() - self.start, 1e-9)
        return (
            f"{self.utterances / dt:.1f} utterances/s, {self.seconds / dt:.0f} h of audio per hour"
        )

    def read(self) -> None:
        self.n_read += 1
        now = time.time()
        if now - self.last < self.every:
            return
        self.last = now
        eta, of = "?", ""
        if self.total:
            of = f"/{self.total}"
            frac = (self.p + min(self.n_read, self.total) / self.total) / max(self.passes, 1)
            if frac > 0:
                eta = _hms((now - self.start) / frac * (1 - frac))
        log.info(
            f"Token cache {self.split}: pass {self.p + 1}/{self.passes}, {self.n_read}{of} "
            f"examples read, {self.utterances} tokenized ({self.summary()}), shards "
            f"{self.shards}/{self.mine} done, ETA {eta}."
        )


# --- manifest and statistics -----------------------------------------------------------------


def _minmeanmax(lo: dict, hi: dict, key: str, total: float, n: int) -> dict:
    return {"min": lo.get(key), "mean": total / n if n else None, "max": hi.get(key)}


def finalize(
    cache_dir: str,
    split: str,
    num_shards: int,
    meta: dict,
    *,
    timeout: float = 6 * 3600.0,
    poll_interval: float = 5.0,
) -> str:
    """Waits until every shard of `split` and its sidecar exist (polling; TimeoutError naming
    the missing ones after `timeout` s), then merges the sidecars into `stats.json` and
    `manifest.json` (other splits' entries kept). Returns the manifest's path."""
    paths = [shard_path(cache_dir, split, s, num_shards) for s in range(num_shards)]
    deadline = time.time() + timeout
    last_log = time.time()
    while True:
        missing = [p for p in paths if not (_exists(p) and _exists(p + ".json"))]
        if not missing:
            break
        now = time.time()
        if now > deadline:
            raise TimeoutError(
                f"token cache {split}: after {timeout:.0f} s, {len(missing)} shards are still "
                f"missing, e.g. {missing[:3]}"
            )
        if now - last_log > 60:
            last_log = now
            log.info(
                "Token cache %s: waiting for %d shards of other processes.", split, len(missing)
            )
        time.sleep(poll_interval)

    # One sidecar at a time: the histograms of thousands of shards never sit in memory at once.
    sums = dict.fromkeys(
        ("utterances", "seconds", "semantic_tokens", "semantic_runs", "acoustic_frames"), 0
    )
    lo: dict[str, Any] = {}
    hi: dict[str, Any] = {}
    sem_hist = np.zeros(meta["semantic"]["vocab_size"], np.int64)
    ac = meta["acoustic"]
    ac_hist = np.zeros((ac["levels"], ac["codebook_size"]), np.int64)
    skipped, duplicates = [], []
    for p in paths:
        info = _read_json(p + ".json")
        if info.get("tokenizers") != meta:
            raise ValueError(f"{p} was written with other tokenizers: {info.get('tokenizers')}")
        for k in sums:
            sums[k] += info.get(k, 0)  # semantic_runs: absent from older sidecars
        for k in ("seconds", "semantic", "acoustic"):
            if info[f"{k}_min"] is not None:
                lo[k] = min(lo.get(k, info[f"{k}_min"]), info[f"{k}_min"])
                hi[k] = max(hi.get(k, info[f"{k}_max"]), info[f"{k}_max"])
        sem_hist += np.asarray(info["semantic_histogram"], np.int64)
        ac_hist += np.asarray(info["acoustic_histograms"], np.int64)
        skipped += info["skipped"]
        duplicates += info["duplicates"]
    n, seconds = sums["utterances"], sums["seconds"]
    sem_tokens, ac_frames = sums["semantic_tokens"], sums["acoustic_frames"]
    stats = {
        "utterances": n,
        "semantic_histogram": sem_hist.tolist(),
        "acoustic_histograms": ac_hist.tolist(),
        "seconds": {**_minmeanmax(lo, hi, "seconds", seconds, n), "total": seconds},
        "semantic_per_utterance": _minmeanmax(lo, hi, "semantic", sem_tokens, n),
        "acoustic_frames_per_utterance": _minmeanmax(lo, hi, "acoustic", ac_frames, n),
        "skipped": skipped,
        "duplicates": duplicates,
    }
    stats_path = os.path.join(cache_dir, STATS)
    all_stats = _read_json(stats_path) if _exists(stats_path) else {}
    all_stats[split] = stats
    _write_json(stats_path, all_stats)

    manifest_path = os.path.join(cache_dir, MANIFEST)
    manifest = _read_json(manifest_path) if _exists(manifest_path) else {}
    splits = dict(manifest.get("splits", {}))
    splits[split] = {
        "num_shards": num_shards,
        "files": [os.path.basename(p) for p in paths],
        "utterances": n,
        "hours": seconds / 3600,
        "semantic_tokens": sem_tokens,
        "semantic_runs": sums["semantic_runs"],
        "acoustic_frames": ac_frames,
    }
    manifest = {
        "format": FORMAT,
        **meta,
        "splits": splits,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json(manifest_path, manifest)
    log.info(
        f"Token cache {split}: {n} utterances, {seconds / 3600:.2f} h, {sem_tokens} semantic ids, "
        f"{ac_frames} acoustic frames in {num_shards} shards; {manifest_path} written."
    )
    return manifest_path


# --- reading ---------------------------------------------------------------------------------


def shard_files(cache_dir: str, split: str) -> list[str]:
    """The complete shard files of `split`: the manifest's list, or (before there is one) the
    files under their final names."""
    manifest = os.path.join(cache_dir, MANIFEST)
    if _exists(manifest):
        entry = _read_json(manifest).get("splits", {}).get(split)
        if entry is not None:
            return [os.path.join(cache_dir, f) for f in entry["files"]]
    names = sorted(
        n for n in _listdir(cache_dir) if (m := _SHARD_RE.match(n)) and m["split"] == split
    )
    return [os.path.join(cache_dir, n) for n in names]


def parse_example(record: bytes) -> dict:
    """One serialized record -> {id, speaker, semantic int32 [T_s], codes int32 [T_a, Q],
    seconds}."""
    import tensorflow as tf

    f = tf.train.Example.FromString(record).features.feature
    q = int(f["levels"].int64_list.value[0])
    codes = np.asarray(f["codes"].int64_list.value, np.int32).reshape(-1, q)
    return {
        "id": f["id"].bytes_list.value[0].decode("utf-8"),
        "speaker": f["speaker"].bytes_list.value[0].decode("utf-8"),
        "semantic": np.asarray(f["semantic"].int64_list.value, np.int32),
        "codes": codes,
        "seconds": float(f["seconds"].float_list.value[0]),
    }


def read_cache(cache_dir: str, split: str) -> dict[str, dict]:
    """Every utterance of a split: {id: {"semantic" [T_s], "codes" [T_a, Q], "speaker",
    "seconds"}} (int32 tokens), in shard order. Raises ValueError on an id found twice."""
    import tensorflow as tf

    files = shard_files(cache_dir, split)
    out: dict[str, dict] = {}
    if not files:
        return out
    for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
        ex = parse_example(record)
        uid = ex.pop("id")
        if uid in out:
            raise ValueError(f"{cache_dir} {split}: utterance {uid!r} appears twice")
        out[uid] = ex
    return out


def read_manifest(cache_dir: str) -> dict:
    return _read_json(os.path.join(cache_dir, MANIFEST))


def read_stats(cache_dir: str) -> dict:
    return _read_json(os.path.join(cache_dir, STATS))


__all__ = [
    "FORMAT",
    "Tokenizers",
    "finalize",
    "parse_example",
    "process_shards",
    "read_cache",
    "read_manifest",
    "read_stats",
    "shard_files",
    "shard_name",
    "shard_of",
    "shard_path",
    "write_cache",
]
