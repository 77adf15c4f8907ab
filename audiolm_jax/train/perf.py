"""Model FLOPs utilisation and profiler traces for the trainer.

MFU = model FLOPs of a step (from shapes, `Model.flops_per_step`) / step time / the peak dense
bf16 FLOP/s of the chips that ran it. Peaks per chip, from the vendors' published figures:
Cloud TPU docs, "TPU versions" (v4 275, v5e 197, v5p 459, v6e 918 TFLOP/s bf16); NVIDIA's
H100/H200 SXM datasheets (989 TFLOP/s dense bf16) and A100 (312).
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger("audiolm_jax")

# device_kind prefix (lower case) -> peak dense bf16 FLOP/s per device. Order matters: the
# first prefix that matches wins ("tpu v5 lite" before "tpu v5").
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("tpu v4", 275e12),
    ("tpu v5 lite", 197e12),
    ("tpu v5e", 197e12),
    ("tpu v5p", 459e12),
    ("tpu v5", 459e12),
    ("tpu v6 lite", 918e12),
    ("tpu v6e", 918e12),
    ("nvidia h100", 989e12),
    ("nvidia h200", 989e12),
    ("nvidia gh200", 989e12),
    ("nvidia a100", 312e12),
)


def peak_flops_per_device(device_kind: str, override: float | None = None) -> float | None:
    """Peak FLOP/s of one device of `device_kind` (jax's `device.device_kind`), `override`
    when set (config.train.peak_flops_per_device, for chips not in the table, or a measured
    CPU peak); None when unknown: MFU is then not logged."""
    if override:
        return float(override)
    kind = device_kind.lower()
    for prefix, peak in PEAK_FLOPS:
        if kind.startswith(prefix):
            return peak
    return None


def mfu(flops_per_step: float, step_seconds: float, peak_per_device: float, devices: int) -> float:
    """Fraction of the devices' peak the model's own FLOPs used (no credit for recompute)."""
    return flops_per_step / step_seconds / (peak_per_device * devices)


def parse_profile_steps(spec: str | int | None, first_step: int) -> tuple[int, int] | None:
    """`config.train.profile_steps` -> the (first, last) step numbers to trace, or None.

    "N" traces N steps starting two after `first_step` (past compilation and the first
    dispatch); "A:B" traces steps A..B inclusive. Steps count updates done, as in the logs.
    """
    if spec in (None, "", 0, "0"):
        return None
    text = str(spec)
    try:
        if ":" in text:
            a, b = (int(x) for x in text.split(":"))
        else:
            a = first_step + 2
            b = a + int(text) - 1
    except ValueError:
        raise ValueError(
            f"train.profile_steps must be N (steps to trace) or A:B (a step range), got {spec!r}"
        ) from None
    if a < 1 or b < a:
        raise ValueError(f"train.profile_steps={spec!r} is not a step range with 1 <= A <= B")
    return a, b


class Profiler:
    """Starts a jax.profiler trace before step `first` and stops it after step `last`; the
    trace lands in `logdir/plugins/profile/` where TensorBoard's profile tab finds it."""

    def __init__(self, window: tuple[int, int] | None, logdir: str):
        self.window, self.logdir, self.active = window, logdir, False

    def before(self, step: int) -> None:
        """Called with the number of the step about to run."""
        if self.window and step == self.window[0] and not self.active:
            if "://" not in self.logdir:
                os.makedirs(self.logdir, exist_ok=True)
            jax.profiler.start_trace(self.logdir)
            self.active = True
            log.info("Profiling steps %d-%d into %s.", *self.window, self.logdir)

    def after(self, step: int, outputs) -> None:
        """Called after step `step` ran, with its outputs (waited for before the trace ends)."""
        if self.active and step >= self.window[1]:
            self.stop(outputs)

    def stop(self, outputs=None) -> None:
        if self.active:
            jax.block_until_ready(outputs)
            jax.profiler.stop_trace()
            self.active = False
            log.info("Profile written to %s (tensorboard --logdir %s).", self.logdir, self.logdir)
