"""A detector of generated speech, shipped with the generator.

AudioLM's authors trained, beside the generator, a classifier that tells its speech from real
speech (98.6% accuracy; arXiv:2209.03143, sec. 7), so that a model that can continue anyone's
voice comes with a way to recognise its output. This is ours: a small convolutional network over
log-mel frames, trained by the project's trainer on real clips against the codec's resynthesis
and the full pipeline's samples, with the cues that would make it trivial taken away by design:

- loudness: every clip is scaled to unit RMS inside the network, so gain never reaches it;
- bandwidth: the mel filters stop at `bandwidth_hz` (default 7 kHz at 16 kHz), so a codec that
  drops the top octave cannot be spotted by that alone;
- length: per-frame logits averaged over time (fully convolutional), so a clip's length does
  not move its score; training crops are all `clip_seconds` long.

    from audiolm_jax.detector import load_detector, detect
    det = load_detector("runs/quickstart/detector")
    detect(det, wav, sample_rate=16000)     # probability that `wav` was generated, in (0, 1)

    python launch.py --config=detector_tiny --mode=train_detector --workdir=runs/q/detector \\
        --config.detector.pipeline=runs/q/pipeline
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import dsp
from audiolm_jax.train.interface import Batch, Model

log = logging.getLogger("audiolm_jax")

KINDS = ("resynthesis", "pipeline")  # the two kinds of generated audio


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 160  # 10 ms frames at 16 kHz
    n_mels: int = 64
    bandwidth_hz: float = 7000.0  # mel filters stop here: no cue from the top of the band
    channels: tuple[int, ...] = (16, 32, 48)
    dropout: float = 0.1

    @classmethod
    def from_config(cls, cfg: Any) -> DetectorConfig:
        from audiolm_jax.config import dataclass_from_config

        channels = tuple(int(c) for c in cfg.get("channels", cls.channels))
        out = dataclass_from_config(cls, cfg, "detector_net", channels=channels)
        if not 0 < out.bandwidth_hz <= out.sample_rate / 2:
            raise ValueError(
                f"config.detector_net.bandwidth_hz={out.bandwidth_hz} must be in "
                f"(0, {out.sample_rate / 2}]"
            )
        return out


def log_mel(cfg: DetectorConfig, wav: jax.Array) -> jax.Array:
    """[batch, samples] -> log-mel [batch, frames, n_mels] of the clip scaled to unit RMS,
    mel filters from 0 to `bandwidth_hz`."""
    wav = wav.astype(jnp.float32)
    wav = wav / jnp.sqrt(jnp.mean(wav**2, axis=-1, keepdims=True) + 1e-10)
    mag = dsp.stft_magnitude(wav, cfg.n_fft, cfg.hop)
    fb = dsp.mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, fmax=cfg.bandwidth_hz)
    return jnp.log(mag @ jnp.asarray(fb) + 1e-4)


class DetectorNet(nn.Module):
    """Log-mel -> conv blocks (3x3, GELU, 2x pooling over mel bands only, so time keeps its
    resolution) -> a logit per frame -> their mean: [batch, samples] -> [batch] logits."""

    cfg: DetectorConfig

    @nn.compact
    def __call__(self, wav: jax.Array, train: bool = False) -> jax.Array:
        x = log_mel(self.cfg, wav)
        # Per-clip standardisation of each band: the spectral tilt of a voice or a room is not
        # what should decide.
        x = (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-3)
        h = x[..., None]
        for i, c in enumerate(self.cfg.channels):
            h = nn.Conv(c, (3, 3), padding="SAME", name=f"conv{i}")(h)
            h = nn.gelu(h)
            h = nn.avg_pool(h, (1, 2), strides=(1, 2))
        h = h.mean(axis=2)  # over the remaining mel bands: [batch, frames, channels]
        h = nn.Dropout(self.cfg.dropout, deterministic=not train)(h)
        frame_logits = nn.Dense(1, name="head")(h)[..., 0]
        return frame_logits.mean(axis=1)


class DetectorModel(Model):
    """The detector as a trainer Model: batches {"wav": [b, samples], "label": [b]} (1 =
    generated), sigmoid cross-entropy."""

    groups = ("model",)

    def __init__(self, cfg: DetectorConfig):
        self.cfg = cfg
        self.net = DetectorNet(cfg)

    def init(self, rng, batch):
        return {"model": self.net.init(rng, jnp.asarray(batch["wav"]))["params"]}, {}

    def loss(self, group, params, model_state, batch, rng, train):
        logits = self.net.apply(
            {"params": params["model"]}, batch["wav"], train, rngs={"dropout": rng}
        )
        labels = batch["label"].astype(jnp.float32)
        loss = jnp.mean(
            jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))
        )
        acc = jnp.mean((logits > 0) == (labels > 0.5))
        return loss, (model_state, {"loss": loss, "accuracy": acc})

    def tokens(self, batch: Batch) -> int:
        return int(np.shape(batch["wav"])[0])


# ---- data ----------------------------------------------------------------------------------


class DetectorClips:
    """Endless balanced batches {"wav": [rows, clip], "label": [rows]}: half random crops of
    real clips (label 0), half of generated ones (label 1; the kinds mixed by their share), each
    crop at a random gain (-12..+6 dB; the network normalises it away, the data do not rely on
    that). Deterministic in (seed, split, index): the trainer's resume replays it."""

    def __init__(
        self,
        real: Sequence[np.ndarray],
        generated: Sequence[np.ndarray],
        *,
        clip_samples: int,
        batch_size: int,
        seed: int,
        split: str,
    ):
        if not real or not generated:
            raise ValueError(
                f"the detector's {split} split needs real and generated clips; got "
                f"{len(real)} real and {len(generated)} generated"
            )
        if batch_size % 2:
            raise ValueError(f"detector batch_size must be even (half real), got {batch_size}")
        self.pools = (list(real), list(generated))
        self.clip, self.rows, self.seed, self.split = int(clip_samples), batch_size, seed, split
        self.index = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        split_id = {"train": 0, "eval": 1}.get(self.split, 2)
        rng = np.random.default_rng([self.seed, split_id, self.index])
        wav = np.zeros((self.rows, self.clip), np.float32)
        label = np.zeros((self.rows,), np.int32)
        for r in range(self.rows):
            cls = r % 2
            pool = self.pools[cls]
            w = pool[int(rng.integers(len(pool)))]
            start = int(rng.integers(0, max(len(w) - self.clip, 0) + 1))
            piece = w[start : start + self.clip]
            wav[r, : len(piece)] = piece * 10 ** (rng.uniform(-12, 6) / 20)
            label[r] = cls
        self.index += 1
        return {"wav": wav, "label": label}

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])


