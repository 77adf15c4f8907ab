"""The workflows `launch.py --mode=...` runs. Each takes (config, workdir) and returns a summary."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from audiolm_jax.train import files as workdir_files

log = logging.getLogger("audiolm_jax")


def run_train(config: Any, workdir: str) -> dict:
    """Trains `config.model` in `workdir`, resuming from its newest checkpoint."""
    return _train(config, workdir)[0]


def _train(config: Any, workdir: str):
    from audiolm_jax import tasks
    from audiolm_jax.train.trainer import train

    model, train_source, eval_source = tasks.build(config)
    result = train(config, workdir, model, train_source, eval_source)
    summary = {
        "config": config.name,
        "workdir": os.path.abspath(workdir),
        "step": result.step,
        "stopped": result.stopped,
        "resumed_from": result.resumed_from,
        "train": result.metrics,
        "eval": result.eval_metrics,
    }
    if _primary():
        workdir_files.write_json(workdir, "summary.json", summary)
    return summary, result, model, eval_source


def _primary() -> bool:
    import jax

    return jax.process_index() == 0


def run_quickstart(config: Any, workdir: str) -> dict:
    """Audio to audio, every part tiny, on a CPU (configs/quickstart.py), saying what it did:

    1. The codec on the embedded speech corpus: held-out mel distance of the untrained and the
       trained codec, reconstructions of held-out clips in <workdir>/audio/.
    2. The semantic tokenizer: w2v-BERT pretrained on the corpus its config names
       (w2v_bert_tiny: speech synthesised into <workdir>/synth_speech), k-means on one of its
       layers, held-out clips turned into semantic ids.
    3. The audio-token pipeline: the corpus as a tfds dataset (whole voices held out), then
       its token cache through both tokenizers.
    4. The three stages on the cache: held-out loss of each, untrained and trained.
    5. A continuation of a held-out prompt: <workdir>/generated/continuation.wav and .png,
       and <workdir>/pipeline/pipeline.json for `load_pipeline` / `--mode=generate`.
    6. The detector of the pipeline's output (configs/detector_tiny.py): its held-out AUC for
       resynthesis and for continuations, in <workdir>/detector/detector.json.
    7. Piano corpora (`config.coherence.prompts` > 0): how often continuations of that many
       held-out pieces stay in their key, against the shuffled-semantic-token control
       (`eval.coherence.key_coherence`), with 95% intervals and a one-sided p, and the share
       of their chroma on the key's scale with a paired p over pieces.
    """
    import time

    t0 = time.perf_counter()
    corpus_dir = _quickstart_corpus(config, workdir)
    parts = config.parts.copy_and_resolve_references()
    for name in ("codec", "tokenizer"):
        if parts[name].data.source == "folder":  # the corpus this run wrote
            parts[name].data.path = corpus_dir
        elif parts[name].data.source == "synth" and not parts[name].data.path:
            parts[name].data.path = os.path.join(workdir, "synth_speech")
    out = {"codec": _quickstart_codec(parts.codec, workdir, config.reconstructions)}
    out["tokenizer"] = _quickstart_tokenizer(parts.tokenizer, workdir)
    out["tokens"] = _quickstart_tokens(config, workdir, corpus_dir)
    out["stages"] = {
        name: _quickstart_stage(parts[name], workdir, name, out["tokens"]["cache_dir"])
        for name in ("semantic", "coarse", "fine")
        if name in parts
    }
    out["generated"] = _quickstart_generate(config, workdir, out["tokens"])
    if "detector" in parts:
        out["detector"] = _quickstart_detector(parts.detector, workdir)
    prompts = int(config.get("coherence", {}).get("prompts", 0))
    if prompts and config.get("corpus_source") == "piano":
        out["coherence"] = _quickstart_coherence(config, workdir, prompts)
    out["seconds"] = time.perf_counter() - t0
    c, t, k, g = out["codec"], out["tokenizer"], out["tokens"], out["generated"]
    stages = "; ".join(
        f"{n} {v['eval_loss_untrained']:.2f} -> {v['eval_loss']:.2f}"
        for n, v in out["stages"].items()
    )
    log.info(
        "Quickstart done in %.0f s, everything under %s.\n"
        "  Codec (%s): held-out mel distance %.3f -> %.3f, SI-SDR %.1f dB; reconstructions in "
        "%s.\n  Semantic tokenizer (%s): held-out MLM loss %.3f -> %.3f; tokenizes %.0fx faster "
        "than real time.\n  Token cache: %d train / %d held-out utterances, %.2f h, in %s.\n"
        "  Stages, held-out loss in nats per token (untrained -> trained): %s.\n"
        "  Continuation of %.1f s of held-out %s: %.1f s in %s (+ .png), sampled in %.1f s.\n"
        "  Detector of this pipeline's output (held-out voices): %s.\n"
        "  Next: python launch.py --mode=generate --pipeline=%s --prompt=YOUR.wav --seconds=5\n"
        "        python launch.py --config=quickstart --mode=eval --workdir=%s   (eval report)",
        out["seconds"],
        os.path.abspath(workdir),
        c["codec"],
        c["mel_distance_untrained"],
        c["mel_distance"],
        c["si_sdr_db"],
        c["audio_dir"],
        t["tokenizer"],
        t["mlm_loss_untrained"],
        t["mlm_loss"],
        t["tokenize_audio_s_per_s"],
        k["train_utterances"],
        k["eval_utterances"],
        k["hours"],
        k["cache_dir"],
        stages,
        g["prompt_seconds"],
        g["prompt_id"],
        g["seconds"],
        g["wav"],
        g["sample_seconds"],
        ", ".join(
            f"{k} AUC {out['detector'][f'{k}_auc']:.3f}"
            for k in ("resynthesis", "pipeline")
            if f"{k}_auc" in out.get("detector", {})
        )
        or "not trained",
        g["pipeline"],
        workdir,
    )
    workdir_files.write_json(workdir, "quickstart.json", out)
    return out


def _quickstart_coherence(config: Any, workdir: str, prompts: int) -> dict:
    """Key coherence of the piano pipeline just trained on `prompts` held-out pieces
    (`eval.coherence.key_coherence`: pipeline against shuffled semantic tokens)."""
    import time

    from audiolm_jax.eval.coherence import held_out_pieces, key_coherence
    from audiolm_jax.sampling.pipeline import load_pipeline

    t0 = time.perf_counter()
    pieces = held_out_pieces(workdir, prompts)
    if len(pieces) < prompts:
        log.warning(
            "Key coherence: %d held-out pieces, fewer than coherence.prompts = %d",
            len(pieces),
            prompts,
        )
    g = config.generate
    r = key_coherence(
        load_pipeline(os.path.join(workdir, "pipeline")),
        pieces,
        prompt_seconds=float(g.prompt_seconds),
        seconds=float(g.seconds),
        samples=int(config.coherence.get("samples", 1)),
        seed=int(config.seed),
    )
    r["seconds"] = time.perf_counter() - t0
    n = r["n"] * r["samples"]
    p, c = r["pipeline"], r["shuffled"]
    log.info(
        "Key coherence over %d held-out pieces x %d continuations (%.1f s prompts, %.1f s "
        "continuations): in key %d/%d = %.3f (95%% CI %.3f-%.3f) against %d/%d = %.3f "
        "(%.3f-%.3f) with shuffled semantic tokens, one-sided p = %.3g; share of chroma on "
        "the key's scale %.3f against %.3f, paired over pieces p = %.3g; the prompts "
        "themselves are estimated in key %.2f of the time; %.0f s",
        r["n"],
        r["samples"],
        float(g.prompt_seconds),
        float(g.seconds),
        p["in_key"],
        n,
        p["rate"],
        *p["ci95"],
        c["in_key"],
        n,
        c["rate"],
        *c["ci95"],
        r["p_value"],
        p["in_key_fraction"],
        c["in_key_fraction"],
        r["in_key_fraction_p"],
        r["prompt_keys_estimated"],
        r["seconds"],
    )
    return r


def _quickstart_detector(config: Any, workdir: str) -> dict:
    """The detector of the quickstart's own output (resynthesis and continuations of the
    corpus through <workdir>/pipeline), trained in <workdir>/detector; its held-out AUCs."""
    config = config.copy_and_resolve_references()
    config.detector.pipeline = os.path.join(workdir, "pipeline")
    r = run_train_detector(config, os.path.join(workdir, "detector"))
    return {
        "workdir": r["workdir"],
        **{f"{k}_auc": r[k]["auc"] for k in ("resynthesis", "pipeline") if k in r},
        **{f"{k}_accuracy": r[k]["accuracy"] for k in ("resynthesis", "pipeline") if k in r},
    }


def _quickstart_codec(config: Any, workdir: str, n_audio: int) -> dict:
    import numpy as np

    from audiolm_jax import codec, dsp
    from audiolm_jax.train.trainer import evaluate_untrained

    stage_dir = os.path.join(workdir, "codec")
    summary, result, model, eval_source = _train(config, stage_dir)
    # The untrained codec on the same held-out clips: what "learned" is measured against.
    before, _ = evaluate_untrained(config, model, eval_source)
    start = {"index": 0}
    c = codec.from_state(model.cfg, result.state.params, result.state.model_state)
    audio_dir = os.path.join(workdir, "audio")
    eval_source.set_state(start)
    clips = next(eval_source)["wav"][:n_audio]
    recon = np.asarray(codec.decode(c, codec.encode(c, clips)))
    for i, (x, y) in enumerate(zip(clips, recon)):
        dsp.write_audio(os.path.join(audio_dir, f"heldout{i}.wav"), x, c.sample_rate)
        dsp.write_audio(os.path.join(audio_dir, f"heldout{i}.codec.wav"), y, c.sample_rate)
    return {
        "codec": codec.describe(model.cfg),
        "workdir": stage_dir,
        "mel_distance_untrained": before["mel_distance"],
        "mel_distance": summary["eval"]["mel_distance"],
        "mel_distance_1_level": summary["eval"]["mel_distance_1_level"],
        "si_sdr_db": summary["eval"]["si_sdr"],
        "audio_dir": audio_dir,
    }


def _quickstart_tokenizer(config: Any, workdir: str) -> dict:
    """Pretrains the tiny w2v-BERT, fits k-means on its layer, tokenizes held-out clips."""
    import time

    import numpy as np

    from audiolm_jax import semantic
    from audiolm_jax.semantic.fit import fit_kmeans
    from audiolm_jax.train.trainer import evaluate_untrained

    stage_dir = os.path.join(workdir, "tokenizer")
    summary, result, model, eval_source = _train(config, stage_dir)
    before, _ = evaluate_untrained(config, model, eval_source)
    start = {"index": 0}
    km_dir = os.path.join(stage_dir, "kmeans")
    if os.path.isfile(os.path.join(km_dir, "kmeans.json")):
        # A rerun: the token cache and the stages were made with this k-means; keep it.
        from audiolm_jax import kmeans

        tok = semantic.load(stage_dir)
        km = kmeans.load(km_dir)["meta"]["summary"]
        log.info("Quickstart rerun: keeping the k-means in %s.", km_dir)
    else:
        tok, km = fit_kmeans(config, stage_dir, model.cfg, result.state.params["model"])
    eval_source.set_state(start)
    clips = np.asarray(next(eval_source)["wav"])
    ids = semantic.encode(tok, clips)  # compile
    t0 = time.perf_counter()
    ids = np.asarray(semantic.encode(tok, clips))
    rate = clips.size / tok.sample_rate / (time.perf_counter() - t0)
    after = summary["eval"]
    return {
        "tokenizer": semantic.describe(tok),
        "workdir": stage_dir,
        "contrastive_loss_untrained": before["contrastive_loss"],
        "contrastive_loss": after["contrastive_loss"],
        "mlm_loss_untrained": before["mlm_loss"],
        "mlm_loss": after["mlm_loss"],
        "code_perplexity": after["code_perplexity"],
        "kmeans_heldout_code_perplexity": km["heldout_code_perplexity"],
        "tokenize_audio_s_per_s": rate,
        "example_ids": ids[0, :25].tolist(),
    }


def _quickstart_corpus(config: Any, workdir: str) -> str:
    """The quickstart's audio folder, one speaker per first-level entry: the embedded speech
    corpus (config.corpus_source "speech": a folder of links per voice) or procedural piano
    pieces ("piano": one file per piece, so held-out pieces span every key)."""
    from audiolm_jax.data import audio, piano

    folder = os.path.join(workdir, "corpus")
    if config.get("corpus_source", "speech") == "piano":
        p = config.piano
        entries = piano.write_corpus(
            os.path.join(workdir, "piano_audio"),
            n_pieces=int(p.pieces),
            seconds=float(p.seconds),
            seed=int(config.seed),
        )
        for i, e in enumerate(entries):
            link = os.path.join(folder, f"piece{i:04d}_{e['key'].replace(' ', '_')}.wav")
            # Relative to the link's folder: right for a relative --workdir, and the workdir
            # may move.
            _link(os.path.join(os.pardir, "piano_audio", e["path"]), link)
        return folder
    for e in audio.corpus_entries():
        # The folder layout's speaker is the first folder level: one folder per voice.
        _link(
            os.path.abspath(e["path"]),
            os.path.join(folder, e["speaker"], os.path.basename(e["path"])),
        )
    return folder


def _link(target: str, link: str) -> None:
    """A symlink at `link` to `target`, replacing a broken one (a link written by an older
    version, or one whose target moved)."""
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link) and not os.path.exists(link):
        os.remove(link)
    if not os.path.lexists(link):
        os.symlink(target, link)


def _quickstart_tokens(config: Any, workdir: str, folder: str) -> dict:
    """The quickstart's audio folder as a tfds dataset (whole speakers held out) and its
    token cache."""
    corpus = config.parts.corpus.copy_and_resolve_references()
    data_dir = os.path.join(workdir, "dataset")
    corpus.tokenize.codec = os.path.join(workdir, "codec")
    corpus.tokenize.semantic = os.path.join(workdir, "tokenizer")
    built = run_build_dataset(corpus, data_dir, input=folder)
    tokens = run_tokenize(corpus, data_dir)
    splits = built["splits"]
    return {
        "dataset": data_dir,
        "cache_dir": tokens["cache_dir"],
        "train_utterances": splits["train"]["examples"],
        "eval_utterances": splits["validation"]["examples"],
        "hours": sum(v["hours"] for v in splits.values()),
        "eval_speakers": splits["validation"].get("speakers"),
    }


def _quickstart_stage(config: Any, workdir: str, stage: str, cache_dir: str) -> dict:
    """One stage LM on the quickstart's token cache: held-out loss untrained and trained."""
    from audiolm_jax.train.trainer import evaluate_untrained

    config = config.copy_and_resolve_references()
    config.data.corpora = {"quickstart": cache_dir}
    summary, _, model, eval_source = _train(config, os.path.join(workdir, stage))
    before, _ = evaluate_untrained(config, model, eval_source, int(config.train.eval_batches))
    return {
        "workdir": os.path.join(os.path.abspath(workdir), stage),
        "eval_loss_untrained": before["loss"],
        "eval_loss": summary["eval"]["loss"],
        "eval_accuracy": summary["eval"]["accuracy"],
    }


