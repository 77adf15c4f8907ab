"""Host memory: glibc malloc settings that stop XLA's CPU runtime faulting in fresh pages.

On the CPU backend each call of a jitted function mallocs its temporaries as one block (the
6 x 512 LM's train step at batch 8 x 256: 850 MB) and frees it at the end. glibc serves the
threads XLA runs on from per-thread arenas, which hand anything that large to `mmap` and give
it back with `munmap`, so every call touches ~210,000 new 4 KiB pages and the kernel faults
and zeroes each one. With one arena, no mmap and no trimming, the block comes from the heap
and stays mapped between calls: no faults, and that step runs 1.29-1.36 -> 1.15-1.23 s on a
2-core Xeon (BENCHMARKS.md, LM train step).

    from audiolm_jax import host
    host.tune_malloc("on")      # before the first JAX computation; launch.py --malloc=on

The price: compiling is ~15-20% slower (XLA's compiler threads share the one arena's lock:
the 6 x 512 train step 5.1-5.4 -> 6.1 s), the process keeps its peak heap instead of returning
freed memory, and steps whose temporaries stay under glibc's 32 MB mmap threshold gain
nothing. So it pays for CPU runs of real size and not for tiny models (the test suite and the
quickstart, which compile more than they run), and launch.py leaves it off unless asked.
The settings are process-wide and take effect only for threads that have not yet allocated:
XLA's threads attach to their arenas when the backend starts, so call this first. On GPU and
TPU hosts the large buffers live on the device ("auto" is "on" only without one).
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os

log = logging.getLogger(__name__)

# (glibc's mallopt parameter (malloc.h), value, the environment variable glibc reads for it at
# a process's start).
_SETTINGS = (
    (-8, 1, "MALLOC_ARENA_MAX"),  # M_ARENA_MAX
    (-4, 0, "MALLOC_MMAP_MAX_"),  # M_MMAP_MAX
    (-1, 2**31 - 1, "MALLOC_TRIM_THRESHOLD_"),  # M_TRIM_THRESHOLD
)
# The same settings as environment variables: for a child process (e.g. a benchmark's torch
# peer) started under the malloc `tune_malloc` gives this one.
MALLOC_ENV = {name: str(value) for _, value, name in _SETTINGS}
MODES = ("auto", "on", "off")
_applied: bool | None = None


def has_accelerator() -> bool:
    """Whether this host looks like it has a GPU or TPU, judged without starting JAX's backends
    (that would start XLA's threads): JAX_PLATFORMS naming one, or their device files."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return any(p.strip() not in ("", "cpu") for p in platforms.split(","))
    return bool(glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/accel[0-9]*"))


def _libc():
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError off glibc)
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc(mode: str = "on") -> bool:
    """Sets glibc malloc to one arena, no mmap for large blocks and no trimming (see the module
    docstring), so XLA's CPU temporaries stay mapped between calls. Returns whether the
    settings are in effect.

    mode: "on", "off" (leave malloc alone) or "auto" (on unless the host has a GPU or TPU).
    Off glibc (macOS, musl) nothing is changed. Called after JAX's backends have started, it
    still sets malloc but warns that XLA's existing threads keep their arenas (no gain).
    """
    global _applied
    if mode not in MODES:
        raise ValueError(f"malloc mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" or (mode == "auto" and has_accelerator()):
        return bool(_applied)
    if _applied is not None:
        return _applied
    libc = _libc()
    if libc is None:
        log.info("host.tune_malloc: not glibc; malloc left as it is")
        _applied = False
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value, _ in _SETTINGS)
    _applied = ok
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        log.warning(
            "host.tune_malloc ran after JAX's backends started: XLA's CPU threads keep their "
            "own malloc arenas, so their temporaries still fault in fresh pages each call; "
            "call it before the first JAX computation"
        )
    return ok
