"""The workflows `launch.py --mode=...` runs. Each takes (config, workdir) and returns a summary."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

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
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary, result, model, eval_source


def _primary() -> bool:
    import jax

    return jax.process_index() == 0


def run_quickstart(config: Any, workdir: str) -> dict:
    """Trains every part that exists so far, tiny, and says what it did.

    Now: the semantic-stage LM on a synthetic Markov source, compared with the source's true
    entropy and its unigram entropy (what a model that learned nothing would score).
    """
    import jax
    import jax.numpy as jnp

    from audiolm_jax.data.synthetic import unigram_entropy
    from audiolm_jax.sampling import sample_tokens

    stage_dir = os.path.join(workdir, "semantic")
    summary, result, model, eval_source = _train(config, stage_dir)
    floor, start = eval_source.entropy, unigram_entropy(eval_source)
    loss = summary["eval"].get("loss", float("nan"))
    closed = (start - loss) / (start - floor)
    # Sample from the trained stage and check the samples against the source's chain.
    prompt = jnp.full((8, 1), config.data.bos_id, jnp.int32)
    tokens = sample_tokens(
        model.cfg,
        result.state.params["model"],
        prompt,
        max_len=64,
        rng=jax.random.key(config.seed),
        temperature=1.0,
    )
    follows = eval_source.follows_chain(jax.device_get(tokens)[:, 1:])
    chance = eval_source.successors / eval_source.vocab
    summary["quickstart"] = {
        "semantic_eval_loss_nats": loss,
        "true_entropy_nats": floor,
        "unigram_entropy_nats": start,
        "gap_closed": closed,
        "sampled_transitions_following_chain": follows,
        "chance": chance,
    }
    log.info(
        "Quickstart done. Semantic stage: held-out loss %.3f nats vs. true entropy %.3f and "
        "unigram %.3f: %.0f%% of the gap closed. Sampled 8 x 63 tokens: %.0f%% of transitions "
        "follow the source's chain (chance %.1f%%). Checkpoints, TensorBoard events and "
        "summary.json are in %s.",
        loss,
        floor,
        start,
        100 * closed,
        100 * follows,
        100 * chance,
        os.path.abspath(stage_dir),
    )
    with open(os.path.join(workdir, "quickstart.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def run_dry_run(
    config: Any, workdir: str, *, devices: int | None = None, target: str | None = None
) -> dict:
    """Per-device memory and FLOPs of `config`'s train step, without training (dry_run.py)."""
    from audiolm_jax import tasks
    from audiolm_jax.train.dry_run import dry_run

    model, train_source, _ = tasks.build(config)
    report = dry_run(config, model, train_source, devices=devices, target=target)
    with open(os.path.join(workdir, "dry_run.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    return report


MODES = {"train": run_train, "quickstart": run_quickstart}