def _quickstart_generate(config: Any, workdir: str, tokens: dict) -> dict:
    """Writes <workdir>/pipeline/pipeline.json, then continues a held-out prompt with it."""
    from audiolm_jax import dsp
    from audiolm_jax.data.tfds_builders import load_examples

    pipe_dir = os.path.join(workdir, "pipeline")
    os.makedirs(pipe_dir, exist_ok=True)
    parts = {"codec": "../codec", "tokenizer": "../tokenizer"}
    parts.update({s: f"../{s}" for s in ("semantic", "coarse", "fine") if s in config.parts})
    with open(os.path.join(pipe_dir, "pipeline.json"), "w") as f:
        json.dump(parts, f, indent=2)
    g = config.generate
    name = config.parts.corpus.corpus.name
    rate = int(config.parts.corpus.corpus.sample_rate)
    # The longest held-out utterance makes the prompt.
    held_out = max(
        load_examples(tokens["dataset"] + "/tfds", name, "validation"),
        key=lambda ex: len(ex["audio"]),
    )
    prompt_file = os.path.join(workdir, "generated", "prompt.wav")
    dsp.write_audio(prompt_file, held_out["audio"], rate)
    summary = run_generate(
        pipe_dir,
        out=os.path.join(workdir, "generated", "continuation.wav"),
        seconds=float(g.seconds),
        prompt=prompt_file,
        prompt_seconds=float(g.prompt_seconds),
        seed=int(config.seed),
    )
    return {
        "pipeline": os.path.abspath(pipe_dir),
        "prompt_id": str(held_out["id"]),
        "prompt_seconds": summary["prompt_seconds"],
        "seconds": summary["seconds"],
        "wav": summary["files"][0]["wav"],
        "png": summary["files"][0]["png"],
        "sample_seconds": summary["generate_seconds"],
    }