MANIFEST = "manifest.json"


def read_manifest(data_dir: str) -> list[dict]:
    """Entries {path, kind: real | resynthesis | pipeline, split: train | eval, ...} of a
    folder written by `make_detector_data`."""
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no detector data at {data_dir} ({MANIFEST} missing): run --mode=train_detector "
            "with --config.detector.pipeline=DIR, which writes it"
        )
    with open(path) as f:
        return json.load(f)["entries"]


def _crops(entries, kinds, split, rate, min_seconds) -> list[np.ndarray]:
    out = []
    for e in entries:
        if e["kind"] in kinds and e["split"] == split:
            wav, _ = dsp.read_audio(e["path"], rate)
            if len(wav) >= min_seconds * rate:
                out.append(wav)
    return out


def control_halves(clips: Sequence[Any], seed: int) -> tuple[list, list]:
    """The real-vs-real control's two classes: `clips` split by a seeded coin per clip."""
    coin = np.random.default_rng([seed, 7]).random(len(clips)) < 0.5
    return [c for c, h in zip(clips, coin) if not h], [c for c, h in zip(clips, coin) if h]


def detector_sources(config: Any, cfg: DetectorConfig) -> tuple[DetectorClips, DetectorClips]:
    """Train / eval sources from `config.detector.data_dir`'s manifest. With
    `config.detector.control` the generated clips are left out and the real clips are split in
    two halves by a coin per clip, labelled 0 and 1: a real-vs-real control that must stay at
    chance."""
    d = config.detector
    entries = read_manifest(d.data_dir)
    rate, clip = cfg.sample_rate, float(d.clip_seconds)
    sources = []
    for split in ("train", "eval"):
        real = _crops(entries, ("real",), split, rate, 0.25)
        if d.get("control"):
            real, gen = control_halves(real, int(config.seed))
        else:
            gen = _crops(entries, KINDS, split, rate, 0.25)
        batch = int(config.data.batch_size)
        sources.append(
            DetectorClips(
                real,
                gen,
                clip_samples=int(round(clip * rate)),
                batch_size=batch,
                seed=int(config.seed),
                split=split,
            )
        )
    return sources[0], sources[1]


