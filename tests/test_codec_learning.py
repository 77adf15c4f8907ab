"""soundstream_tiny learns to reconstruct held-out speech within its CPU budget, through the
adversarial phase, without NaN and with every RVQ level in use."""

import json

import jax
import numpy as np
import pytest

from audiolm_jax import tasks
from audiolm_jax.config import load_config
from audiolm_jax.train.trainer import evaluate, initial_state, make_eval_step, train


@pytest.mark.slow
def test_soundstream_tiny_halves_the_mel_distance_on_held_out_speech(tmp_path):
    config = load_config("soundstream_tiny")
    config.train.update(async_checkpoints=False, eval_batches=8)
    model, train_source, eval_source = tasks.build(config)
    start = eval_source.get_state()
    untrained = initial_state(config, model, next(iter(train_source)))
    train_source.set_state({"index": 0})
    eval_step = jax.jit(make_eval_step(model))
    before = evaluate(eval_step, untrained, eval_source, 8, start)

    result = train(config, str(tmp_path), model, train_source, eval_source)
    after = evaluate(eval_step, result.state, eval_source, 8, start)
    report = {"before": before, "after": after, "train": result.metrics}
    print(json.dumps(report, indent=1))

    assert result.step == config.train.steps and result.stopped == "finished"
    assert int(result.state.step) >= config.loss.adversarial_start  # the GAN phase ran
    assert result.metrics["d_loss"] > 0 and np.isfinite(result.metrics["g_adv"])
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert after["mel_distance"] <= 0.5 * before["mel_distance"], report
    perplexities = [v for k, v in result.metrics.items() if k.startswith("perplexity/")]
    assert len(perplexities) == config.codec.quantizer.levels
    assert min(perplexities) > 2, perplexities