def run_reconstruct(
    config: Any, workdir: str, *, input: str | None = None, levels: int | None = None
) -> dict:
    """Encodes and decodes every audio file under `input` with the codec trained in `workdir`,
    at `levels` RVQ levels (default all), writing `<name>.recon_q<levels>.wav` next to each
    original (originals are never touched) and reporting mel distance and SI-SDR per file.
    Long files run through the streaming encoder/decoder in 10 s chunks."""
    import numpy as np

    from audiolm_jax import codec, dsp

    if not input:
        raise ValueError("--mode=reconstruct needs --input=DIR (a folder of wav/flac/ogg files)")
    c = codec.load(workdir)
    n = c.levels if levels is None else int(levels)
    if not 1 <= n <= c.levels:
        raise ValueError(f"--levels={n}: this codec has 1 to {c.levels} levels")
    files = [f for f in dsp.list_audio(input) if ".recon_q" not in os.path.basename(f)]
    chunk = c.hop * int(10 * c.sample_rate / c.hop)
    results, bad = [], []
    for path in files:
        try:
            wav, _ = dsp.read_audio(path, c.sample_rate)
        except ValueError as e:
            log.warning("Skipped %s", e)
            bad.append({"file": path, "reason": str(e)})
            continue
        padded = np.pad(wav, (0, -len(wav) % c.hop))[None]
        enc_state = dec_state = None
        pieces = []
        for i in range(0, padded.shape[1], chunk):
            codes, enc_state = codec.encode_stream(c, padded[:, i : i + chunk], enc_state)
            audio, dec_state = codec.decode_stream(c, codes[..., :n], dec_state)
            pieces.append(np.asarray(audio))
        recon = np.concatenate(pieces, 1)[0, : len(wav)]
        out = os.path.splitext(path)[0] + f".recon_q{n}.wav"
        dsp.write_audio(out, recon, c.sample_rate)
        x, y = wav[None], recon[None]
        mel = float(dsp.mel_distance(x, y, c.sample_rate)[0])
        sdr = float(dsp.si_sdr(x, y)[0])
        results.append({"file": path, "output": out, "mel_distance": mel, "si_sdr_db": sdr})
        log.info("%s -> %s | mel distance %.3f | SI-SDR %.1f dB", path, out, mel, sdr)
    summary = {
        "codec": codec.describe(c.cfg),
        "levels": n,
        "kbps": c.cfg.frame_rate * n * np.log2(c.cfg.codebook_size) / 1000,
        "files": results,
        "skipped": bad,
        "mean_mel_distance": float(np.mean([r["mel_distance"] for r in results]))
        if results
        else None,
    }
    log.info(
        "Reconstructed %d files at %d levels (%.2f kbps); %d skipped.",
        len(results),
        n,
        summary["kbps"],
        len(bad),
    )
    workdir_files.write_json(workdir, "reconstruct.json", summary)
    return summary


