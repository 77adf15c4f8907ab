"""The generated-speech detector: it learns real vs generated on held-out voices, a
real-vs-real control stays at chance, loudness and length do not move its score, and its
figures (AUC, precision/recall, calibration) are right on known inputs.

"Generated" here is a stand-in channel (4-bit mu-law, full band: what a cheap codec leaves),
so the test runs without training a codec; the quickstart's slow test detects its real tiny
models' resynthesis and samples. The three tests that train (about a minute) are in the slow
step; the figures' arithmetic and the invariances built into the network are checked by default."""

import json
import os

import numpy as np
import pytest
from conftest import run_launch

from audiolm_jax import detector
from audiolm_jax.data import audio


def _mu_law(x: np.ndarray, bits: int = 4) -> np.ndarray:
    mu = 2.0**bits - 1
    y = np.clip(x / (np.abs(x).max() + 1e-9), -1, 1)
    q = np.round(np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu) * (mu / 2)) / (mu / 2)
    return (np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu).astype(np.float32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("det_data"))
    detector.make_detector_data(
        out, real=audio.corpus_entries(), resynthesize=_mu_law, sample_rate=16000
    )
    return out


def _train(workdir, data_dir, *extra):
    out = run_launch(
        "--config=detector_tiny",
        f"--workdir={workdir}",
        f"--config.detector.data_dir={data_dir}",
        "--config.train.steps=150",
        *extra,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((workdir / "detector.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    workdir = tmp_path_factory.mktemp("det")
    return workdir, _train(workdir, data_dir)


@pytest.mark.slow
def test_detector_separates_held_out_generated_speech(trained):
    _, r = trained
    f = r["resynthesis"]
    assert f["real_clips"] >= 10 and f["generated_clips"] >= 10
    assert f["auc"] > 0.9, f
    assert f["accuracy"] > 0.8 and 0 <= f["precision"] <= 1 and 0 <= f["recall"] <= 1
    assert sum(b["count"] for b in f["calibration"]) == f["real_clips"] + f["generated_clips"]


@pytest.mark.slow
def test_real_vs_real_control_is_at_chance(tmp_path, data_dir):
    r = _train(tmp_path, data_dir, "--config.detector.control=True")
    c = r["control"]
    assert c["real_clips"] + c["generated_clips"] >= 10
    assert abs(c["auc"] - 0.5) < 0.25, c  # small held-out set: wide, but far from 0.9+


@pytest.mark.slow
def test_loudness_and_length_do_not_move_the_score(trained):
    from audiolm_jax import dsp

    det = detector.load_detector(str(trained[0]))
    entry = max(audio.corpus_entries("eval"), key=lambda e: os.path.getsize(e["path"]))
    wav, _ = dsp.read_audio(entry["path"], 16000)
    wav = wav[: 3 * 16000]
    fake = _mu_law(wav)
    for x in (wav, fake):
        p = detector.detect(det, x)
        assert detector.detect(det, 0.05 * x) == pytest.approx(p, abs=1e-4)
        assert detector.detect(det, 4.0 * x / np.abs(x).max() * 0.2) == pytest.approx(p, abs=1e-4)
        assert abs(detector.detect(det, x[: 2 * 16000]) - p) < 0.1
    assert detector.detect(det, fake) > 0.5 > detector.detect(det, wav)
    # Any rate: resampled to the detector's.
    assert detector.detect(det, dsp.resample(wav, 16000, 24000), 24000) < 0.5
    batch = detector.detect(det, np.stack([wav, fake]))
    assert batch.shape == (2,) and batch[1] > batch[0]
    with pytest.raises(ValueError, match="at least"):
        detector.detect(det, wav[:100])


def test_figures_on_known_scores():
    assert detector.auc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert detector.auc([0.1, 0.4], [0.3, 0.4]) == pytest.approx(0.625)
    f = detector.detection_figures([0.1, 0.6, 0.2, 0.3], [0.9, 0.8, 0.4, 0.7], bins=2)
    assert f["accuracy"] == 0.75 and f["precision"] == 0.75 and f["recall"] == 0.75
    assert f["calibration"] == [
        {"bin": [0.0, 0.5], "mean_predicted": 0.25, "fraction_generated": 0.25, "count": 4},
        {"bin": [0.5, 1.0], "mean_predicted": 0.75, "fraction_generated": 0.75, "count": 4},
    ]
    with pytest.raises(ValueError, match="both classes"):
        detector.auc([], [0.5])


def test_untrained_network_ignores_gain_by_construction():
    """Loudness never reaches the network: any gain gives the same logits, trained or not."""
    import jax

    cfg = detector.DetectorConfig(channels=(8, 8))
    net = detector.DetectorNet(cfg)
    wav = np.random.default_rng(0).normal(size=(2, 16000)).astype(np.float32) * 0.1
    params = net.init(jax.random.key(0), wav)["params"]
    a = net.apply({"params": params}, wav)
    b = net.apply({"params": params}, wav * 7.0)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="bandwidth_hz"):
        detector.DetectorConfig.from_config({"bandwidth_hz": 9000.0})
