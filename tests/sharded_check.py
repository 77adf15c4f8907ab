"""Run in a subprocess with 8 fake CPU devices (XLA_FLAGS set before jax starts): trains the
same tiny LM on one device and on data=2 x fsdp=2 x tensor=2, prints a JSON verdict."""

import json
import sys
import tempfile

import jax
import numpy as np

from audiolm_jax import tasks
from audiolm_jax.config import load_config
from audiolm_jax.train import sharding
from audiolm_jax.train.trainer import train


def config():
    c = load_config("semantic_tiny")
    c.lm.update(num_layers=2, num_heads=4, d_model=64, d_ff=128, vocab_size=128, dropout=0.1)
    c.data.update(vocab=64, batch_size=8, seq_len=32)
    c.train.update(
        steps=4,
        log_every=2,
        eval_every=4,
        eval_batches=1,
        checkpoint_every=4,
        async_checkpoints=False,
    )
    c.optimizer.update(warmup_steps=1)
    return c


def run(mesh_cfg, devices, c=None):
    """Trains `c` (default: this file's tiny LM) from scratch on `devices` laid out as
    `mesh_cfg`, in a throwaway workdir."""
    c = c or config()
    mesh = sharding.make_mesh(mesh_cfg, devices)
    with tempfile.TemporaryDirectory() as d:
        result = train(c, d, *tasks.build(c), mesh=mesh)
    return result


def main():
    assert jax.device_count() == 8, jax.device_count()
    one = run({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    many = run({"data": 2, "fsdp": 2, "tensor": 2}, jax.devices())
    p1, p8 = jax.device_get(one.state.params), jax.device_get(many.state.params)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), p1, p8))
    params = many.state.params["model"]
    shard = lambda x: list(x.addressable_shards[0].data.shape)
    mu = many.state.opt_state["model"][1][0].mu["layers"]["wi"]["kernel"]
    out = {
        "loss_one": one.metrics["loss"],
        "loss_many": many.metrics["loss"],
        "eval_one": one.eval_metrics["loss"],
        "eval_many": many.eval_metrics["loss"],
        "max_param_diff": max(diffs),
        "shards": {
            "wi": [
                list(params["layers"]["wi"]["kernel"].shape),
                shard(params["layers"]["wi"]["kernel"]),
            ],
            "query": [
                list(params["layers"]["query"]["kernel"].shape),
                shard(params["layers"]["query"]["kernel"]),
            ],
            "embed": [
                list(params["embed"]["embedding"].shape),
                shard(params["embed"]["embedding"]),
            ],
            "logits": [list(params["logits"]["kernel"].shape), shard(params["logits"]["kernel"])],
            "wi_adam_mu": [list(mu.shape), shard(mu)],
        },
        "devices_per_param": len(params["layers"]["wi"]["kernel"].sharding.device_set),
    }
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
