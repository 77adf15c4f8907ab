"""launch.py: named configs, overrides, and errors that list what exists."""

import pytest
from conftest import REPO, run_launch

from audiolm_jax import config as config_lib

_launch = run_launch


def test_mistyped_config_name_lists_configs():
    out = _launch("--config=semantic_tiyn")
    assert out.returncode == 2
    assert "unknown config 'semantic_tiyn'" in out.stderr
    for name in ("quickstart", "semantic_tiny", "semantic_tpu"):
        assert name in out.stderr


def test_mistyped_field_lists_fields():
    out = _launch("--config=semantic_tiny", "--config.train.stepz=3")
    assert out.returncode == 2
    assert "config.train has no field 'stepz'" in out.stderr
    assert "steps" in out.stderr and "log_every" in out.stderr


def test_overrides_are_typed():
    c = config_lib.load_config("semantic_tiny")
    for key, value in [
        ("train.steps", "12"),
        ("optimizer.lr", "1e-2"),
        ("lm.scan_layers", "false"),
        ("lm.dtype", "bfloat16"),
        ("lm.head_dim", "32"),
    ]:
        config_lib.apply_override(c, key, value)
    assert (c.train.steps, c.optimizer.lr, c.lm.scan_layers, c.lm.dtype, c.lm.head_dim) == (
        12,
        0.01,
        False,
        "bfloat16",
        32,
    )
    with pytest.raises(ValueError, match="--config.train.steps=abc"):
        config_lib.apply_override(c, "train.steps", "abc")


def test_config_by_path_and_overrides_on_command_line(tmp_path):
    rest, overrides = config_lib.split_overrides(
        ["launch.py", "--config=x", "--config.a.b=1", "--config.c", "2", "--workdir=w"]
    )
    assert rest == ["launch.py", "--config=x", "--workdir=w"]
    assert overrides == [("a.b", "1"), ("c", "2")]
    path = REPO / "configs" / "semantic_tiny.py"
    assert config_lib.load_config(str(path)).name == "semantic_tiny"


