"""Tiny models that exercise the trainer's interface beyond a single-optimizer LM."""

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax.train.interface import Model


class GaussianSource:
    """Endless batches {x: [batch, 1]} from N(mean, 1); position = batch index."""

    def __init__(self, mean=3.0, batch_size=64, seed=0, nan_at=None):
        self.mean, self.batch_size, self.seed, self.index, self.nan_at = (
            mean,
            batch_size,
            seed,
            0,
            nan_at,
        )

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.index])
        x = (self.mean + rng.standard_normal((self.batch_size, 1))).astype(np.float32)
        if self.nan_at is not None and self.index + 1 == self.nan_at:
            x[0, 0] = np.nan
        self.index += 1
        return {"x": x}

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = int(state["index"])


class ToyGAN(Model):
    """1-D GAN: generator g(z) = a z + b, discriminator D(x) = sigmoid(MLP(x)).

    Two optimizers, discriminator first (hinge-free non-saturating losses).
    """

    groups = ("discriminator", "generator")

    def init(self, rng, batch):
        k1, k2 = jax.random.split(rng)
        gen = {"a": jnp.ones(()), "b": jnp.zeros(())}
        disc = {
            "w1": 0.5 * jax.random.normal(k1, (1, 16)),
            "b1": jnp.zeros(16),
            "w2": 0.5 * jax.random.normal(k2, (16, 1)),
            "b2": jnp.zeros(1),
        }
        return {"generator": gen, "discriminator": disc}, {}

    @staticmethod
    def _disc(p, x):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return (h @ p["w2"] + p["b2"])[:, 0]

    def _fake(self, p, rng, n):
        z = jax.random.normal(rng, (n, 1))
        return p["a"] * z + p["b"]

    def loss(self, group, params, model_state, batch, rng, train):
        real = batch["x"]
        fake = self._fake(params["generator"], rng, real.shape[0])
        d = params["discriminator"]
        if group == "discriminator":
            loss = (
                jax.nn.softplus(-self._disc(d, real)).mean()
                + jax.nn.softplus(self._disc(d, fake)).mean()
            )
            metrics = {"d_loss": loss}
        else:
            loss = jax.nn.softplus(-self._disc(d, fake)).mean()
            metrics = {"g_loss": loss, "fake_mean": fake.mean()}
        return loss, (model_state, metrics)


class EMACentering(Model):
    """Linear regression on centred inputs, the centre an EMA of the data (non-gradient state).

    Like batch statistics or EMA codebooks: `model_state` is updated in the loss, never by
    gradients, and must survive checkpoints.
    """

    def init(self, rng, batch):
        return {"model": {"w": jnp.zeros(())}}, {"mean": jnp.zeros(()), "count": jnp.zeros(())}

    def loss(self, group, params, model_state, batch, rng, train):
        x = batch["x"][:, 0]
        new_mean = 0.9 * model_state["mean"] + 0.1 * jnp.mean(x)
        state = {"mean": jax.lax.stop_gradient(new_mean), "count": model_state["count"] + 1}
        pred = params["model"]["w"] * (x - state["mean"])
        loss = jnp.mean((pred - 2.0 * (x - 3.0)) ** 2)
        return loss, (state, {"loss": loss})
