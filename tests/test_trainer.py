"""The one trainer drives a GAN (two optimizers), non-gradient state, and stops on NaN."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from toy_models import EMACentering, GaussianSource, ToyGAN

from audiolm_jax.train.trainer import NonFiniteError, make_optimizers, make_train_step, train


def _config(steps, lr=0.05, **train):
    c = ml_collections.ConfigDict()
    c.name, c.seed = "toy", 0
    c.optimizer = ml_collections.ConfigDict(
        dict(
            lr=lr,
            warmup_steps=5,
            decay_steps=0,
            end_lr_ratio=1.0,
            b1=0.5,
            b2=0.9,
            eps=1e-8,
            weight_decay=0.0,
            clip_norm=1.0,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=steps,
            log_every=50,
            eval_every=0,
            eval_batches=1,
            checkpoint_every=100,
            keep_checkpoints=2,
            async_checkpoints=False,
            grad_accum=1,
            log_batch_hashes=False,
        )
    )
    c.train.update(train)
    return c


def test_two_optimizer_gan_moves_generator_to_data(tmp_path):
    config = _config(400)
    config.optimizers = ml_collections.ConfigDict({"generator": {"lr": 0.03}})
    result = train(config, str(tmp_path), ToyGAN(), GaussianSource(mean=3.0))
    gen = jax.device_get(result.state.params["generator"])
    assert abs(float(gen["b"]) - 3.0) < 0.5, gen  # started at 0
    assert set(result.state.opt_state) == {"generator", "discriminator"}
    assert "generator/grad_norm" in result.metrics and "discriminator/lr" in result.metrics


def test_non_gradient_state_is_updated_and_checkpointed(tmp_path):
    config = _config(60, lr=0.1, checkpoint_every=30)
    result = train(config, str(tmp_path), EMACentering(), GaussianSource(mean=3.0))
    state = jax.device_get(result.state.model_state)
    assert abs(float(state["mean"]) - 3.0) < 0.3 and int(state["count"]) == 60
    assert abs(float(result.state.params["model"]["w"]) - 2.0) < 0.2
    # Resuming restores the EMA exactly (nothing left to train: 60 of 60 done).
    again = train(config, str(tmp_path), EMACentering(), GaussianSource(mean=3.0))
    assert again.resumed_from == 60
    np.testing.assert_array_equal(jax.device_get(again.state.model_state)["mean"], state["mean"])


def test_nan_stops_with_step_and_saves_nothing_broken(tmp_path):
    config = _config(10, checkpoint_every=1)
    with pytest.raises(NonFiniteError, match="at step 4"):
        train(config, str(tmp_path), EMACentering(), GaussianSource(nan_at=4))
    steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
    assert steps[-1] == 3
    # The newest checkpoint holds finite parameters and resumes.
    config.train.steps = 3
    result = train(config, str(tmp_path), EMACentering(), GaussianSource())
    assert result.resumed_from == 3
    assert np.isfinite(float(result.state.params["model"]["w"]))


def test_gradient_accumulation_matches_one_big_batch():
    from audiolm_jax.train.trainer import init_state

    model, source = EMACentering(), GaussianSource(batch_size=8)
    batch = next(source)
    outs = []
    for accum in (1, 2):
        config = _config(10)
        txs, schedules = make_optimizers(config, model.groups, 10)
        state = init_state(model, txs, batch, seed=0)
        step = jax.jit(make_train_step(model, txs, schedules, grad_accum=accum))
        state, _ = step(state, batch)
        outs.append(float(state.params["model"]["w"]))
    # EMA state updates once per micro-batch, so the centres differ slightly; the gradients of
    # the squared error do not, to first order.
    assert outs[0] == pytest.approx(outs[1], rel=0.05)


def test_mfu_is_logged_and_profile_steps_write_a_trace(tmp_path):
    """A stage LM logs model FLOPs utilisation against the per-device peak (here an override,
    as for a chip the table lacks) to TensorBoard, and --profile_steps=2 writes a trace."""
    import glob

    from audiolm_jax import tasks
    from audiolm_jax.config import apply_override, load_config
    from audiolm_jax.train.perf import parse_profile_steps, peak_flops_per_device
    from audiolm_jax.train.summary import read_scalars

    config = load_config("semantic_tiny")
    for k, v in {
        "lm.num_layers": "1",
        "data.batch_size": "4",
        "data.seq_len": "64",
        "train.steps": "8",
        "train.log_every": "4",
        "train.eval_every": "0",
        "train.profile_steps": "2",
        "train.peak_flops_per_device": "1e12",
    }.items():
        apply_override(config, k, v)
    model, source, _ = tasks.build(config)
    train(config, str(tmp_path), model, source)
    events = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    scalars = [s for e in events for s in read_scalars(e)]
    mfu = [v for step, tag, v in scalars if tag == "mfu"]
    tflops = [v for step, tag, v in scalars if tag == "model_tflops_per_s"]
    assert len(mfu) == 2 and 0 < mfu[-1] < 1
    assert mfu[-1] == pytest.approx(tflops[-1] / 1.0, rel=1e-5)  # 1 TFLOP/s peak, 1 device
    assert glob.glob(str(tmp_path / "tensorboard" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    # Peaks by device kind; "N" traces N steps from two after the first, "A:B" a range.
    assert peak_flops_per_device("TPU v5 lite") == 197e12
    assert peak_flops_per_device("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_per_device("cpu") is None
    assert parse_profile_steps("3", 0) == (2, 4) and parse_profile_steps("10:12", 0) == (10, 12)
    with pytest.raises(ValueError, match="profile_steps"):
        parse_profile_steps("x", 0)
