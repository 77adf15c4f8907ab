"""Local audio sources and their tfds builders, on real speech: clips of the embedded corpus,
speech synthesised here by flite (8 kHz) and espeak-ng (22.05 kHz), a stereo file, a long file
of clips joined by silences, a short file, one corrupt and one empty file."""

import json
import logging
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from audiolm_jax.data import sources
from audiolm_jax.data.audio import corpus_entries
from audiolm_jax.data.sources import AudioSourceConfig, BadAudioFile

SR = 16000
MAX_S = 4.0
GAP_S = 0.5


def _clips():
    return {os.path.basename(e["path"]): e["path"] for e in corpus_entries()}


def _read(path):
    wav, rate = sf.read(path, dtype="float32")
    assert rate == SR
    return wav


def _db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def _joined(paths):
    """Clips joined with GAP_S of digital silence between them, and the [onset, offset] seconds
    of each clip."""
    gap = np.zeros(int(GAP_S * SR), np.float32)
    parts, spans, t = [], [], 0.0
    for i, p in enumerate(paths):
        if i:
            parts.append(gap)
            t += GAP_S
        w = _read(p)
        parts.append(w)
        spans.append([t, t + len(w) / SR])
        t += len(w) / SR
    return np.concatenate(parts), spans


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder corpus; returns (root, {kind: path})."""
    root = tmp_path_factory.mktemp("folder")
    clips = _clips()
    files = {}

    def put(rel, src=None):
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src is not None:
            shutil.copy(src, dst)
        return str(dst)

    files["slt0"] = put("flite_slt/a.flac", clips["flite_slt_00.flac"])
    files["slt1"] = put("flite_slt/b.flac", clips["flite_slt_01.flac"])
    files["espeak_us"] = put("espeak_us/a.flac", clips["espeak-ng_en-us-f3_02.flac"])
    files["rms"] = put("flite_rms/a.flac", clips["flite_rms_00.flac"])
    files["kal8k"] = put("kal/hello.wav")
    subprocess.run(
        [
            "flite",
            "-voice",
            "kal",
            "-t",
            "Seven slabs of stone were stacked.",
            "-o",
            files["kal8k"],
        ],
        check=True,
    )
    files["espeak22k"] = put("espeak/hello.wav")
    subprocess.run(
        ["espeak-ng", "-w", files["espeak22k"], "The wind blew over the hill."], check=True
    )
    a, b = _read(clips["flite_awb_03.flac"]), _read(clips["flite_awb_04.flac"])
    n = min(len(a), len(b))
    files["stereo"] = put("stereo/two.flac")
    sf.write(files["stereo"], np.stack([a[:n], 0.3 * b[:n]], 1), SR)
    long, _ = _joined([clips[f"flite_kal16_0{i}.flac"] for i in (0, 1, 6, 7, 8)])
    files["long"] = put("long/long.wav")
    sf.write(files["long"], long, SR)
    files["short"] = put("short.ogg")  # in root: the stem is the speaker
    sf.write(files["short"], _read(clips["flite_rms_01.flac"])[SR // 2 : SR // 2 + SR // 4], SR)
    files["corrupt"] = put("bad/corrupt.flac")
    with open(files["corrupt"], "wb") as f:
        f.write(np.random.default_rng(0).bytes(5000))
    files["empty"] = put("bad/empty.wav")
    open(files["empty"], "wb").close()
    return str(root), files


def _cfg(root, **kw):
    return AudioSourceConfig(
        layout="folder", root=root, max_seconds=MAX_S, min_seconds=0.5, eval_speaker_count=2, **kw
    )


def test_folder_source(folder, caplog):
    root, files = folder
    cfg = _cfg(root)
    entries = sources.list_files(cfg)
    assert {e.path for e in entries} == set(files.values())
    assert [e.rel_id for e in entries] == sorted(e.rel_id for e in entries)
    assert {e.speaker for e in entries} >= {"flite_slt", "kal", "espeak", "short", "bad"}

    bad = []
    with caplog.at_level(logging.WARNING, "audiolm_jax"):
        examples = list(sources.iterate_examples(cfg, None, bad))
    # The two bad files are reported with path and reason, logged, and skipped.
    assert sorted(p for p, _ in bad) == sorted([files["corrupt"], files["empty"]])
    reasons = dict(bad)
    assert "empty" in reasons[files["empty"]]
    assert "unreadable" in reasons[files["corrupt"]]
    for p, why in bad:
        assert p in caplog.text and why in caplog.text
    # Every good file contributes; ids are unique.
    good = {v for k, v in files.items() if k not in ("corrupt", "empty")}
    assert {x["path"] for x in examples} == good
    assert len({x["id"] for x in examples}) == len(examples)
    for x in examples:
        assert x["audio"].dtype == np.float32 and x["audio"].ndim == 1
        assert 0 < len(x["audio"]) <= MAX_S * SR
        assert abs(_db(x["audio"]) - cfg.loudness_db) < 1.0, x["id"]
    by_path = {}
    for x in examples:
        by_path.setdefault(x["path"], []).append(x)
    # Resampled to 16 kHz: 8 kHz flite and 22.05 kHz espeak-ng keep their durations.
    for k in ("kal8k", "espeak22k"):
        info = sf.info(files[k])
        assert info.samplerate != SR
        (x,) = by_path[files[k]]
        assert abs(len(x["audio"]) / SR - info.duration) < 0.01
    # Stereo is mixed down: the example is the channels' mean, scaled.
    (x,) = by_path[files["stereo"]]
    mono = sf.read(files["stereo"], dtype="float32")[0].mean(1)
    assert np.corrcoef(x["audio"], mono)[0, 1] > 0.999
    # A file shorter than min_seconds is still one example.
    (x,) = by_path[files["short"]]
    assert x["speaker"] == "short" and len(x["audio"]) == SR // 4
    # The long file: cut into <= MAX_S segments that tile it, each cut in a silence.
    long = _read(files["long"])
    segs = sorted(by_path[files["long"]], key=lambda x: x["start_seconds"])
    assert len(segs) >= 3 and len(long) > MAX_S * SR
    assert [x["id"] for x in segs] == [f"long/long_{k:04d}" for k in range(len(segs))]
    starts = [round(x["start_seconds"] * SR) for x in segs]
    lengths = [len(x["audio"]) for x in segs]
    assert starts[0] == 0 and sum(lengths) == len(long)
    assert all(s + n == s2 for s, n, s2 in zip(starts, lengths, starts[1:]))
    assert all(cfg.min_seconds * SR <= n <= MAX_S * SR for n in lengths)
    for cut in starts[1:]:
        around = long[cut - SR // 20 : cut + SR // 20]
        assert _db(around) < _db(long) - 40, cut / SR


def test_speaker_split(folder):
    root, _ = folder
    cfg = _cfg(root)
    entries = sources.list_files(cfg)
    split = sources.split_speakers(entries, cfg)
    train = {e.speaker for e in split["train"]}
    val = {e.speaker for e in split["validation"]}
    assert len(val) == 2 and not train & val
    assert train | val == {e.speaker for e in entries}
    assert len(split["train"]) + len(split["validation"]) == len(entries)
    # Deterministic: independent of order, and a fraction picks round(f * n) speakers.
    again = sources.split_speakers(entries[::-1], cfg)
    assert {e.speaker for e in again["validation"]} == val
    n = len(train | val)
    frac = sources.held_out_speakers(
        train | val, AudioSourceConfig(layout="folder", root=root, eval_speakers=0.3)
    )
    assert len(frac) == round(0.3 * n)
    # Validation-only iteration yields only held-out speakers.
    xs = list(sources.iterate_examples(cfg, "validation", []))
    assert xs and {x["speaker"] for x in xs} == val - {"bad"}


def test_segment_bounds_prefers_voice_activity_gaps():
    """Steady noise with one digital-silence hole inside a voiced stretch: by energy the cut
    goes into the hole; with voice activity it goes into the (noisy) unvoiced gap."""
    rng = np.random.default_rng(0)
    wav = (0.05 * rng.standard_normal(10 * SR)).astype(np.float32)
    wav[int(5.0 * SR) : int(5.3 * SR)] = 0
    vad = [(0.0, 4.0), (4.4, 10.0)]
    (a, cut), (b, end) = sources.segment_bounds(wav, SR, 6.0, 0.5)[:2]
    assert 5.0 * SR <= cut <= 5.3 * SR
    cuts = [s for s, _ in sources.segment_bounds(wav, SR, 6.0, 0.5, vad)[1:]]
    assert 4.0 * SR <= cuts[0] <= 4.4 * SR
    # Speech-free noise: hard cuts, never longer than max, tails never shorter than min.
    for n in (6 * SR + 1, 12 * SR + 7, 6 * SR + SR // 3):
        bounds = sources.segment_bounds(
            wav[:n] if n <= len(wav) else np.resize(wav, n), SR, 6.0, 0.5
        )
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(e == s2 for (_, e), (s2, _) in zip(bounds, bounds[1:]))
        assert all(0.5 * SR <= e - s <= 6 * SR for s, e in bounds)


def test_silent_and_wrong_format_files(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    (tmp_path / "notes.wav").write_text("not audio at all\n" * 50)
    cfg = AudioSourceConfig(layout="folder", root=str(tmp_path))
    for name, why in (("silent.wav", "silent"), ("notes.wav", "unreadable")):
        entry = sources.FileEntry(str(tmp_path / name), name, name, {})
        with pytest.raises(BadAudioFile, match=why):
            sources.read_and_segment(entry, cfg)


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory):
    root = tmp_path_factory.mktemp("LibriSpeech")
    clips = _clips()
    layout = {
        "train-clean-100/19/198/19-198-0000": "flite_slt_02.flac",
        "train-clean-100/19/198/19-198-0001": "flite_slt_03.flac",
        "train-clean-100/26/495/26-495-0000": "flite_awb_05.flac",
        "dev-clean/84/121123/84-121123-0000": "flite_rms_02.flac",
    }
    for rel, clip in layout.items():
        dst = root / f"{rel}.flac"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips[clip], dst)
        stem = os.path.basename(rel)
        with open(dst.parent / ("-".join(stem.split("-")[:2]) + ".trans.txt"), "a") as f:
            f.write(f"{stem} TEXT OF {stem}\n")
    return str(root), layout


def test_librispeech_layout(librispeech):
    root, layout = librispeech
    cfg = AudioSourceConfig(layout="librispeech", root=root, eval_speaker_count=1)
    entries = sources.list_files(cfg)
    assert [e.rel_id for e in entries] == sorted(layout)
    assert [e.speaker for e in entries] == [k.split("/")[1] for k in sorted(layout)]
    e = entries[-1]
    assert e.metadata == {
        "subset": "train-clean-100",
        "chapter": "495",
        "text": "TEXT OF 26-495-0000",
    }
    bad = []
    xs = list(sources.iterate_examples(cfg, None, bad))
    assert not bad and [x["id"] for x in xs] == [f"{k}_0000" for k in sorted(layout)]
    # One subset, or a root that is itself a subset.
    only = AudioSourceConfig(layout="librispeech", root=root, subsets=("dev-clean",))
    assert [e.speaker for e in sources.list_files(only)] == ["84"]
    sub = AudioSourceConfig(layout="librispeech", root=os.path.join(root, "train-clean-100"))
    assert {e.speaker for e in sources.list_files(sub)} == {"19", "26"}


def test_librilight_layout(tmp_path, caplog):
    clips = _clips()
    book = tmp_path / "small" / "100" / "sea_fairies_0812_librivox"
    book.mkdir(parents=True)
    names = ["flite_slt_04.flac", "flite_slt_05.flac", "flite_awb_06.flac", "flite_awb_07.flac"]
    long, spans = _joined([clips[n] for n in names])
    sf.write(book / "01_baum.flac", long, SR)
    meta = {"speaker": "100", "book_meta": {"id": "319"}, "snr": 5.4, "voice_activity": spans}
    (book / "01_baum.json").write_text(json.dumps(meta))
    other = tmp_path / "small" / "2007" / "book_b"
    other.mkdir(parents=True)
    shutil.copy(clips["flite_rms_03.flac"], other / "ch1.flac")  # no json
    long2, _ = _joined([clips["flite_rms_04.flac"], clips["flite_rms_09.flac"]])
    sf.write(other / "ch2.flac", long2, SR)  # long, and its json is broken: cut by energy
    (other / "ch2.json").write_text("{ not json")
    cfg = AudioSourceConfig(layout="librilight", root=str(tmp_path), max_seconds=MAX_S)
    entries = sources.list_files(cfg)
    assert [(e.rel_id, e.speaker) for e in entries] == [
        ("small/100/sea_fairies_0812_librivox/01_baum", "100"),
        ("small/2007/book_b/ch1", "2007"),
        ("small/2007/book_b/ch2", "2007"),
    ]
    assert entries[0].metadata["book"] == "sea_fairies_0812_librivox"
    bad = []
    with caplog.at_level(logging.WARNING, "audiolm_jax"):
        xs = list(sources.iterate_examples(cfg, None, bad))
    assert not bad and "ch2.json" in caplog.text  # unreadable metadata: warned, file kept
    segs = [x for x in xs if x["speaker"] == "100"]
    assert len(segs) >= 3 and sum(len(x["audio"]) for x in segs) == len(long)
    for x in segs[1:]:  # every cut between two voice-activity spans
        t = x["start_seconds"]
        assert any(b <= t <= a for (_, b), (a, _) in zip(spans, spans[1:])), t
    assert {x["path"] for x in xs} == {e.path for e in entries}


def test_build_dataset_roundtrip(folder, librispeech, tmp_path):
    from audiolm_jax.data import tfds_builders

    root, files = folder
    cfg = _cfg(root)
    expected = {}
    for split in ("train", "validation"):
        expected[split] = {x["id"]: x for x in sources.iterate_examples(cfg, split, [])}
    data_dir = str(tmp_path / "tfds")
    summary = tfds_builders.build_dataset(cfg, data_dir, "folder_corpus")
    assert summary["bad_files"] == 2 and summary["files"] == len(files)
    with open(summary["bad_files_list"]) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert sorted(p for p, _ in rows) == sorted([files["corrupt"], files["empty"]])
    assert all(reason for _, reason in rows)
    for split, want in expected.items():
        s = summary["splits"][split]
        assert s["examples"] == len(want)
        hours = sum(len(x["audio"]) for x in want.values()) / SR / 3600
        assert s["hours"] == pytest.approx(hours)
        got = {x["id"]: x for x in tfds_builders.load_examples(data_dir, "folder_corpus", split)}
        assert got.keys() == want.keys()
        for k, x in want.items():
            np.testing.assert_array_equal(got[k]["audio"], x["audio"])
            assert got[k]["speaker"] == x["speaker"]
            assert got[k]["path"] == x["path"]
            assert got[k]["start_seconds"] == pytest.approx(x["start_seconds"])
    # A second dataset in the same process, and a rebuild that reuses the first.
    lcfg = AudioSourceConfig(layout="librispeech", root=librispeech[0], eval_speaker_count=1)
    other = tfds_builders.build_dataset(lcfg, data_dir, "libri_corpus")
    assert other["bad_files"] == 0 and sum(s["examples"] for s in other["splits"].values()) == 4
    assert tfds_builders.build_dataset(cfg, data_dir, "folder_corpus") == summary


def test_build_dataset_split_of_bad_files(tmp_path):
    """A split whose files are all bad is left out (tfds needs an example per split); a corpus
    of bad files only fails with the reason, and its list is still written."""
    from audiolm_jax.data import tfds_builders

    src = tmp_path / "src"
    cfg = AudioSourceConfig(layout="folder", root=str(src), eval_speaker_count=1)
    (held,) = sources.held_out_speakers(["a", "b"], cfg)
    good = "b" if held == "a" else "a"
    (src / good).mkdir(parents=True)
    (src / held).mkdir()
    shutil.copy(_clips()["flite_slt_05.flac"], src / good / "x.flac")
    (src / held / "y.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    summary = tfds_builders.build_dataset(cfg, str(tmp_path / "tfds"), "one_split")
    assert list(summary["splits"]) == ["train"] and summary["bad_files"] == 1
    (src / good / "x.flac").unlink()
    with pytest.raises(ValueError, match="no usable audio"):
        tfds_builders.build_dataset(cfg, str(tmp_path / "tfds"), "all_bad")
    with open(tmp_path / "tfds" / "all_bad" / "bad_files.txt") as f:
        assert f.read().startswith(str(src / held / "y.wav") + "\t")


def test_audio_clips_speed_perturbation():
    """`data.speed_perturb`: each training clip is played at a random speed in [1 - s, 1 + s]
    (pitch moves with it), deterministically for a seed; s = 0 gives plain crops."""
    from audiolm_jax.data.audio import AudioClips

    tone = np.sin(2 * np.pi * 200 * np.arange(3 * SR) / SR).astype(np.float32)

    def peaks(speed_perturb, seed=0):
        clips = AudioClips(
            [tone],
            clip_samples=SR,
            batch_size=16,
            seed=seed,
            split="train",
            speed_perturb=speed_perturb,
        )
        batch = next(clips)["wav"]
        assert batch.shape == (16, SR) and np.all(np.abs(batch).max(axis=1) > 0.99)
        return np.argmax(np.abs(np.fft.rfft(batch, axis=1)), axis=1)  # Hz (1 s clips)

    assert np.all(peaks(0.0) == 200)
    moved = peaks(0.2)
    assert np.all((moved >= 160) & (moved <= 240)) and len(set(moved.tolist())) > 4
    assert np.array_equal(moved, peaks(0.2))
    assert not np.array_equal(moved, peaks(0.2, seed=1))
    with pytest.raises(ValueError, match="speed_perturb"):
        AudioClips([tone], clip_samples=SR, batch_size=1, seed=0, split="train", speed_perturb=1.5)