def test_launch_trains_and_writes_workdir(tmp_path):
    out = _launch(
        "--config=semantic_tiny",
        f"--workdir={tmp_path}",
        "--config.train.steps=4",
        "--config.train.log_every=2",
        "--config.lm.num_layers=1",
        "--config.lm.d_model=64",
        "--config.lm.d_ff=128",
        "--config.data.batch_size=2",
        "--config.data.seq_len=32",
        "--config.train.eval_batches=1",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    assert "step 4/4" in log and "tok/s" in log and "ms/step" in log and "grad_norm" in log
    assert (tmp_path / "checkpoints" / "4").is_dir()
    assert (tmp_path / "summary.json").is_file()
    assert any(
        p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir()
    )
    # Running again resumes from the finished checkpoint and says so.
    out = _launch(
        "--config=semantic_tiny",
        f"--workdir={tmp_path}",
        "--config.train.steps=4",
        "--config.lm.num_layers=1",
        "--config.lm.d_model=64",
        "--config.lm.d_ff=128",
        "--config.data.batch_size=2",
        "--config.data.seq_len=32",
    )
    assert out.returncode == 0
    assert "Resuming from checkpoint" in (tmp_path / "log.txt").read_text()


@pytest.mark.slow
def test_quickstart_goes_from_audio_to_audio_and_generate_reuses_it(tmp_path):
    """The whole story, shortened: codec, tokenizer, dataset + token cache, three stages, a
    continuation (wav + PNG) and a pipeline folder that --mode=generate and load_pipeline
    read; a codec that disagrees with the stages is refused by name."""
    import json

    import numpy as np

    from audiolm_jax import dsp

    short = []
    for part, steps in (("codec", 60), ("tokenizer", 100), ("coarse", 60), ("fine", 60)):
        short += [
            f"--config.parts.{part}.train.steps={steps}",
            f"--config.parts.{part}.train.eval_every={steps}",
            f"--config.parts.{part}.train.checkpoint_every={steps}",
        ]
    out = _launch(
        "--config=quickstart",
        f"--workdir={tmp_path}",
        *short,
        "--config.parts.codec.loss.adversarial_start=50",
        "--config.parts.tokenizer.semantic.steps=10",
        timeout=1500,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    q = json.loads((tmp_path / "quickstart.json").read_text())
    assert q["codec"]["mel_distance"] < q["codec"]["mel_distance_untrained"]
    assert len(list((tmp_path / "audio").glob("*.codec.wav"))) == 4
    t = q["tokenizer"]
    assert t["mlm_loss"] < t["mlm_loss_untrained"]
    assert (tmp_path / "tokenizer" / "kmeans" / "kmeans.json").exists()
    k = q["tokens"]
    assert k["train_utterances"] > 0 and k["eval_utterances"] > 0 and k["eval_speakers"] == 2
    for stage in ("semantic", "coarse", "fine"):
        s = q["stages"][stage]
        assert s["eval_loss"] < s["eval_loss_untrained"], (stage, s)
    g = q["generated"]
    wav, rate = dsp.read_audio(g["wav"])
    assert abs(len(wav) / rate - (g["prompt_seconds"] + 4.0)) < 1e-3 and np.abs(wav).max() > 0
    assert open(g["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "Quickstart done" in (tmp_path / "log.txt").read_text()
    # The detector of the tiny pipeline's output tells it from real speech on held-out voices.
    d = q["detector"]
    assert d["resynthesis_auc"] > 0.8 and d["pipeline_auc"] > 0.8, d

    # A newcomer's next command: continue their own audio with the pipeline just trained.
    prompt = tmp_path / "generated" / "prompt.wav"
    result = _launch(
        "--mode=generate",
        f"--pipeline={tmp_path / 'pipeline'}",
        f"--prompt={prompt}",
        "--prompt_seconds=1",
        "--seconds=2.5",
        f"--out={tmp_path / 'mine.wav'}",
        "--matmul_dtype=bfloat16",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wav, rate = dsp.read_audio(str(tmp_path / "mine.wav"))
    assert abs(len(wav) / rate - 3.5) < 1e-3
    assert (tmp_path / "mine.png").exists()

    # A codec with other levels and codebook size is refused, naming the mismatch.
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from audiolm_jax.codec.model import CodecConfig, init_generator
    from audiolm_jax.config import load_config
    from audiolm_jax.importers.common import write_checkpoint
    from audiolm_jax.sampling.pipeline import PipelineMismatchError, load_pipeline

    c = load_config("piano_soundstream_tiny")
    params, qstate = init_generator(
        CodecConfig.from_config(c.codec), jax.random.key(0), jnp.zeros((1, 3200))
    )
    other = str(tmp_path / "other_codec")
    state = {"quantizer": qstate, "step": jnp.zeros((), jnp.int32)}
    write_checkpoint(other, c, {"generator": nn.unbox(params)}, state, source="test")
    with pytest.raises(PipelineMismatchError, match="256 codes per level.*trained on 64"):
        load_pipeline(str(tmp_path / "pipeline"), codec=other)
    pipe = load_pipeline(str(tmp_path / "pipeline"))
    assert pipe.layout.coarse_levels == 2 and pipe.fine is not None
    assert pipe.semantic_runs_per_second > 0

    # Then the evaluation report of the trained pipeline, shortened: 5 voices (3 accents).
    out = _launch(
        "--config=quickstart",
        "--mode=eval",
        f"--workdir={tmp_path}",
        "--config.eval.voices=5",
        "--config.eval.per_voice=1",
        "--config.eval.abx_words=bat,pat,bit,pit,cat,cap",
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    sec = report["sections"]
    assert set(sec) >= {"codec", "continuation", "abx", "lexical", "validation_loss", "curves"}
    accents = sec["codec"]["groups"]["accent"]
    assert sorted(accents["groups"]) == ["en-gb-scotland", "en-us"]
    assert accents["metrics"]["wer"]["spread"] >= 0
    # A trained codec makes sound: every clip's resynthesis is measured, DNSMOS included.
    assert all("dnsmos_ovrl" in r and "visqol" in r for r in sec["codec"]["rows"])
    assert all(0 < r["speaker_similarity"] <= 1 for r in sec["continuation"]["rows"])
    assert set(sec["curves"]) >= {"semantic", "coarse", "fine"}
    assert set(sec["validation_loss"]["coarse"]["per_level"]) == {"level_0", "level_1", "eos"}
    html = (tmp_path / "eval" / "report.html").read_text()
    assert 'id="bars-codec-accent-wer"' in html and 'id="curves-coarse"' in html
    assert sec["detector"]["pipeline"]["auc"] == d["pipeline_auc"]
    assert 'id="calibration-pipeline"' in html


def test_generate_without_a_pipeline_says_where_it_looked(tmp_path):
    out = _launch("--mode=generate", f"--pipeline={tmp_path / 'none'}", "--seconds=1")
    assert out.returncode == 2
    assert f"no pipeline at {tmp_path / 'none'}" in out.stderr
    (tmp_path / "empty").mkdir()
    out = _launch("--mode=generate", f"--pipeline={tmp_path / 'empty'}", "--seconds=1")
    assert out.returncode == 2 and "no semantic stage" in out.stderr


def test_dry_run_of_a_workflow_config_names_its_parts(tmp_path):
    r = run_launch("--config=quickstart", "--dry_run", f"--workdir={tmp_path}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "workflow of several parts" in r.stderr and "coarse" in r.stderr
