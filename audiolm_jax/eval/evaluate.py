"""The evaluation report of a trained pipeline (or codec): numbers a paper reader recognises,
grouped by who is speaking.

    from audiolm_jax.eval.evaluate import evaluate
    report = evaluate(out_dir, pipe=load_pipeline("runs/quickstart/pipeline"))
    # or the workflow: python launch.py --config=quickstart --mode=eval

Sections (each present when its parts exist; see `evaluate`):
- codec: every clip of the labelled corpus (eval/corpus.py) through the codec: multi-scale mel
  distance, SI-SDR, STOI, ViSQOL, DNSMOS of the resynthesis, and word error rates of the
  resynthesis and of the original through the recogniser (pocketsphinx, or the caller's);
- continuation: the pipeline continues the first seconds of one clip per voice: speaker
  similarity of continuation to prompt and DNSMOS of the continuation;
- abx: the semantic tokens' ABX error on isolated words across voices (semantic/abx.py);
- lexical: sWUGGY-style accuracy of the semantic stage on real vs pseudo-words (zerospeech.py);
- validation_loss: per stage and per RVQ level (sampling.pipeline.score) on the corpus clips;
- curves: train and held-out loss per stage from the workdirs' TensorBoard events.
Every per-clip section is grouped by accent and by speaker (eval/report.py).
"""

from __future__ import annotations

import datetime
import functools
import glob
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from audiolm_jax import dsp
from audiolm_jax.eval import asr, metrics, speaker
from audiolm_jax.eval.corpus import write_labelled_corpus
from audiolm_jax.eval.report import group_metrics

log = logging.getLogger("audiolm_jax")

GROUP_BY = ("accent", "speaker")
# Metrics our report adds beyond metrics.DIRECTIONS.
EXTRA_DIRECTIONS = {"wer_original": "lower"}
PAD_SECONDS = 0.5  # clips are padded to multiples of this: few compiled shapes


def _pad(wav: np.ndarray, rate: int) -> np.ndarray:
    unit = int(PAD_SECONDS * rate)
    return np.pad(wav, (0, -len(wav) % unit))


def _measure(row: dict, clip: str, **thunks: Callable[[], float]) -> None:
    """row[name] = thunk() for each metric; a metric that cannot be computed on this output
    (e.g. DNSMOS of a silent resynthesis from an untrained codec) is left out of the row, so
    its group's mean and count say so, and logged with the reason."""
    for name, thunk in thunks.items():
        try:
            value = float(thunk())
        except ValueError as e:
            log.warning("eval: %s of %s not measured: %s", name, clip, e)
            continue
        if np.isfinite(value):
            row[name] = value
        else:
            log.warning("eval: %s of %s not measured: the metric returned %s", name, clip, value)


def _grouped(rows: list[dict], by: Sequence[str]) -> dict:
    return {
        b: group_metrics(rows, b, directions=EXTRA_DIRECTIONS)
        for b in by
        if all(b in r for r in rows)
    }


