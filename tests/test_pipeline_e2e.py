"""The audio-token pipeline end to end through launch.py: a folder of real and synthesised
speech with a corrupt and an empty file -> `--mode=build_dataset` (tfds) -> `--mode=tokenize`
(token cache, with a codec and a semantic tokenizer loaded from their workdirs) -> each stage's
seqio Task -> a stage LM trained on the cache."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from conftest import launch_summary
from reference_models import tiny_tokenizer_workdirs

from audiolm_jax.data import audio, token_cache


def _speech_folder(root) -> dict[str, str]:
    """speaker folders of corpus flac (two voices), flite and espeak-ng speech, plus two bad
    files. Returns good file -> its id prefix (relative path without extension)."""
    good = {}
    entries = audio.corpus_entries("train")
    for i, e in enumerate([entries[0], entries[1], entries[-1]]):
        spk = "corpus_a" if i < 2 else "corpus_b"
        dest = root / spk / os.path.basename(e["path"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(e["path"], dest)
    (root / "flite").mkdir()
    subprocess.run(
        ["flite", "-voice", "slt", "-t", "the quick brown fox", "-o", str(root / "flite/fox.wav")],
        check=True,
    )
    (root / "espeak").mkdir()
    subprocess.run(
        ["espeak-ng", "-w", str(root / "espeak/dog.wav"), "a lazy dog sleeps in the sun"],
        check=True,
    )
    for path in sorted(root.rglob("*.*")):
        good[str(path)] = os.path.splitext(os.path.relpath(path, root))[0]
    (root / "corpus_a" / "corrupt.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "espeak" / "empty.wav").write_bytes(b"")
    return good


@pytest.mark.slow
def test_folder_to_cache_to_stage_tasks_to_training(tmp_path):
    good = _speech_folder(tmp_path / "audio")
    codec_dir, sem_dir = tiny_tokenizer_workdirs(str(tmp_path))
    work = tmp_path / "corpus"

    built = launch_summary(
        "--config=corpus",
        "--mode=build_dataset",
        f"--input={tmp_path / 'audio'}",
        f"--workdir={work}",
        "--config.corpus.eval_speaker_count=1",
        "--config.corpus.max_seconds=2.0",
    )
    # The two bad files are reported with their reasons and skipped; nothing else is.
    assert built["bad_files"] == 2
    listed = open(built["bad_files_list"]).read()
    assert "corrupt.flac" in listed and "empty.wav" in listed
    assert set(built["splits"]) == {"train", "validation"}

    out = launch_summary(
        "--config=corpus",
        "--mode=tokenize",
        f"--workdir={work}",
        f"--config.tokenize.codec={codec_dir}",
        f"--config.tokenize.semantic={sem_dir}",
        "--config.tokenize.num_shards=3",
    )
    cache = out["cache_dir"]
    ids = {}
    for split in ("train", "validation"):
        ids.update(token_cache.read_cache(cache, split))
    # Every good file is in the cache (long ones as several <= 2 s segments), once.
    for path, prefix in good.items():
        mine = [i for i in ids if i.startswith(prefix)]
        assert mine, f"{path} is missing from the cache"
        seconds = sum(ids[i]["seconds"] for i in mine)
        assert seconds == pytest.approx(sf.info(path).duration, abs=0.05), path
    assert not any("corrupt" in i or "empty" in i for i in ids)
    manifest = token_cache.read_manifest(cache)
    assert manifest["semantic"]["vocab_size"] == 64 and manifest["acoustic"]["levels"] == 4
    for rec in ids.values():
        assert rec["semantic"].max() < 64 and rec["codes"].shape[1] == 4
        assert rec["codes"].max() < 64

    # Each stage's Task reads the cache and yields in-range LM examples.
    from audiolm_jax.data import seqio_tasks

    crops = dict(semantic_crop_seconds=2.0, coarse_crop_seconds=2.0, fine_chunk_seconds=0.5)
    layout = seqio_tasks.layout_from_manifest(manifest, {"coarse_levels": 2, **crops})
    names = seqio_tasks.register_stage_tasks(cache, corpus_name="e2e", layout=layout)
    assert set(names) == {"semantic", "coarse", "fine"}
    for stage, name in names.items():
        n = layout.max_length(stage)
        ds = seqio_tasks.lm_dataset(name, seq_len=n, split="train", seed=0)
        ex = next(iter(ds.as_numpy_iterator()))
        assert ex["targets"].shape == (n,)
        assert 0 <= ex["targets"].min() and ex["targets"].max() < layout.vocab_size(stage)
        assert ex["weights"].sum() > 0

    # A stage LM trains on it from a config naming the cache.
    summary = launch_summary(
        "--config=semantic_cache_tiny",
        f"--workdir={tmp_path / 'lm'}",
        f"--config.data.corpora.corpus={cache}",
        "--config.train.steps=4",
        "--config.train.eval_every=4",
        "--config.train.checkpoint_every=4",
    )
    assert summary["step"] == 4