def make_detector_data(
    out_dir: str,
    *,
    codec: Any = None,
    real: Sequence[Mapping],
    resynthesize: Any = None,
    sample_rate: int | None = None,
    pipe: Any = None,
    prompt_seconds: float = 1.0,
    seconds: float = 3.0,
    pipeline_per_clip: int = 1,
    seed: int = 0,
) -> list[dict]:
    """Writes the detector's data: every real clip of `real` (entries with path, split,
    speaker) at -20 dBFS, its resynthesis through `codec`, and, with a pipeline, continuations
    of its first `prompt_seconds` for `seconds` (the generated part only) -- all at the codec's
    rate and -20 dBFS, so loudness matches. `resynthesize(wav) -> wav` at `sample_rate` replaces
    the codec (another generator of "resynthesis" clips). Returns the manifest entries (also in
    out_dir/manifest.json)."""
    from audiolm_jax import codec as codec_lib

    if resynthesize is None:
        rate = codec.sample_rate
        resynthesize = functools.partial(codec_lib.resynthesize, codec)
    else:
        rate = int(sample_rate or 16000)
    os.makedirs(out_dir, exist_ok=True)
    entries = []

    def put(name, wav, kind, e):
        path = os.path.join(out_dir, f"{name}.wav")
        dsp.write_audio(path, np.clip(dsp.normalize_loudness(wav, -20.0), -0.99, 0.99), rate)
        entries.append(
            {"path": os.path.abspath(path), "kind": kind, "split": e["split"],
             "speaker": e.get("speaker", ""), "source": os.path.basename(e["path"])}
        )  # fmt: skip

    for i, e in enumerate(real):
        wav, _ = dsp.read_audio(e["path"], rate)
        if float(np.sqrt(np.mean(wav**2))) < 1e-5:
            continue
        put(f"real_{i:04d}", wav, "real", e)
        resyn = np.asarray(resynthesize(wav), np.float32)[: len(wav)]
        if float(np.sqrt(np.mean(resyn**2))) > 1e-5:
            put(f"resynthesis_{i:04d}", resyn, "resynthesis", e)
        if pipe is not None and len(wav) >= prompt_seconds * rate:
            from audiolm_jax.sampling.pipeline import sample

            prompt = wav[: int(prompt_seconds * rate)]
            outs = sample(
                pipe,
                prompt,
                seconds=seconds,
                rng=jax.random.key(seed * 100_003 + i),
                batch_size=pipeline_per_clip,
            )
            for j, cont in enumerate(np.asarray(outs)):
                if float(np.sqrt(np.mean(cont**2))) > 1e-5:
                    put(f"pipeline_{i:04d}_{j}", cont, "pipeline", e)
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump({"sample_rate": rate, "entries": entries}, f, indent=2)
    counts = {
        (k, s): sum(e["kind"] == k and e["split"] == s for e in entries)
        for k in ("real", *KINDS)
        for s in ("train", "eval")
    }
    log.info("Detector data in %s: %s", out_dir, {f"{k}/{s}": n for (k, s), n in counts.items()})
    return entries


# ---- inference -----------------------------------------------------------------------------


@flax.struct.dataclass
class Detector:
    """A trained detector: parameters and its (static) config."""

    params: dict
    cfg: DetectorConfig = flax.struct.field(pytree_node=False)


def load_detector(workdir: str, step: int | None = None) -> Detector:
    """The detector trained in `workdir` (newest checkpoint, or `step`)."""
    from audiolm_jax.train.checkpoint import read_trained

    _, state, config = read_trained(workdir, "detector", "a detector", step)
    return Detector(state["params"]["model"], DetectorConfig.from_config(config.detector_net))


