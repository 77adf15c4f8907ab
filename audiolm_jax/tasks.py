"""Assembles (model, train data, eval data) from a config: the one place `config.model` is read.

Registered: the stage LMs (on synthetic tokens or the token cache), the SoundStream codec GAN,
w2v-BERT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from audiolm_jax.train.interface import DataSource, Model


def _lm_sources(config: Any) -> tuple[DataSource, DataSource | None]:
    """Synthetic Markov tokens (data.source "markov") or a stage's sequences from token caches
    through seqio (data.source "cache", see audiolm_jax.data.pipeline.cache_data_config)."""
    d = config.data
    if d.source == "cache":
        from audiolm_jax.data.pipeline import cache_sources

        return cache_sources(config)
    if d.source != "markov":
        raise ValueError(f"config.data.source must be 'markov' or 'cache', got {d.source!r}")
    import jax

    from audiolm_jax.data.synthetic import MarkovSource

    top = d.token_offset + d.vocab
    if top > config.lm.vocab_size or d.bos_id >= config.lm.vocab_size:
        raise ValueError(
            f"config.data emits ids up to {top - 1} (token_offset {d.token_offset} + vocab "
            f"{d.vocab}) but config.lm.vocab_size is {config.lm.vocab_size}"
        )
    kw = dict(
        vocab=d.vocab,
        batch_size=d.batch_size,
        seq_len=d.seq_len,
        successors=d.successors,
        lag=d.lag,
        seed=config.seed,
        token_offset=d.token_offset,
        bos_id=d.bos_id,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return MarkovSource(split="train", **kw), MarkovSource(split="eval", **kw)


class ShapeBatches:
    """Zero batches of the LM features at `config.data`'s shapes: what `--dry_run` plans with
    when the token cache is not on this machine (a pod config read on a laptop)."""

    def __init__(self, batch_size: int, seq_len: int):
        import numpy as np

        shape = (int(batch_size), int(seq_len))
        self.batch = {k: np.zeros(shape, np.int32) for k in ("inputs", "targets")}
        self.batch["weights"] = np.ones(shape, np.float32)
        self.batch["segment_ids"] = np.ones(shape, np.int32)
        self.batch["positions"] = np.broadcast_to(np.arange(shape[1], dtype=np.int32), shape)

    def __iter__(self):
        return self

    def __next__(self):
        return self.batch

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


def build_lm(config: Any, shapes_only: bool = False) -> tuple[Model, DataSource, DataSource]:
    """A stage LM on its token source (shapes_only: on `ShapeBatches` of the cache's shapes)."""
    from audiolm_jax.layouts import TokenLayout
    from audiolm_jax.lm.model import LanguageModel
    from audiolm_jax.lm.transformer import TransformerConfig

    cfg = TransformerConfig.from_config(config.lm)
    d = config.data
    if shapes_only and d.source == "cache":
        sources = (ShapeBatches(d.batch_size, d.seq_len), None)
        layout = None  # the cache (sizes, rates) may not be on this machine
    else:
        sources = _lm_sources(config)
        layout = TokenLayout(**d.resolved.layout.to_dict()) if d.source == "cache" else None
    how = d.get("layout", {}).get("coarse_semantic", "dedup") if d.source == "cache" else None
    aligned = d.get("stage") == "coarse" and how == "aligned"
    if aligned != cfg.cond_embed:
        raise ValueError(
            "config.data.layout.coarse_semantic='aligned' (coarse stage) needs "
            "--config.lm.cond_embed=True"
            if aligned
            else "config.lm.cond_embed=True is only for the coarse stage with "
            "config.data.layout.coarse_semantic='aligned'"
        )
    conditioning = None
    if aligned:
        # Shapes only: any ids of the right shape do (the values need the cache's layout).
        conditioning = layout.coarse_conditioning if layout else lambda ids, pos: ids * 0
    model = LanguageModel(cfg, z_loss=config.z_loss, conditioning=conditioning)
    return (model, *sources)


def audio_sources(config: Any, sample_rate: int) -> tuple[DataSource, DataSource]:
    """Train and eval clip sources from `config.data`: source "corpus" (the embedded one),
    "folder" (`data.path`) or "synth" (`audiolm_jax.data.synth_speech`: `data.synth_utterances`
    sentences read by flite and espeak-ng, built at first use in `data.path`, or under
    ~/.cache/audiolm_jax when it is empty, and split as a folder)."""
    import jax

    from audiolm_jax import dsp
    from audiolm_jax.data import audio

    d = config.data
    if d.source == "corpus":
        paths = {s: [e["path"] for e in audio.corpus_entries(s)] for s in ("train", "eval")}
    elif d.source in ("folder", "synth"):
        root = d.path
        if d.source == "synth":
            from audiolm_jax.data import synth_speech

            n = int(d.synth_utterances)
            root = synth_speech.ensure(root or synth_speech.default_root(n, 0), n)
        files = dsp.list_audio(root)
        if len(files) < 2:
            raise ValueError(f"config.data.path={root!r} holds {len(files)} audio files; need 2+")
        paths = {s: audio.split_files(files, s, int(d.eval_every)) for s in ("train", "eval")}
    else:
        raise ValueError(
            f"config.data.source must be 'corpus', 'folder' or 'synth', got {d.source!r}"
        )
    sources = []
    for split in ("train", "eval"):
        waves, _ = audio.load_clips(paths[split], sample_rate, d.get("normalize_db"))
        sources.append(
            audio.AudioClips(
                waves,
                clip_samples=int(round(d.clip_seconds * sample_rate)),
                batch_size=int(d.batch_size),
                seed=config.seed,
                split=split,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                speed_perturb=float(d.get("speed_perturb", 0.0)) if split == "train" else 0.0,
            )
        )
    return sources[0], sources[1]


def build_soundstream(
    config: Any, shapes_only: bool = False
) -> tuple[Model, DataSource, DataSource]:
    """The SoundStream codec GAN on clips of audio (shapes_only changes nothing: the clips are
    read from local files, which a dry run has)."""
    from audiolm_jax.codec.model import SoundStream

    model = SoundStream.from_config(config)
    hop = model.cfg.hop
    clip = int(round(config.data.clip_seconds * model.cfg.sample_rate))
    if clip % hop:
        raise ValueError(
            f"config.data.clip_seconds={config.data.clip_seconds} gives {clip} samples, not a "
            f"multiple of the codec's hop {hop}"
        )
    return (model, *audio_sources(config, model.cfg.sample_rate))


def build_w2v_bert(config: Any, shapes_only: bool = False) -> tuple[Model, DataSource, DataSource]:
    """w2v-BERT pretraining on clips of audio (shapes_only: as for build_soundstream)."""
    from audiolm_jax.semantic.w2v_bert import W2VBert

    model = W2VBert.from_config(config)
    return (model, *audio_sources(config, model.cfg.sample_rate))


def build_detector(config: Any, shapes_only: bool = False) -> tuple[Model, DataSource, DataSource]:
    """The generated-speech detector on the clips of `config.detector.data_dir`'s manifest
    (audiolm_jax/detector.py; `--mode=train_detector` writes the data first)."""
    from audiolm_jax.detector import DetectorConfig, DetectorModel, detector_sources

    cfg = DetectorConfig.from_config(config.detector_net)
    return (DetectorModel(cfg), *detector_sources(config, cfg))


TASKS: dict[str, Callable[[Any, bool], tuple[Model, DataSource, DataSource]]] = {
    "detector": build_detector,
    "lm": build_lm,
    "soundstream": build_soundstream,
    "w2v_bert": build_w2v_bert,
}


def build(config: Any, shapes_only: bool = False) -> tuple[Model, DataSource, DataSource]:
    """(model, train source, eval source) for `config.model`. shapes_only (`--dry_run`): a
    stage LM reading a token cache gets zero batches of its shapes instead of the cache."""
    if config.model not in TASKS:
        raise ValueError(f"config.model={config.model!r} is not one of {sorted(TASKS)}")
    return TASKS[config.model](config, shapes_only)
