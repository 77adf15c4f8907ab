"""The codec through the trainer and launch.py: a few real GAN steps, `codec.load`, and
`--mode=reconstruct` on a folder with a bad file in it."""

import json
import shutil

import numpy as np
import pytest
from test_launch import _launch

from audiolm_jax import codec, dsp
from audiolm_jax.data import audio

pytestmark = pytest.mark.slow

OVERRIDES = [
    "--config.codec.seanet.channels=4",
    "--config.codec.seanet.dim=16",
    "--config.codec.quantizer.codebook_size=16",
    "--config.train.steps=4",
    "--config.train.log_every=2",
    "--config.train.eval_every=4",
    "--config.train.eval_batches=1",
    "--config.train.checkpoint_every=2",
    "--config.loss.adversarial_start=2",  # both phases run
    "--config.data.batch_size=4",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("codec")
    out = _launch("--config=soundstream_tiny", f"--workdir={workdir}", *OVERRIDES, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


def test_training_runs_both_gan_phases(trained):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["step"] == 4
    assert summary["train"]["d_loss"] > 0  # the discriminators trained after step 2
    assert np.isfinite(summary["eval"]["mel_distance"])
    log = (trained / "log.txt").read_text()
    assert "generator/grad_norm" in log and "perplexity/q3" in log


def test_load_gives_the_trained_codec(trained):
    c = codec.load(str(trained))
    assert (c.sample_rate, c.hop, c.levels, c.cfg.codebook_size) == (16000, 320, 4, 16)
    wav = audio.load_clips([audio.corpus_entries("eval")[0]["path"]], 16000)[0][0][:16000]
    codes = codec.encode(c, wav)
    assert codes.shape == (1, 50, 4)
    assert codec.decode(c, codes).shape == (1, 16000)
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        codec.load(str(trained / "nowhere"))


def test_reconstruct_writes_next_to_originals_and_skips_bad_files(trained, tmp_path):
    for e in audio.corpus_entries("eval")[:2]:
        shutil.copy(e["path"], tmp_path / e["file"])
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    out = _launch(
        "--config=soundstream_tiny",
        f"--workdir={trained}",
        "--mode=reconstruct",
        f"--input={tmp_path}",
        "--levels=2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((trained / "reconstruct.json").read_text())
    assert summary["levels"] == 2 and len(summary["files"]) == 2
    assert [s["file"] for s in summary["skipped"]] == [str(tmp_path / "broken.wav")]
    for r in summary["files"]:
        orig, _ = dsp.read_audio(r["file"])
        recon, rate = dsp.read_audio(r["output"])
        assert r["output"].endswith(".recon_q2.wav") and rate == 16000
        assert len(recon) == len(orig) and np.isfinite(r["mel_distance"])
    assert "broken.wav" in out.stderr  # the bad file is named in the log
    bad = _launch("--config=soundstream_tiny", f"--workdir={trained}", "--mode=reconstruct")
    assert bad.returncode == 2 and "--input=DIR" in bad.stderr
