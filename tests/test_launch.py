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
def test_quickstart_trains_codec_tokenizer_and_semantic_stage_and_reports(tmp_path):
    out = _launch(
        "--config=quickstart",
        f"--workdir={tmp_path}",
        "--config.parts.codec.train.steps=60",
        "--config.parts.codec.loss.adversarial_start=50",
        "--config.parts.codec.train.eval_every=60",
        "--config.parts.codec.train.checkpoint_every=60",
        "--config.parts.tokenizer.train.steps=100",
        "--config.parts.tokenizer.train.eval_every=100",
        "--config.parts.tokenizer.train.checkpoint_every=100",
        "--config.parts.tokenizer.semantic.steps=10",
        "--config.parts.semantic.train.steps=80",
        "--config.parts.semantic.train.eval_every=80",
        "--config.parts.semantic.train.checkpoint_every=80",
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    q = json.loads((tmp_path / "quickstart.json").read_text())
    assert q["codec"]["mel_distance"] < q["codec"]["mel_distance_untrained"]
    assert len(list((tmp_path / "audio").glob("*.codec.wav"))) == 4
    t = q["tokenizer"]
    assert t["mlm_loss"] < t["mlm_loss_untrained"]
    assert len(t["example_ids"]) == 25 and all(0 <= i < 64 for i in t["example_ids"])
    assert (tmp_path / "tokenizer" / "kmeans" / "kmeans.json").exists()
    s = q["semantic"]
    assert s["gap_closed"] > 0.8
    assert s["sampled_transitions_following_chain"] > 0.5 > 10 * s["chance"]
    assert "Quickstart done" in (tmp_path / "log.txt").read_text()
