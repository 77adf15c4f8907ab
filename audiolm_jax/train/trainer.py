"""One generic trainer for every model in the project.

    result = train(config, workdir, model, train_source, eval_source)

Drives any `Model` (interface.py): one optimizer per parameter group (a GAN has two), state that
gradients do not train, gradient accumulation, held-out eval, a log line with progress, loss,
grad norm, learning rate, tokens/s and step time, TensorBoard events, Orbax checkpoints with the
data position, resume, SIGTERM, and NaN/inf detection.

Determinism: the step's randomness is `fold_in(seed key, step)` and data sources are functions of
their saved position, so a run that is killed and resumed equals an unbroken one bit for bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiolm_jax.train import files, perf, sharding
from audiolm_jax.train.checkpoint import Checkpointer
from audiolm_jax.train.interface import Batch, DataSource, Model
from audiolm_jax.train.optim import make_optimizer
from audiolm_jax.train.summary import EventWriter, NullWriter, format_duration, progress_bar

log = logging.getLogger("audiolm_jax")


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN/inf; raised with the step, nothing broken is saved."""


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; saved whole in every checkpoint."""

    step: jax.Array  # int32 scalar: updates done
    params: dict[str, Any]  # group -> parameter tree
    opt_state: dict[str, Any]  # group -> optax state
    model_state: Any  # non-gradient state (EMA codebooks, batch statistics)
    rng: jax.Array  # uint32 key data of the run's seed key
    nonfinite_step: jax.Array  # int32: -1, or the step whose loss/grads were not finite


def config_meta(config: Any) -> dict:
    """{"config": ...} as JSON-able values: what every checkpoint's meta carries, so inference
    code (checkpoint.read_trained) rebuilds the model from the checkpoint alone."""
    meta = {"config": config.to_dict() if hasattr(config, "to_dict") else dict(config)}
    return jax.tree.map(
        lambda x: x if isinstance(x, (int, float, str, bool, type(None))) else str(x), meta
    )


def group_metric(groups: tuple[str, ...], group: str, name: str) -> str:
    """`grad_norm` for a one-group model, `generator/grad_norm` for a GAN."""
    return name if len(groups) == 1 else f"{group}/{name}"


def _tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def make_train_step(
    model: Model,
    txs: dict[str, optax.GradientTransformation],
    schedules: dict[str, optax.Schedule],
    grad_accum: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """Returns the pure `train_step(state, batch) -> (state, metrics)`.

    Groups are updated in order, each seeing the previous groups' new parameters (a GAN's
    generator step sees the updated discriminator). With `grad_accum` = n the batch is split into
    n micro-batches along axis 0 and their gradients averaged before one update.
    """

    def grads_of(group, params, mstate, batch, rng):
        def loss_fn(p_group, mstate, micro, r):
            return model.loss(group, {**params, group: p_group}, mstate, micro, r, True)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        if grad_accum == 1:
            (_, (mstate, metrics)), grads = grad_fn(params[group], mstate, batch, rng)
            return grads, mstate, metrics

        def split(x):
            if x.shape[0] % grad_accum:
                raise ValueError(
                    f"batch axis {x.shape[0]} is not divisible by train.grad_accum={grad_accum}"
                )
            return x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:])

        micros = jax.tree.map(split, batch)
        first = jax.tree.map(lambda x: x[0], micros)
        g_shape, _, m_shape = jax.eval_shape(
            lambda: (lambda out: (out[1], None, out[0][1][1]))(
                grad_fn(params[group], mstate, first, rng)
            )
        )
        zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)

        def body(carry, xs):
            gsum, mstate, msum = carry
            micro, i = xs
            (_, (mstate, metrics)), grads = grad_fn(
                params[group], mstate, micro, jax.random.fold_in(rng, i)
            )
            return (_tree_add(gsum, grads), mstate, _tree_add(msum, metrics)), None

        (gsum, mstate, msum), _ = jax.lax.scan(
            body, (zeros(g_shape), mstate, zeros(m_shape)), (micros, jnp.arange(grad_accum))
        )
        scale = lambda t: jax.tree.map(lambda x: x / grad_accum, t)
        return scale(gsum), mstate, scale(msum)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        params, opt_state, mstate = dict(state.params), dict(state.opt_state), state.model_state
        metrics = {}
        for i, group in enumerate(model.groups):
            grads, mstate, m = grads_of(group, params, mstate, batch, jax.random.fold_in(rng, i))
            updates, opt_state[group] = txs[group].update(grads, opt_state[group], params[group])
            params[group] = optax.apply_updates(params[group], updates)
            metrics.update(m)
            metrics[group_metric(model.groups, group, "grad_norm")] = optax.tree.norm(grads)
            metrics[group_metric(model.groups, group, "lr")] = schedules[group](state.step)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
        # A non-finite step leaves the state as it was, so no broken state can be checkpointed;
        # the host sees `nonfinite_step` at its next check and stops with the step number.
        # (A cond, not a select: it picks buffers instead of reading and writing every array.)
        params, opt_state, mstate = jax.lax.cond(
            finite,
            lambda: (params, opt_state, mstate),
            lambda: (state.params, state.opt_state, state.model_state),
        )
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            model_state=mstate,
            nonfinite_step=jnp.where(
                finite | (state.nonfinite_step >= 0), state.nonfinite_step, state.step + 1
            ),
        )
        return new_state, metrics

    return train_step


def make_eval_step(model: Model) -> Callable:
    """`eval_step(state, batch) -> metrics`, no dropout."""

    def eval_step(state: TrainState, batch: Batch) -> dict:
        return model.eval_metrics(state.params, state.model_state, batch)

    return eval_step


def make_optimizers(config: Any, groups: tuple[str, ...], total_steps: int):
    """One optimizer per group: `config.optimizer`, overridden by `config.optimizers.<group>`."""
    txs, schedules = {}, {}
    per_group = config.get("optimizers") or {}
    for group in groups:
        cfg = config.optimizer.copy_and_resolve_references()
        if group in per_group:
            cfg.update(per_group[group])
        txs[group], schedules[group] = make_optimizer(cfg, total_steps)
    return txs, schedules


def init_state(
    model: Model, txs: dict, batch: Batch, seed: int, *, boxed: bool = False
) -> TrainState:
    """The initial TrainState from a sample batch.

    With `boxed`, parameters and optimizer moments stay wrapped in their logical-axis metadata
    (`nn.Partitioned`), from which `nn.get_partition_spec` reads the sharding of every array.
    """
    key = jax.random.key(seed)
    params, mstate = model.init(jax.random.fold_in(key, 1), batch)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state={g: txs[g].init(params[g]) for g in model.groups},
        model_state=mstate,
        rng=jax.random.key_data(key),
        nonfinite_step=-jnp.ones((), jnp.int32),
    )
    return state if boxed else nn.unbox(state)


def initial_state(config: Any, model: Model, batch: Batch) -> TrainState:
    """The state a run of `config` starts from (same seed, optimizers as configured), on the
    default device: e.g. the untrained baseline an evaluation compares against."""
    txs, _ = make_optimizers(config, model.groups, int(config.train.steps))
    return run_once(lambda: init_state(model, txs, batch, config.seed))


def state_shardings(model: Model, txs: dict, batch: Batch, seed: int, mesh, rules):
    """(NamedShardings of the TrainState, abstract state carrying them), without allocating."""
    boxed = jax.eval_shape(lambda: init_state(model, txs, batch, seed, boxed=True))
    shardings = sharding.logical_shardings(nn.get_partition_spec(boxed), mesh, rules)
    plain = jax.tree.map(
        lambda x: x.unbox(apply_constraint=False) if isinstance(x, nn.meta.AxisMetadata) else x,
        boxed,
        is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata),
    )
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), plain, shardings
    )
    return shardings, abstract


# Compiler options for code that runs once (initialisation): XLA:CPU spends most of an init's
# compile time optimising the random-number kernels of every parameter; unoptimised code
# compiles 2-3x faster and runs once.
_ONCE_OPTIONS = {"cpu": {"xla_backend_optimization_level": 0}}


def run_once(fn: Callable, *args, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)(*args)` compiled for code that runs once (initialisation,
    k-means seeding): on CPU without XLA's backend optimisations, which compile 2-3x faster."""
    lowered = jax.jit(fn, **jit_kwargs).lower(*args)
    return lowered.compile(_ONCE_OPTIONS.get(jax.default_backend()))(*args)