def run_fit_kmeans(config: Any, workdir: str) -> dict:
    """Fits the semantic tokenizer's k-means over a layer of the w2v-BERT trained in `workdir`
    (config.semantic: layer, k, batches) and saves it to `<workdir>/kmeans`."""
    from audiolm_jax import semantic
    from audiolm_jax.semantic.fit import fit_kmeans

    cfg, params, _ = semantic.load_model(workdir)
    _, summary = fit_kmeans(
        config, workdir, cfg, params, overwrite=bool(config.semantic.get("overwrite", False))
    )
    return summary


def _source_config(config: Any, input: str | None):
    from audiolm_jax.data.sources import AudioSourceConfig

    c = config.corpus
    root = input or c.root
    if not root:
        raise ValueError("--mode=build_dataset needs --input=DIR (or --config.corpus.root=DIR)")
    subsets = tuple(s for s in str(c.get("subsets", "")).split(",") if s) or None
    count = int(c.get("eval_speaker_count", 0) or 0)
    return AudioSourceConfig(
        layout=c.layout,
        root=os.path.abspath(root),
        sample_rate=int(c.sample_rate),
        max_seconds=float(c.max_seconds),
        min_seconds=float(c.min_seconds),
        loudness_db=float(c.loudness_db) if c.get("normalize", True) else None,
        eval_speakers=float(c.eval_speakers),
        eval_speaker_count=count or None,
        seed=int(c.seed),
        subsets=subsets,
    )