def codec_section(
    codec: Any,
    entries: Sequence[Mapping],
    *,
    recognizer: Callable | None = None,
    spectrogram_dir: str | None = None,
    by: Sequence[str] = GROUP_BY,
    resynthesize: Callable[[np.ndarray], np.ndarray] | None = None,
    sample_rate: int | None = None,
    description: str | None = None,
) -> dict:
    """Resynthesis quality per clip of `entries` (write_labelled_corpus) through `codec`
    (all its levels), or through any `resynthesize(wav) -> wav` at `sample_rate` (codec=None):
    another codec, a baseline such as Opus, a deliberately degraded channel."""
    from audiolm_jax import codec as codec_lib

    if resynthesize is None:
        rate = codec.sample_rate
        resynthesize = functools.partial(codec_lib.resynthesize, codec, bucket_seconds=PAD_SECONDS)
        description = description or f"the codec ({codec.levels} RVQ levels)"
    else:
        rate = int(sample_rate or 16000)
        description = description or "the given resynthesis"
    rows, pngs = [], []
    for i, e in enumerate(entries):
        wav, _ = dsp.read_audio(e["path"], rate)
        padded = _pad(wav, rate)
        est = np.asarray(resynthesize(padded), np.float32)
        est_padded = np.pad(est, (0, max(0, len(padded) - len(est))))[: len(padded)]
        est = est_padded[: len(wav)]
        row = {k: e[k] for k in ("clip", "speaker", "accent", "language") if k in e}
        _measure(
            row,
            e["clip"],
            mel_distance=lambda: metrics.mel_distance(padded, est_padded, rate),
            si_sdr=lambda: metrics.si_sdr(wav, est),
            stoi=lambda: metrics.stoi(wav, est, rate),
            visqol=lambda: metrics.visqol(wav, est, rate),
            dnsmos_ovrl=lambda: metrics.dnsmos(est, rate)["dnsmos_ovrl"],
        )
        if e.get("text"):
            text = e["text"]
            _measure(
                row,
                e["clip"],
                wer=lambda: metrics.wer(text, asr.transcribe(est, rate, recognizer)),
                wer_original=lambda: metrics.wer(text, asr.transcribe(wav, rate, recognizer)),
            )
        rows.append(row)
        if spectrogram_dir and i < 2:
            png = os.path.join(spectrogram_dir, f"codec_{e['clip']}.png")
            dsp.write_spectrogram_png(png, np.concatenate([wav, np.zeros(rate // 10), est]), rate)
            pngs.append({"title": f"{e['clip']}: original | resynthesis", "png": png})
    return {
        "description": f"{len(rows)} clips through {description}; wer_original is the "
        "recogniser on the original audio",
        "rows": rows,
        "groups": _grouped(rows, by),
        "spectrograms": pngs,
    }


def continuation_section(
    pipe: Any,
    entries: Sequence[Mapping],
    *,
    prompt_seconds: float = 2.0,
    seconds: float = 2.0,
    seed: int = 0,
    spectrogram_dir: str | None = None,
    by: Sequence[str] = GROUP_BY,
) -> dict:
    """Continues the first `prompt_seconds` of the first clip of each speaker for `seconds`:
    speaker similarity of continuation to prompt, DNSMOS of the continuation."""
    import jax

    from audiolm_jax.sampling.pipeline import sample

    rate = pipe.sample_rate
    firsts = {}
    for e in entries:
        firsts.setdefault(e.get("speaker", e["clip"]), e)
    rows, pngs = [], []
    for i, e in enumerate(firsts.values()):
        wav, _ = dsp.read_audio(e["path"], rate)
        prompt = wav[: int(prompt_seconds * rate)]
        cont = np.asarray(sample(pipe, prompt, seconds=seconds, rng=jax.random.key(seed + i)))[0]
        row = {k: e[k] for k in ("clip", "speaker", "accent", "language") if k in e}
        _measure(
            row,
            e["clip"],
            speaker_similarity=lambda: speaker.speaker_similarity(prompt, cont, rate),
            dnsmos_ovrl=lambda: metrics.dnsmos(cont, rate)["dnsmos_ovrl"],
        )
        rows.append(row)
        if spectrogram_dir and i < 3:
            png = os.path.join(spectrogram_dir, f"continuation_{e['clip']}.png")
            dsp.write_spectrogram_png(png, np.concatenate([prompt, cont]), rate)
            wav_out = png[:-4] + ".wav"
            dsp.write_audio(wav_out, np.concatenate([prompt, cont]), rate)
            pngs.append({"title": f"{e['clip']}: {prompt_seconds:g} s prompt + continuation",
                         "png": png, "wav": wav_out})  # fmt: skip
    return {
        "description": f"{len(rows)} prompts of {prompt_seconds:g} s continued for {seconds:g} s",
        "rows": rows,
        "groups": _grouped(rows, by),
        "spectrograms": pngs,
    }


def abx_section(tokenizer: Any, work_dir: str, words: Sequence[str] | None = None) -> dict:
    """ABX error of the semantic tokens on isolated words read by two synthesisers."""
    from audiolm_jax.semantic import abx

    items = abx.synthesize_words(list(words or abx.WORDS), work_dir)
    r = abx.tokenizer_abx(tokenizer, items, abx.read_items(items))
    return {
        # abx_error reports percentages; the report keeps fractions like its other rates.
        "error_rate": float(r["across"]["error"]) / 100,
        "triplets": int(r["across"]["triplets"]),
        "per_direction": {k: float(v) / 100 for k, v in r["across"]["per_direction"].items()},
        "within_voice_error_rate": float(r["within"]["error"]) / 100,
        "chance": 0.5,
        "words": len({it["word"] for it in items}),
    }


def lexical_section(pipe: Any, folder: str | None, work_dir: str) -> dict:
    """sWUGGY-style accuracy: the semantic stage's log-probability of each real word against
    its pseudo-word (`folder` in the ZeroSpeech format, else a small flite-made set)."""
    from audiolm_jax.eval import zerospeech
    from audiolm_jax.sampling.pipeline import score

    items = zerospeech.read_gold(folder) if folder else zerospeech.write_lexical_set(work_dir)
    scores = {}
    for it in items:
        wav, _ = dsp.read_audio(it["path"], pipe.sample_rate)
        scores[it["filename"]] = -score(pipe, wav)["semantic"]["nll"]
    out = zerospeech.pair_accuracy(items, scores)
    out["source"] = folder or "flite pairs (zerospeech.LEXICAL_PAIRS)"
    return out


def validation_section(pipe: Any, entries: Sequence[Mapping]) -> dict:
    """Per-stage and per-level NLL (nats per token) of the pipeline on the corpus clips."""
    from audiolm_jax.sampling.pipeline import score

    sums: dict[str, dict] = {}
    for e in entries:
        wav, _ = dsp.read_audio(e["path"], pipe.sample_rate)
        for stage, s in score(pipe, wav).items():
            acc = sums.setdefault(stage, {"nll": 0.0, "tokens": 0, "levels": {}})
            acc["nll"] += s["nll"]
            acc["tokens"] += s["tokens"]
            for level, v in s["per_level"].items():
                acc["levels"].setdefault(level, []).append(v)
    return {
        stage: {
            "loss": acc["nll"] / max(acc["tokens"], 1),
            "tokens": acc["tokens"],
            "per_level": {k: float(np.mean(v)) for k, v in sorted(acc["levels"].items())},
        }
        for stage, acc in sums.items()
    }


def loss_curves(workdirs: Mapping[str, str]) -> dict:
    """{part: {"loss": [[step, v], ...], "eval/loss": [...]}} from each workdir's TensorBoard
    events (the trainer's scalars); parts without events are left out."""
    from audiolm_jax.train.summary import read_scalars

    out = {}
    for part, wd in workdirs.items():
        series: dict[str, dict[int, float]] = {}
        for f in sorted(glob.glob(os.path.join(wd, "tensorboard", "events.out.tfevents.*"))):
            for step, tag, value in read_scalars(f):
                if tag in ("loss", "eval/loss"):
                    series.setdefault(tag, {})[step] = value
        if series:
            out[part] = {tag: sorted([s, v] for s, v in pts.items()) for tag, pts in series.items()}
    return out


def evaluate(
    out_dir: str,
    *,
    pipe: Any = None,
    codec: Any = None,
    entries: Sequence[Mapping] | None = None,
    workdirs: Mapping[str, str] | None = None,
    recognizer: Callable | None = None,
    prompt_seconds: float = 2.0,
    continuation_seconds: float = 2.0,
    lexical_dir: str | None = None,
    abx_words: Sequence[str] | None = None,
    sections: Sequence[str] = ("codec", "continuation", "abx", "lexical", "validation_loss"),
    seed: int = 0,
    title: str | None = None,
    detector: Mapping | None = None,
) -> dict:
    """Writes `out_dir/report.json` and `out_dir/report.html` and returns the report.

    pipe: a `Pipeline` (sampling.pipeline.load_pipeline), or None to evaluate `codec` alone.
    entries: the labelled clips (default: `write_labelled_corpus(out_dir/corpus)`).
    workdirs: {part: training workdir} for loss curves.
    recognizer: a callable (wav, sample_rate) -> text replacing pocketsphinx for WERs.
    detector: the held-out figures of the model's detector (`detector.json` of
        `--mode=train_detector`), shown as the "detector" section.
    sections: which sections to compute (those whose parts are missing are skipped).
    """
    import jax

    from audiolm_jax.eval.html import write_html
    from audiolm_jax.train import files

    t0 = time.time()
    codec = codec if codec is not None else (pipe.codec if pipe is not None else None)
    if codec is None:
        raise ValueError("evaluate needs a pipeline (pipe=) or a codec (codec=)")
    os.makedirs(out_dir, exist_ok=True)
    if entries is None:
        entries = write_labelled_corpus(os.path.join(out_dir, "corpus"))
    spec_dir = os.path.join(out_dir, "spectrograms")
    report = {
        "title": title or f"audiolm-jax evaluation: {out_dir}",
        "workdir": os.path.abspath(out_dir),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": jax.devices()[0].platform,
        "notes": [
            f"{len(entries)} labelled clips: "
            + ", ".join(sorted({f"{e['speaker']} ({e['accent']})" for e in entries}))
        ],
        "sections": {},
    }
    sec = report["sections"]
    spectrograms = []

    def run(name, fn):
        if name not in sections:
            return
        t = time.time()
        sec[name] = fn()
        spectrograms.extend(sec[name].pop("spectrograms", []) if isinstance(sec[name], dict)
                            else [])  # fmt: skip
        log.info("eval: %s done in %.1f s", name, time.time() - t)

    run("codec", lambda: codec_section(codec, entries, recognizer=recognizer,
                                       spectrogram_dir=spec_dir))  # fmt: skip
    if pipe is not None:
        run("continuation", lambda: continuation_section(
            pipe, entries, prompt_seconds=prompt_seconds, seconds=continuation_seconds,
            seed=seed, spectrogram_dir=spec_dir))  # fmt: skip
        run("abx", lambda: abx_section(pipe.tokenizer, os.path.join(out_dir, "abx"), abx_words))
        run("lexical", lambda: lexical_section(pipe, lexical_dir, os.path.join(out_dir, "lexical")))
        run("validation_loss", lambda: validation_section(pipe, entries))
    if detector:
        sec["detector"] = {k: v for k, v in detector.items() if k not in ("train", "workdir")}
    if workdirs:
        curves = loss_curves(workdirs)
        if curves:
            sec["curves"] = curves
    if spectrograms:
        sec["spectrograms"] = [
            {**s, "png": os.path.relpath(s["png"], out_dir)}
            | ({"wav": os.path.relpath(s["wav"], out_dir)} if "wav" in s else {})
            for s in spectrograms
        ]
    report["eval_seconds"] = round(time.time() - t0, 1)
    files.write_json(out_dir, "report.json", report)
    write_html(report, out_dir)
    return report