def batch_digest(batch: Batch) -> str:
    """SHA-1 of a batch's arrays: lets tests compare the batches two runs saw."""
    h = hashlib.sha1()
    for k in sorted(batch):
        h.update(k.encode())
        h.update(np.ascontiguousarray(batch[k]).tobytes())
    return h.hexdigest()


def _peek(source: DataSource) -> Batch:
    pos = source.get_state()
    batch = next(source)
    source.set_state(pos)
    return batch


@dataclasses.dataclass
class TrainResult:
    """What `train` did: final step, why it stopped, the last metrics it logged."""

    step: int
    stopped: str  # "finished" | "preempted"
    metrics: dict[str, float]
    eval_metrics: dict[str, float]
    resumed_from: int | None
    state: TrainState


class _Preemption:
    """SIGTERM (a preemption notice) -> save the same step on every process, then stop.

    One process: SIGTERM sets a flag the loop checks after each step. A multi-process job
    (TPU pod, GPU nodes): JAX's preemption service, started by `jax.distributed.initialize`,
    catches SIGTERM on any process and agrees through the coordinator on a step every process
    reaches (`multihost_utils.reached_preemption_sync_point`, called after every step); all
    save that step together. Our own handler would replace the service's, so none is set then.
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._coordinated = False

    def __enter__(self):
        from jax._src import distributed

        if distributed.global_state.client is not None:
            self._coordinated = distributed.global_state.preemption_sync_manager is not None
            if not self._coordinated:
                log.warning(
                    "JAX's preemption service is off (jax_enable_preemption_service): a "
                    "SIGTERM will stop this job without a coordinated checkpoint."
                )
            return self
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, no preemption support
            self._previous = None
        return self

    def _handle(self, signum, frame):
        log.warning("SIGTERM received: saving a checkpoint after this step, then stopping.")
        self.requested = True

    def should_stop(self, step: int) -> bool:
        """Called after every step with the step count; True when this step must be saved."""
        if self._coordinated:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                log.warning("Preemption notice: every process saves step %d, then stops.", step)
                self.requested = True
        return self.requested

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _mean_metrics(history: list[dict]) -> dict[str, float]:
    host = jax.device_get(history)
    return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def _format(metrics: dict[str, float]) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k} {v:.2e}" if k.endswith("lr") else f"{k} {v:.4f}")
    return " | ".join(parts)


def evaluate(
    eval_step, state: TrainState, source: DataSource, num_batches: int, start: dict
) -> dict[str, float]:
    """Mean metrics over `num_batches` held-out batches, always the same ones (from `start`)."""
    source.set_state(start)
    history = [eval_step(state, next(source)) for _ in range(num_batches)]
    return _mean_metrics(history)


def evaluate_untrained(
    config: Any, model: Model, source: DataSource, num_batches: int = 4
) -> tuple[dict[str, float], TrainState]:
    """(held-out metrics, state) of the untrained model `config` starts from, on the first
    `num_batches` batches of `source`: the baseline that says how much a run learned."""
    start = {"index": 0}
    source.set_state(start)
    untrained = initial_state(config, model, next(source))
    return evaluate(
        jax.jit(make_eval_step(model)), untrained, source, num_batches, start
    ), untrained


def train(
    config: Any,
    workdir: str,
    model: Model,
    train_source: DataSource,
    eval_source: DataSource | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainResult:
    """Trains `model` per `config.train`/`config.optimizer`, resuming from `workdir` if possible.

    The mesh is `config.mesh` over all devices unless `mesh` is given.
    """
    mesh = mesh or sharding.make_mesh(config.get("mesh") or {"data": -1})
    rules = sharding.rules_from_config(config)
    with sharding.activate(mesh, rules):
        return _train(config, workdir, model, train_source, eval_source, mesh, rules)


def _train(config, workdir, model, train_source, eval_source, mesh, rules) -> TrainResult:
    tcfg = config.train
    files.makedirs(workdir)
    total = int(tcfg.steps)
    txs, schedules = make_optimizers(config, model.groups, total)
    sample = _peek(train_source)

    ckpt = Checkpointer(
        workdir,
        keep=int(tcfg.keep_checkpoints),
        async_save=bool(tcfg.get("async_checkpoints", True)),
        # tf.data sources (the token cache) save their iterator with every checkpoint.
        iterator_source=train_source if hasattr(train_source, "iterator_checkpoint") else None,
    )
    state_sh, abstract = state_shardings(model, txs, sample, config.seed, mesh, rules)
    batch_sh = sharding.batch_sharding(mesh, rules)
    log.info(
        "Mesh %s over %d devices (%s).", dict(mesh.shape), mesh.size, jax.devices()[0].platform
    )
    try:
        restored = ckpt.restore_latest(abstract)
    except BaseException:  # e.g. a checkpoint of another config: stop Orbax's threads first
        ckpt.close()
        raise
    if restored is None:
        state = run_once(
            lambda: init_state(model, txs, sample, config.seed), out_shardings=state_sh
        )
        resumed_from = None
        log.info("Starting from scratch in %s (no checkpoint found).", workdir)
    else:
        resumed_from, state, data_state, _ = restored
        train_source.set_state(data_state)
        log.info("Resumed at step %d; the data stream continues at %s.", resumed_from, data_state)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    log.info(
        "Model %s: %s parameters in groups %s.",
        type(model).__name__,
        f"{n_params:,}",
        list(model.groups),
    )

    step_fn = jax.jit(
        make_train_step(model, txs, schedules, int(tcfg.get("grad_accum", 1))),
        in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, None),
        donate_argnums=0,
    )
    eval_jit = jax.jit(make_eval_step(model), in_shardings=(state_sh, batch_sh))
    eval_fn = lambda st, b: eval_jit(st, sharding.global_batch(b, batch_sh))
    primary = jax.process_index() == 0
    writer = EventWriter(os.path.join(workdir, "tensorboard")) if primary else NullWriter()
    suffix = "" if primary else f".process{jax.process_index()}"
    hash_file = (
        os.path.join(files.local_log_dir(workdir), f"batch_hashes{suffix}.txt")
        if tcfg.get("log_batch_hashes")
        else None
    )
    meta = config_meta(config)

    def check_finite(st: TrainState) -> None:
        bad = int(jax.device_get(st.nonfinite_step))
        if bad >= 0:
            raise NonFiniteError(
                f"loss or gradients became NaN/inf at step {bad}; stopped. The newest "
                f"checkpoint in {ckpt.directory} (step {ckpt.latest_step()}) is from before it. "
                "Lower optimizer.lr, raise optimizer.warmup_steps or set optimizer.clip_norm."
            )

    def save(st: TrainState, wait: bool = False) -> None:
        check_finite(st)
        step = int(jax.device_get(st.step))
        ckpt.save(step, st, train_source.get_state(), {**meta, "step": step}, wait=wait)

    step = int(jax.device_get(state.step))
    history, last_metrics, last_eval = [], {}, {}
    t_log, steps_since, tokens = time.time(), 0, model.tokens(sample)
    flops = model.flops_per_step(sample)
    peak = perf.peak_flops_per_device(
        jax.local_devices()[0].device_kind, tcfg.get("peak_flops_per_device")
    )
    if flops and peak:
        log.info(
            "MFU is logged against %.3g TFLOP/s per device (%s).",
            peak / 1e12,
            jax.local_devices()[0].device_kind,
        )
    profiler = perf.Profiler(
        perf.parse_profile_steps(tcfg.get("profile_steps"), step),
        os.path.join(workdir, "tensorboard"),
    )
    stopped = "finished"
    eval_start = eval_source.get_state() if eval_source is not None else None
    with _Preemption() as preempt:
        try:
            while step < total:
                batch = next(train_source)
                if hash_file:
                    with open(hash_file, "a") as f:
                        f.write(f"{step + 1} {batch_digest(batch)}\n")
                t0 = time.time()
                profiler.before(step + 1)
                state, metrics = step_fn(state, sharding.global_batch(batch, batch_sh))
                step += 1
                profiler.after(step, metrics)
                history.append(metrics)
                steps_since += 1
                if step == 1 or (resumed_from is not None and step == resumed_from + 1):
                    jax.block_until_ready(metrics)
                    log.info("First step compiled and ran in %.1f s.", time.time() - t0)
                    t_log, steps_since, history = time.time(), 0, []
                if preempt.should_stop(step):
                    save(state, wait=True)
                    stopped = "preempted"
                    log.info("Saved step %d after SIGTERM; exiting cleanly.", step)
                    break
                if step % int(tcfg.log_every) == 0 or step == total:
                    if history:
                        last_metrics = _mean_metrics(history)
                        dt = (time.time() - t_log) / max(steps_since, 1)
                        check_finite(state)
                        speed = {"tokens_per_s": tokens / dt, "step_time_ms": 1e3 * dt}
                        if flops:
                            speed["model_tflops_per_s"] = flops / dt / 1e12
                        if flops and peak:
                            speed["mfu"] = perf.mfu(flops, dt, peak, jax.local_device_count())
                        writer.scalars(step, {**last_metrics, **speed})
                        log.info(
                            "step %d/%d %s | %s | %s tok/s | %.1f ms/step%s | eta %s",
                            step,
                            total,
                            progress_bar(step, total),
                            _format(last_metrics),
                            f"{speed['tokens_per_s']:,.0f}",
                            speed["step_time_ms"],
                            f" | MFU {100 * speed['mfu']:.1f}%" if "mfu" in speed else "",
                            format_duration(dt * (total - step)),
                        )
                    history, t_log, steps_since = [], time.time(), 0
                if (
                    eval_source is not None
                    and tcfg.eval_every
                    and (step % int(tcfg.eval_every) == 0 or step == total)
                ):
                    last_eval = evaluate(
                        eval_fn, state, eval_source, int(tcfg.eval_batches), eval_start
                    )
                    writer.scalars(step, {f"eval/{k}": v for k, v in last_eval.items()})
                    log.info("eval at step %d | %s", step, _format(last_eval))
                    t_log = time.time()
                if step % int(tcfg.checkpoint_every) == 0 or step == total:
                    save(state)
        finally:
            profiler.stop()
            writer.close()
            ckpt.close()
    if stopped == "finished" and not last_eval and eval_source is not None and tcfg.eval_every:
        # Resumed a run that had already finished: report the checkpoint's held-out metrics
        # rather than none (a second `launch.py` of the same workdir, the quickstart rerun).
        last_eval = evaluate(eval_fn, state, eval_source, int(tcfg.eval_batches), eval_start)
        log.info("Run already at step %d of %d; eval | %s", step, total, _format(last_eval))
    return TrainResult(step, stopped, last_metrics, last_eval, resumed_from, state)