def _data_dir(config: Any, workdir: str) -> str:
    return config.corpus.get("data_dir") or os.path.join(workdir, "tfds")


def run_build_dataset(config: Any, workdir: str, *, input: str | None = None) -> dict:
    """A tfds dataset of the audio under `input` (config.corpus: layout, rate, segment length,
    loudness, held-out speakers) in `<workdir>/tfds`; bad files are logged, counted and listed,
    never fatal. Summary: examples, hours and speakers per split, bad files and their list."""
    from audiolm_jax.data.tfds_builders import build_dataset

    cfg = _source_config(config, input)
    summary = build_dataset(
        cfg,
        _data_dir(config, workdir),
        config.corpus.name,
        overwrite=bool(config.corpus.get("overwrite", False)),
    )
    workdir_files.write_json(workdir, "build_dataset.json", summary)
    return summary


def run_tokenize(config: Any, workdir: str) -> dict:
    """The token cache of the dataset `--mode=build_dataset` built: every split through the
    codec of `config.tokenize.codec` and the semantic tokenizer of `config.tokenize.semantic`
    into sharded TFRecords in `<workdir>/tokens` (resumable by shard; run the same command on
    every host of a pod and each writes its own shards)."""
    import jax

    from audiolm_jax.data import token_cache
    from audiolm_jax.data.tfds_builders import dataset_dir, load_examples

    t = config.tokenize
    if not t.codec or not t.semantic:
        raise ValueError(
            "--mode=tokenize needs --config.tokenize.codec=WORKDIR (a trained or imported codec) "
            "and --config.tokenize.semantic=WORKDIR (a semantic tokenizer with its k-means)"
        )
    data_dir, name = _data_dir(config, workdir), config.corpus.name
    summary_file = os.path.join(data_dir, name, "summary.json")
    if not os.path.isfile(summary_file):
        raise FileNotFoundError(
            f"no dataset at {dataset_dir(data_dir, name)} ({summary_file} missing); run "
            f"--mode=build_dataset --workdir={workdir} first"
        )
    with open(summary_file) as f:
        splits = sorted(json.load(f)["splits"])
    tokenizers = token_cache.Tokenizers.from_workdirs(
        t.codec,
        t.semantic,
        sample_rate=int(config.corpus.sample_rate),
        levels=int(t.levels) or None,
    )
    cache_dir = t.get("cache_dir") or os.path.join(workdir, "tokens")
    out = {"cache_dir": os.path.abspath(cache_dir), "splits": {}}
    for split in splits:
        out["splits"][split] = token_cache.write_cache(
            lambda split=split: load_examples(data_dir, name, split),
            split,
            cache_dir,
            tokenizers,
            num_shards=int(t.num_shards),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            batch_size=int(t.batch_size),
        )
    if jax.process_index() == 0:
        workdir_files.write_json(workdir, "tokenize.json", out)
    return out


