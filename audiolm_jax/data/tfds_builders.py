"""tensorflow-datasets builders over local audio corpora (`audiolm_jax.data.sources`): nothing is
downloaded; the builder reads the files, cuts and normalises them, and writes tfds' TFRecord
shards with a train and a validation split (whole speakers held out).

Features: id (text, unique: the file's path under the root plus a segment index), speaker (text),
audio (float32 [samples] at the source's rate, decoded by soundfile: the builder stores arrays,
not paths, so tfds' own Audio feature and its pydub/ffmpeg decoding are not involved), path
(text), start_seconds (float32: where the segment starts in its file).

`build_dataset` writes `<data_dir>/<name>/<version>/` (tfds' files) and, beside the version
folders, `bad_files.txt` (path <TAB> reason per skipped file) and `summary.json` (what
`build_dataset` returns). Each name gets its own builder class, made on demand and kept out of
tfds' global registry, so any number of corpora can be built in one process;
`load_examples` reads a built dataset back through `tfds.builder_from_directory`, no class needed.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from audiolm_jax.data import sources
from audiolm_jax.data.sources import AudioSourceConfig

log = logging.getLogger("audiolm_jax")

DATASET_VERSION = "1.0.0"
BAD_FILES = "bad_files.txt"
SUMMARY = "summary.json"


class LocalAudio(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A local audio corpus (`AudioSourceConfig`) as a tfds dataset named "local_audio"; other
    names are subclasses made by `builder_class`. Pass `source=` to build; reading a prepared
    dataset needs only `data_dir`. After `download_and_prepare`, `bad_files` lists the
    (path, reason) of every file skipped and `stats` each split's examples, samples and
    speakers."""

    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES = {
        DATASET_VERSION: "Local audio: mono, resampled, loudness-normalised, cut at silences."
    }

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """None: no checksums file or dataset folder beside the code (nothing is downloaded).
        tfds' own lookup goes through `importlib_resources`, which not every environment has."""
        return None

    def __init__(self, *, source: AudioSourceConfig | None = None, **kwargs):
        self.source = source
        self.bad_files: list[tuple[str, str]] = []
        self.stats: dict[str, dict] = {}  # per split, filled while generating
        self.entries: dict[str, list[sources.FileEntry]] = {}
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        rate = self.source.sample_rate if self.source is not None else None
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Local audio corpus read by audiolm_jax.data.sources: mono float32 "
                f"{rate or ''} Hz segments, validation = held-out speakers."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "speaker": tfds.features.Text(),
                    "audio": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "path": tfds.features.Text(),
                    "start_seconds": tfds.features.Scalar(dtype=np.float32),
                }
            ),
            metadata=tfds.core.MetadataDict(
                source=self.source.to_dict() if self.source is not None else None
            ),
        )

    def _split_generators(self, dl_manager):
        if self.source is None:
            raise ValueError(f"{self.name}: building needs source=AudioSourceConfig(...)")
        splits = self.entries = sources.split_speakers(sources.list_files(self.source), self.source)
        for split, entries in splits.items():
            log.info("%s %s: %d files", self.name, split, len(entries))
        if not splits["train"]:
            raise ValueError(f"no audio files found under {self.source.root}")
        # tfds needs an example in every split: each split's first good file is read here, and
        # a split without one (one speaker; only bad files) is left out, its bad files recorded.
        generators = {}
        for split, entries in splits.items():
            examples = self._generate_examples(split, entries)
            first = next(examples, None)
            if first is not None:
                generators[split] = itertools.chain([first], examples)
            elif entries:
                log.warning("%s: no usable file in split %s: split left out", self.name, split)
        if not generators:
            raise ValueError(
                f"no usable audio under {self.source.root}: all {len(self.bad_files)} files bad"
            )
        return generators

    def _generate_examples(self, split, entries):
        stats = self.stats[split] = {"examples": 0, "samples": 0, "speakers": set()}
        for ex in sources.iterate_examples(self.source, entries=entries, bad_files=self.bad_files):
            stats["examples"] += 1
            stats["samples"] += len(ex["audio"])
            stats["speakers"].add(ex["speaker"])
            yield ex["id"], ex


_CLASSES: dict[str, type[LocalAudio]] = {"local_audio": LocalAudio}


