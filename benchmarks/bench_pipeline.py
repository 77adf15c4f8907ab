"""Audio-token pipeline throughput (issue 8): tokenizing into the cache, serving each stage from
it, and the serving rate against the train step that consumes it.

Everything runs in this process (no launch.py subprocesses), in a temporary folder:

1. The embedded corpus (`audiolm_jax/data/corpus`, about 2 minutes of speech), copied into one
   folder per speaker, becomes a tfds dataset (`tfds_builders.build_dataset`; one speaker held
   out as validation). Its train split is what gets tokenized.
2. Tiny tokenizers, untrained (speed does not depend on training): the `soundstream_tiny` codec
   and the `w2v_bert_tiny` semantic model + random k-means (K = 64), written as checkpoints and
   loaded with `Tokenizers.from_workdirs`, as `--mode=tokenize` does. `write_cache` over the
   train split read back from tfds (`load_examples`), 4 shards, batch 8. The first pass goes
   to a scratch cache and includes XLA compilation (one program per padded length); the timed
   passes are warm. Reported: seconds (= hours) of audio tokenized per second (hour) of wall
   time, and utterances/s.
3. Each stage's seqio Task over that cache (`seqio_tasks.register_stage_tasks`), served by the
   trainer's `CacheSource`: batch 8, packed, shuffled (buffer 256, as semantic_cache_tiny).
   Layout: semantic_cache_tiny's (2 coarse levels, 5 s semantic crops; its seq_len 128 for the
   semantic stage) with the e2e test's small crops for the other stages (coarse 2 s, fine
   chunks 0.5 s, seq_len = `layout.max_length(stage)`). After a warm-up, `--batches` batches
   per round, median of `--rounds`; examples/s counts the packed LM examples (crops / chunks).
4. semantic_cache_tiny's train step (2 x 128 LM, AdamW; built by `tasks.build` on the cache, so
   its source is the semantic stage of 3), jitted, batch 8 x 128: steps/s on a fixed batch,
   and the same loop pulling each batch from the source. ratio = pipeline batches/s / train
   steps/s (> 1: the pipeline keeps up).

    python benchmarks/bench_pipeline.py [--rounds 3] [--batches 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# tests/reference_models.py: the stand-in models the tests use too.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from reference_models import tiny_tokenizer_workdirs  # noqa: E402

from benchmarks.common import median_time, report  # noqa: E402

BATCH = 8
SHARDS = 4
LAYOUT = dict(
    coarse_levels=2, semantic_crop_seconds=5.0, coarse_crop_seconds=2.0, fine_chunk_seconds=0.5
)


def speech_folder(root: str) -> None:
    """The embedded corpus, one folder per speaker (the "folder" layout's speaker)."""
    from audiolm_jax.data import audio

    for e in audio.corpus_entries():
        dest = os.path.join(root, e["speaker"], e["file"])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy(e["path"], dest)


def time_source(source, batches: int, rounds: int) -> dict:
    """Batches/s and packed examples/s pulled from a CacheSource (median of rounds)."""
    for _ in range(5):  # warm-up: the tf.data graph, shuffle buffer, first prefetch
        next(source)
    rates, examples, tokens = [], 0, 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(batches):
            b = next(source)
            seg = b["segment_ids"]
            # packed examples: distinct non-zero segment ids per row
            examples += int(sum(len(np.unique(r[r > 0])) for r in seg))
            tokens += int((seg > 0).sum())
        rates.append(batches / (time.perf_counter() - t0))
    bps = float(np.median(rates))
    per_batch = examples / (batches * rounds)
    return {
        "batches_per_s": bps,
        "examples_per_s": bps * per_batch,
        "examples_per_batch": per_batch,
        "fill": tokens / (batches * rounds * BATCH * source.seq_len),
        "rounds": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=200, help="per round, per stage")
    parser.add_argument("--tokenize-repeats", type=int, default=3, help="warm cache passes")
    parser.add_argument("--steps", type=int, default=20, help="train steps per round")
    args = parser.parse_args()
    logging.getLogger("audiolm_jax").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.WARNING)

    from audiolm_jax.config import load_config
    from audiolm_jax.data import seqio_tasks, token_cache
    from audiolm_jax.data.pipeline import CacheSource
    from audiolm_jax.data.sources import AudioSourceConfig
    from audiolm_jax.data.tfds_builders import build_dataset, load_examples

    tmp = tempfile.mkdtemp(prefix="bench_pipeline_")
    try:
        # 1. tfds dataset of the embedded corpus
        speech_folder(os.path.join(tmp, "audio"))
        data_dir = os.path.join(tmp, "tfds")
        cfg = AudioSourceConfig(root=os.path.join(tmp, "audio"), eval_speaker_count=1)
        t0 = time.perf_counter()
        built = build_dataset(cfg, data_dir)
        build_s = time.perf_counter() - t0
        train = built["splits"]["train"]
        audio_s = train["hours"] * 3600

        # 2. token cache of the train split
        codec_dir, sem_dir = tiny_tokenizer_workdirs(tmp)
        toks = token_cache.Tokenizers.from_workdirs(codec_dir, sem_dir, sample_rate=16000)
        passes = {"n": 0}

        def tokenize(cache_dir=None):
            passes["n"] += 1
            out = token_cache.write_cache(
                lambda: load_examples(data_dir, "local_audio", "train"),
                "train",
                cache_dir or os.path.join(tmp, f"scratch{passes['n']}"),
                toks,
                num_shards=SHARDS,
                process_index=0,
                process_count=1,
                batch_size=BATCH,
                log_every=1e9,
            )
            return out

        t0 = time.perf_counter()
        cold = tokenize()
        cold_s = time.perf_counter() - t0
        tok_s, tok_times = median_time(tokenize, args.tokenize_repeats, warmup=0)
        cache = os.path.join(tmp, "tokens")
        summary = tokenize(cache)
        assert summary["utterances"] == cold["utterances"] == train["examples"]

        # 3. each stage from the cache
        c = load_config("semantic_cache_tiny")
        for k in ("coarse_levels", "semantic_crop_seconds"):  # the config's own choices
            assert c.data.layout[k] == LAYOUT[k], (k, c.data.layout[k])
        manifest = seqio_tasks.read_manifest(cache)
        layout = seqio_tasks.layout_from_manifest(manifest, LAYOUT)
        names = seqio_tasks.register_stage_tasks(
            cache, corpus_name="bench", layout=layout, shuffle_buffer=int(c.data.shuffle_buffer)
        )
        stages = {}
        for stage, name in names.items():
            seq_len = int(c.data.seq_len) if stage == "semantic" else layout.max_length(stage)
            src = CacheSource(
                name,
                batch_size=BATCH,
                seq_len=seq_len,
                shuffle=True,
                pack=True,
                seed=0,
                process_index=0,
                process_count=1,
            )
            stages[stage] = {"seq_len": seq_len, **time_source(src, args.batches, args.rounds)}
            del src

        # 4. the train step that consumes the semantic stage
        from audiolm_jax import tasks
        from audiolm_jax.train.trainer import init_state, make_optimizers, make_train_step

        c.data.corpora.corpus = cache
        c.data.layout.update(LAYOUT)
        c.data.batch_size = BATCH
        model, source, _ = tasks.build(c)
        batch = next(source)
        assert batch["targets"].shape == (BATCH, stages["semantic"]["seq_len"])
        txs, schedules = make_optimizers(c, model.groups, 1000)
        state = init_state(model, txs, batch, seed=0)
        step = jax.jit(make_train_step(model, txs, schedules), donate_argnums=0)
        holder = {"state": state}

        def fixed():
            holder["state"], metrics = step(holder["state"], batch)
            jax.block_until_ready(metrics)

        def fed():
            holder["state"], metrics = step(holder["state"], next(source))
            jax.block_until_ready(metrics)

        fixed()  # compile
        for _ in range(5):
            fed()
        step_times, fed_times = [], []
        for _ in range(args.rounds):
            step_times.append(median_time(fixed, args.steps, warmup=0)[0])
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fed()
            fed_times.append((time.perf_counter() - t0) / args.steps)
        step_s, fed_s = float(np.median(step_times)), float(np.median(fed_times))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    steps_per_s = 1 / step_s
    row = {
        "what": (
            f"embedded corpus train split: {train['examples']} utterances, {audio_s:.1f} s; "
            f"tiny tokenizers, {SHARDS} shards, batch {BATCH}; stages batch {BATCH}, packed"
        ),
        "build_dataset_s": build_s,
        "tokenize_cold_s": cold_s,
        "tokenize_s": tok_s,
        "tokenize_times": tok_times,
        "audio_hours_per_hour": audio_s / tok_s,
        "audio_hours_per_hour_cold": audio_s / cold_s,
        "utterances_per_s": train["examples"] / tok_s,
        "stages": stages,
        "train_step_s": step_s,
        "train_steps_per_s": steps_per_s,
        "train_step_fed_s": fed_s,
        "ratio_pipeline_to_train": stages["semantic"]["batches_per_s"] / steps_per_s,
    }
    report("audio_token_pipeline", row)
    print(
        f"\n| quantity | value |\n| --- | --- |\n"
        f"| corpus (train split) | {train['examples']} utterances, {audio_s:.1f} s "
        f"({audio_s / 3600:.4f} h) |\n"
        f"| build tfds dataset | {build_s:.1f} s |\n"
        f"| tokenize, warm | {audio_s / tok_s:.1f} h of audio per hour, "
        f"{train['examples'] / tok_s:.1f} utterances/s ({tok_s:.2f} s) |\n"
        f"| tokenize, first pass (compiling) | {audio_s / cold_s:.1f} h/h ({cold_s:.1f} s) |"
    )
    for stage, s in stages.items():
        print(
            f"| {stage} stage, seq_len {s['seq_len']} | {s['batches_per_s']:.0f} batches/s, "
            f"{s['examples_per_s']:.0f} examples/s ({s['examples_per_batch']:.1f}/batch, "
            f"{100 * s['fill']:.0f}% filled) |"
        )
    print(
        f"| semantic_cache_tiny train step, {BATCH} x {stages['semantic']['seq_len']} | "
        f"{steps_per_s:.1f} steps/s ({1000 * step_s:.1f} ms); fed from the source "
        f"{1000 * fed_s:.1f} ms |\n"
        f"| ratio pipeline / train step | **{row['ratio_pipeline_to_train']:.1f}x** |"
    )


if __name__ == "__main__":
    main()