def run_dry_run(
    config: Any, workdir: str, *, devices: int | None = None, target: str | None = None
) -> dict:
    """Per-device memory and FLOPs of `config`'s train step, without training (dry_run.py)."""
    from audiolm_jax import tasks
    from audiolm_jax.train.dry_run import dry_run, local_attention

    if "parts" in config and "model" not in config:
        raise ValueError(
            f"--dry_run plans one model's train step; config {config.get('name')!r} is a "
            f"workflow of several parts ({', '.join(config.parts.keys())}); dry-run one part's "
            "own config instead (configs/*_tiny.py, e.g. --config=coarse_cache_tiny)"
        )
    swapped = local_attention(config, target)
    model, train_source, _ = tasks.build(config, shapes_only=True)
    report = dry_run(config, model, train_source, devices=devices, target=target)
    if swapped:
        report["attention_compiled_as"] = swapped
    workdir_files.write_json(workdir, "dry_run.json", report)
    return report


def run_generate(
    pipeline: str,
    *,
    out: str,
    seconds: float = 10.0,
    prompt: str | None = None,
    prompt_seconds: float = 3.0,
    seed: int = 0,
    batch: int = 1,
    matmul_dtype: str | None = None,
) -> dict:
    """`seconds` of audio from the pipeline in `pipeline` (see `load_pipeline`), continuing
    the first `prompt_seconds` of the audio file `prompt` (any rate) or unconditional without
    one; `matmul_dtype` as for `sample`. Writes `out` (prompt then continuation, at the
    codec's rate; `out` with _<i> before the extension per sample when batch > 1) and a
    log-mel spectrogram PNG beside it with a white line where the prompt ends."""
    import time

    import jax
    import numpy as np

    from audiolm_jax import dsp
    from audiolm_jax.sampling.pipeline import load_pipeline, sample

    pipe = load_pipeline(pipeline)
    rate = pipe.sample_rate
    head = np.zeros((0,), np.float32)
    if prompt:
        wav, _ = dsp.read_audio(prompt, rate)
        head = wav[: int(round(prompt_seconds * rate))]
        log.info("Prompt: the first %.2f s of %s", len(head) / rate, prompt)
    t0 = time.perf_counter()
    audio, tokens = sample(
        pipe,
        head if prompt else None,
        seconds=seconds,
        rng=jax.random.key(seed),
        batch_size=batch,
        return_tokens=True,
        matmul_dtype=matmul_dtype,
    )
    took = time.perf_counter() - t0
    used = tokens.prompt_frames * pipe.codec.hop  # the prompt cut to whole frames
    stem, ext = os.path.splitext(out)
    files = []
    for i, cont in enumerate(audio):
        name = out if batch == 1 else f"{stem}_{i}{ext or '.wav'}"
        full = np.concatenate([head[:used], cont])
        dsp.write_audio(name, full, rate)
        png = os.path.splitext(name)[0] + ".png"
        dsp.write_spectrogram_png(png, full, rate, marks_s=(used / rate,) if used else ())
        files.append({"wav": os.path.abspath(name), "png": os.path.abspath(png)})
    summary = {
        "pipeline": os.path.abspath(pipeline),
        "prompt": prompt,
        "prompt_seconds": used / rate,
        "seconds": seconds,
        "seed": seed,
        "sample_rate": rate,
        "generate_seconds": took,
        "real_time_factor": seconds * batch / took,
        "files": files,
    }
    log.info(
        "Generated %d x %.1f s in %.1f s (%.2fx real time): %s",
        batch,
        seconds,
        took,
        summary["real_time_factor"],
        ", ".join(f["wav"] for f in files),
    )
    return summary