def builder_class(name: str) -> type[LocalAudio]:
    """The builder class for dataset `name` (lower-case letters, digits, underscores): a
    `LocalAudio` subclass, made once per process and never registered with tfds, so names never
    clash with each other or with tfds' catalogue."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"dataset name must match [a-z][a-z0-9_]*, got {name!r}")
    if name not in _CLASSES:
        camel = "".join(p.capitalize() for p in name.split("_")) or "LocalAudio"
        attrs = {"name": name, "__module__": __name__, "__qualname__": camel}
        _CLASSES[name] = type(camel, (LocalAudio,), attrs, skip_registration=True)
    return _CLASSES[name]


def build_dataset(
    cfg: AudioSourceConfig, data_dir: str, name: str = "local_audio", overwrite: bool = False
) -> dict:
    """Builds the tfds dataset `name` under `data_dir` from the corpus `cfg` describes (reusing
    one already built from the same config unless `overwrite`), and returns its summary:
    {"name", "tfds_dir" (the version folder `load_examples` reads), "splits": {split:
    {"examples", "hours", "speakers"}}, "bad_files" (count), "bad_files_list" (path of the
    tab-separated list), "files" (listed), "source" (the config)}. Bad files are logged and
    skipped, never fatal; the summary is also written to `<data_dir>/<name>/summary.json` and
    logged."""
    builder = builder_class(name)(source=cfg, data_dir=data_dir)
    out_dir = os.path.join(data_dir, name)
    summary_path = os.path.join(out_dir, SUMMARY)
    if builder.is_prepared() and not overwrite and os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        if summary.get("source") == cfg.to_dict():
            log.info(
                "Reusing dataset %s at %s (%d bad files, list: %s).",
                name,
                builder.data_dir,
                summary["bad_files"],
                summary["bad_files_list"],
            )
            return summary
        log.info("Dataset %s at %s was built from another source: rebuilding.", name, out_dir)
    # Anything else (a half-built folder, another source, overwrite) is built afresh.
    os.makedirs(out_dir, exist_ok=True)
    bad_list = os.path.join(out_dir, BAD_FILES)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD, try_download_gcs=False
            )
        )
    finally:  # the list is written even when the build fails (e.g. every file bad)
        with open(bad_list, "w", encoding="utf-8") as f:
            for path, reason in builder.bad_files:
                f.write(f"{path}\t{' '.join(str(reason).split())}\n")
    summary = {
        "name": name,
        "tfds_dir": builder.data_dir,
        "splits": {
            s: {
                "examples": st["examples"],
                "hours": st["samples"] / cfg.sample_rate / 3600,
                "speakers": len(st["speakers"]),
            }
            for s, st in builder.stats.items()
            if st["examples"]
        },
        "bad_files": len(builder.bad_files),
        "bad_files_list": bad_list,
        "files": sum(len(es) for es in builder.entries.values()),
        "source": cfg.to_dict(),
    }
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    split_text = ", ".join(
        f"{s} {v['examples']} examples / {v['hours']:.3f} h / {v['speakers']} speakers"
        for s, v in summary["splits"].items()
    )
    log.info(
        "Built %s at %s: %s; %d bad files skipped (list: %s).",
        name,
        builder.data_dir,
        split_text,
        summary["bad_files"],
        bad_list,
    )
    return summary


def dataset_dir(data_dir: str, name: str = "local_audio") -> str:
    """The version folder of a built dataset (`<data_dir>/<name>/<newest version>`)."""
    root = os.path.join(data_dir, name)
    versions = (
        [v for v in os.listdir(root) if re.fullmatch(r"\d+\.\d+\.\d+", v)]
        if os.path.isdir(root)
        else []
    )
    if not versions:
        raise FileNotFoundError(f"no built dataset {name} under {data_dir}")
    return os.path.join(root, max(versions, key=lambda v: tuple(int(p) for p in v.split("."))))


def load_examples(data_dir: str, name: str = "local_audio", split: str = "train") -> Iterator[dict]:
    """The examples of a built dataset's `split` as numpy dicts (id, speaker, path as str;
    audio float32 [n]; start_seconds), in tfds' stored order, read through
    `tfds.builder_from_directory` (no builder class or source needed): the dicts
    `sources.iterate_examples` yields, so the token cache takes either."""
    builder = tfds.builder_from_directory(dataset_dir(data_dir, name))
    for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        yield {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in ex.items()}