@functools.partial(jax.jit, static_argnums=0)
def _logits(cfg: DetectorConfig, params: dict, wav: jax.Array) -> jax.Array:
    return DetectorNet(cfg).apply({"params": params}, wav)


def detect(det: Detector, wav: Any, sample_rate: int | None = None) -> np.ndarray | float:
    """Probability that `wav` ([samples] or [batch, samples], any length of at least a few
    frames) was generated. Resampled to the detector's rate when `sample_rate` differs; loudness
    does not matter. A float for one clip, an array for a batch."""
    x = np.asarray(wav, np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] < 4 * det.cfg.hop:
        raise ValueError(
            f"detect: wav must be [samples] or [batch, samples] with at least {4 * det.cfg.hop} "
            f"samples, got shape {x.shape}"
        )
    if sample_rate and sample_rate != det.cfg.sample_rate:
        x = np.stack([dsp.resample(r, sample_rate, det.cfg.sample_rate) for r in np.atleast_2d(x)])
    batch = np.atleast_2d(x)
    p = np.asarray(jax.nn.sigmoid(_logits(det.cfg, det.params, jnp.asarray(batch))))
    return float(p[0]) if x.ndim == 1 else p


# ---- figures -------------------------------------------------------------------------------


def auc(scores_negative: Sequence[float], scores_positive: Sequence[float]) -> float:
    """Area under the ROC curve: P(a positive scores above a negative), ties count half
    (the Mann-Whitney U statistic / (n_neg * n_pos))."""
    neg, pos = np.asarray(scores_negative, float), np.asarray(scores_positive, float)
    if not len(neg) or not len(pos):
        raise ValueError(f"auc needs both classes, got {len(neg)} negatives, {len(pos)} positives")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(neg) * len(pos)))


def detection_figures(p_real: Sequence[float], p_generated: Sequence[float], bins: int = 10):
    """Accuracy, precision and recall (generated = positive, threshold 0.5), AUC, and a
    calibration table (per bin of predicted probability: mean prediction, fraction generated,
    count) for one kind of generated audio against the real clips."""
    pr, pg = np.asarray(p_real, float), np.asarray(p_generated, float)
    tp, fn = int((pg >= 0.5).sum()), int((pg < 0.5).sum())
    fp, tn = int((pr >= 0.5).sum()), int((pr < 0.5).sum())
    probs = np.concatenate([pr, pg])
    truth = np.concatenate([np.zeros(len(pr)), np.ones(len(pg))])
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges) - 1, 0, bins - 1)
    calibration = [
        {
            "bin": [float(edges[b]), float(edges[b + 1])],
            "mean_predicted": float(probs[which == b].mean()),
            "fraction_generated": float(truth[which == b].mean()),
            "count": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]
    return {
        "auc": auc(pr, pg),
        "accuracy": (tp + tn) / max(len(probs), 1),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "real_clips": len(pr),
        "generated_clips": len(pg),
        "calibration": calibration,
    }


def evaluate_detector(
    det: Detector,
    entries: Sequence[Mapping],
    *,
    split: str = "eval",
    seconds: float = 2.0,
    control_seed: int | None = None,
) -> dict:
    """Detection figures on `split`'s clips of a manifest, each kind against the real clips,
    every clip cut to the same `seconds` (shorter clips are left out) so length cannot tell.
    With `control_seed` (a detector trained as the real-vs-real control): the two coin halves
    of the real clips (`control_halves`) against each other, under "control"."""
    rate = det.cfg.sample_rate
    n = int(seconds * rate)
    scores: dict[str, list[float]] = {"real": [], **{k: [] for k in KINDS}}
    for e in entries:
        if e["split"] != split or e["kind"] not in scores:
            continue
        wav, _ = dsp.read_audio(e["path"], rate)
        if len(wav) >= n:
            scores[e["kind"]].append(detect(det, wav[:n]))
    out = {"clip_seconds": seconds, "split": split}
    if control_seed is not None:
        a, b = control_halves(scores["real"], control_seed)
        out["control"] = detection_figures(a, b)
        return out
    for kind in KINDS:
        if scores[kind] and scores["real"]:
            out[kind] = detection_figures(scores["real"], scores[kind])
    return out