def run_eval(config: Any, workdir: str) -> dict:
    """The evaluation report of the pipeline (or codec) trained in `workdir`: writes
    `<workdir>/eval/report.json` and `report.html` (audiolm_jax/eval/evaluate.py).

    Finds `<workdir>/pipeline` (the quickstart's), else a pipeline.json or stage folders in
    `workdir` itself (sampling.pipeline.load_pipeline), else a codec checkpoint in `workdir`
    (codec-only report). `config.eval` sets the sections and their sizes."""
    from audiolm_jax import codec as codec_lib
    from audiolm_jax.eval.corpus import ACCENT_VOICES, write_labelled_corpus
    from audiolm_jax.eval.evaluate import evaluate
    from audiolm_jax.sampling.pipeline import PIPELINE_FILE, load_pipeline

    ecfg = config.get("eval") or {}
    out_dir = os.path.join(workdir, "eval")
    candidates = [ecfg.get("pipeline")] if ecfg.get("pipeline") else []
    candidates += [os.path.join(workdir, "pipeline"), workdir]
    pipe, pipe_dir = None, None
    for c in candidates:
        if os.path.isfile(os.path.join(c, PIPELINE_FILE)) or os.path.isdir(
            os.path.join(c, "semantic")
        ):
            pipe, pipe_dir = load_pipeline(c), c
            break
    codec = None
    if pipe is None:
        if not os.path.isdir(os.path.join(workdir, "checkpoints")):
            raise FileNotFoundError(
                f"nothing to evaluate in {workdir}: no pipeline ({PIPELINE_FILE} or stage "
                "folders, e.g. the quickstart's pipeline/) and no codec checkpoint"
            )
        codec = codec_lib.load(workdir)
    workdirs = {}
    if pipe_dir is not None:
        spec = os.path.join(pipe_dir, PIPELINE_FILE)
        if os.path.isfile(spec):
            with open(spec) as f:
                workdirs = {k: os.path.join(pipe_dir, v) for k, v in json.load(f).items() if v}
        workdirs.update({n: s.workdir for n, s in pipe.stages.items() if s.workdir})
    else:
        workdirs = {"codec": workdir}
    voices = ACCENT_VOICES[: int(ecfg.get("voices", 0)) or None]
    entries = write_labelled_corpus(
        os.path.join(out_dir, "corpus"), voices=voices, per_voice=int(ecfg.get("per_voice", 2))
    )
    sections = [s.strip() for s in str(ecfg.get("sections", "")).split(",") if s.strip()]
    detector = None
    det_dir = ecfg.get("detector") or os.path.join(workdir, "detector")
    det_json = os.path.join(det_dir, "detector.json")
    if os.path.isfile(det_json):
        with open(det_json) as f:
            detector = json.load(f)
    words = [w.strip() for w in str(ecfg.get("abx_words", "")).split(",") if w.strip()]
    report = evaluate(
        out_dir,
        pipe=pipe,
        codec=codec,
        entries=entries,
        workdirs=workdirs,
        prompt_seconds=float(ecfg.get("prompt_seconds", 2.0)),
        continuation_seconds=float(ecfg.get("continuation_seconds", 2.0)),
        lexical_dir=ecfg.get("lexical_dir") or None,
        abx_words=words or None,
        sections=sections or ("codec", "continuation", "abx", "lexical", "validation_loss"),
        seed=int(config.get("seed", 0)),
        title=f"audiolm-jax evaluation: {workdir}",
        detector=detector,
    )
    sec = report["sections"]
    summary = {
        "report": os.path.join(out_dir, "report.json"),
        "html": os.path.join(out_dir, "report.html"),
        "clips": len(entries),
        "sections": sorted(sec),
        "eval_seconds": report["eval_seconds"],
    }
    for name in ("codec", "continuation"):
        for by, g in sec.get(name, {}).get("groups", {}).items():
            summary[f"{name}_spread_by_{by}"] = {
                m: {k: v[k] for k in ("best", "worst", "spread")} for m, v in g["metrics"].items()
            }
    for name, key in (("abx", "error_rate"), ("lexical", "accuracy")):
        if name in sec:
            summary[f"{name}_{key}"] = sec[name][key]
    for kind, f in sec.get("detector", {}).items():
        if isinstance(f, dict) and "auc" in f:
            summary[f"detector_{kind}_auc"] = f["auc"]
    return summary


