"""Run in a subprocess with 8 fake CPU devices: the stage sampler on params laid out by the
training sharding rules (data=2 x fsdp=2 x tensor=2, prompts split over the batch axes) draws
the same tokens as on one device, and its outputs stay sharded; also with bf16 matmuls.
Prints a JSON verdict."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.config import load_config
from audiolm_jax.lm.transformer import Transformer, TransformerConfig
from audiolm_jax.sampling import sample_tokens
from audiolm_jax.train import sharding


def main():
    assert jax.device_count() == 8, jax.device_count()
    cfg = TransformerConfig(
        vocab_size=200, num_layers=2, num_heads=4, d_model=64, d_ff=128, dropout=0.0
    )
    boxed = Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    params = nn.unbox(boxed)
    prompt = jax.random.randint(jax.random.key(1), (8, 5), 4, 200)
    kw = dict(max_len=40, rng=jax.random.key(2), temperature=0.0)
    one = np.asarray(sample_tokens(cfg, params, prompt, **kw))

    rules = sharding.rules_from_config(load_config("semantic_tiny"))
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}, jax.devices())
    shardings = sharding.logical_shardings(nn.get_partition_spec(boxed), mesh, rules)
    sharded = jax.device_put(params, shardings)
    with sharding.activate(mesh, rules):
        p = jax.device_put(prompt, sharding.batch_sharding(mesh, rules))
        many = sample_tokens(cfg, sharded, p, **kw)
        drawn = sample_tokens(cfg, sharded, p, **{**kw, "temperature": 1.0})
        bf16 = dataclasses.replace(cfg, matmul_dtype="bfloat16")
        many_bf16 = sample_tokens(bf16, sharded, p, **kw)
    one_bf16 = np.asarray(sample_tokens(bf16, params, prompt, **kw))
    spread = [len({s.device for s in x.addressable_shards}) for x in jax.tree.leaves(sharded)]
    result = {
        "same_tokens": bool(np.array_equal(one, np.asarray(many))),
        "params_on_devices": max(spread),
        "output_devices": len({s.device for s in many.addressable_shards}),
        "sampled_in_range": bool(np.asarray(drawn).max() < cfg.vocab_size),
        # bf16 matmuls: the sharded products round like one device's up to summation order.
        "bf16_matmuls_same_tokens": float(np.mean(one_bf16 == np.asarray(many_bf16))),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