def run_train_detector(config: Any, workdir: str) -> dict:
    """Trains the generated-speech detector (audiolm_jax/detector.py) in `workdir` and reports
    its held-out figures, each kind of generated audio against real clips (detector.json).

    Data: `config.detector.data_dir` if it holds a manifest, else `<workdir>/data`, written
    first from `config.detector.pipeline` (a pipeline folder: resynthesis through its codec
    and continuations by the full pipeline) or `config.detector.codec` (resynthesis only), over
    the embedded corpus (whose held-out voices make the eval split)."""
    from audiolm_jax import codec as codec_lib
    from audiolm_jax.data import audio
    from audiolm_jax.detector import (
        MANIFEST,
        evaluate_detector,
        load_detector,
        make_detector_data,
        read_manifest,
    )

    d = config.detector
    data_dir = d.get("data_dir") or os.path.join(workdir, "data")
    if not os.path.isfile(os.path.join(data_dir, MANIFEST)):
        pipe = None
        if d.get("pipeline"):
            from audiolm_jax.sampling.pipeline import load_pipeline

            pipe = load_pipeline(d.pipeline)
            codec = pipe.codec
        elif d.get("codec"):
            codec = codec_lib.load(d.codec)
        else:
            raise ValueError(
                f"no detector data in {data_dir}: set --config.detector.pipeline=DIR (a pipeline "
                "folder) or --config.detector.codec=DIR to generate it"
            )
        make_detector_data(
            data_dir,
            codec=codec,
            pipe=pipe,
            real=audio.corpus_entries(),
            prompt_seconds=float(d.prompt_seconds),
            seconds=float(d.seconds),
            pipeline_per_clip=int(d.pipeline_per_clip),
            seed=int(config.seed),
        )
    config = config.copy_and_resolve_references()
    config.detector.data_dir = data_dir
    summary = _train(config, workdir)[0]
    figures = evaluate_detector(
        load_detector(workdir),
        read_manifest(data_dir),
        seconds=float(d.eval_seconds),
        control_seed=int(config.seed) if d.get("control") else None,
    )
    out = {"workdir": os.path.abspath(workdir), "data_dir": data_dir, "train": summary, **figures}
    if _primary():
        workdir_files.write_json(workdir, "detector.json", out)
    for kind in ("resynthesis", "pipeline", "control"):
        if kind in figures:
            f = figures[kind]
            log.info(
                "Detector on held-out %s (vs real): AUC %.3f, accuracy %.3f, precision %.3f, "
                "recall %.3f (%d real, %d generated clips of %.1f s).",
                kind,
                f["auc"],
                f["accuracy"],
                f["precision"],
                f["recall"],
                f["real_clips"],
                f["generated_clips"],
                figures["clip_seconds"],
            )
    return out


MODES = {
    "train": run_train,
    "train_detector": run_train_detector,
    "eval": run_eval,
    "quickstart": run_quickstart,
    "reconstruct": run_reconstruct,
    "fit_kmeans": run_fit_kmeans,
    "build_dataset": run_build_dataset,
    "tokenize": run_tokenize,
}
# launch.py flags a mode takes, passed as keyword arguments.
MODE_FLAGS = {"reconstruct": ("input", "levels"), "build_dataset": ("input",)}
