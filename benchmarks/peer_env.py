"""The peer virtual environment for the reference PyTorch AudioLM (``audiolm-pytorch``).

Standard library only: the project's benchmark scripts import this from the project's own
environment, and it creates (or reuses) a *separate* virtual environment for the peer, so that
torch and audiolm-pytorch never enter the project's dependencies.

Recipe (see shared/PEERS.md):

1. ``python3.11 -m venv PATH``
2. torch 2.13.0 CPU from the wheel on disk (``/opt/wheels/torch-2.13.0*cp311*.whl``); where that
   wheel is absent, ``pip install torch==2.13.0``.
3. ``pip install --no-deps audiolm-pytorch==2.4.0`` (its ``fairseq`` requirement does not install
   on Python 3.11, and its ``torchaudio`` requirement needs a multi-GB CUDA torch here).
4. Its other requirements by name, with torch pinned so nothing swaps it. ``encodec`` is installed
   with ``--no-deps``: its own requirements are numpy, torch, einops (all already there) and
   torchaudio, which pip would otherwise satisfy with a torchaudio release whose C++ library does
   not load against torch 2.13. torchaudio, fairseq and wandb are stubbed by the harness
   (``benchmarks/peer_audiolm_pytorch.py``), which says so in its output.

Usage::

    from benchmarks.peer_env import run_peer
    res = run_peer("peer_audiolm_pytorch.py", "train", "--steps", "10", "--warmup", "2")
    print(res["median_step_s"], res["tokens_per_s"])
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PATH = Path.home() / ".cache" / "audiolm_jax" / "peer-venv"
HARNESS = BENCH_DIR / "peer_audiolm_pytorch.py"

TORCH_VERSION = "2.13.0"
TORCH_WHEEL_GLOB = "/opt/wheels/torch-2.13.0*cp311*.whl"
AUDIOLM_PYTORCH = "audiolm-pytorch==2.4.0"
# audiolm-pytorch 2.4.0's requirements, less torch (step 2), torchaudio and fairseq (stubbed),
# wandb (stubbed) and encodec (installed with --no-deps, see the module docstring).
PEER_REQUIREMENTS = [
    "accelerate",
    "beartype",
    "einops",
    "ema-pytorch",
    "gateloop-transformer",
    "hyper-connections",
    "joblib",
    "local-attention",
    "pytorch-warmup",
    "scikit-learn",
    "sentencepiece",
    "transformers",
    "tqdm",
    "vector-quantize-pytorch",
    "numpy",
]
NO_DEPS_REQUIREMENTS = ["encodec"]

# Environment for every process run in the peer venv.
PEER_THREADS = 2
_DROP_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_checked: dict[Path, Path] = {}


def _log(msg: str) -> None:
    print(f"[peer_env] {msg}", file=sys.stderr, flush=True)


def _peer_environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        OMP_NUM_THREADS=str(PEER_THREADS),
        MKL_NUM_THREADS=str(PEER_THREADS),
        TQDM_DISABLE="1",
        PYTHONNOUSERSITE="1",
    )
    return env


def _venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def _base_python() -> str:
    """A Python 3.11 interpreter to create the venv with (the torch wheel is cp311)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found:
        return found
    raise RuntimeError("the peer venv needs Python 3.11 (the torch wheel is cp311); none found")


def _run(cmd: list[str], **kw) -> None:
    _log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, env=_peer_environ(), **kw)


def _works(python: Path, timeout: float = 600) -> bool:
    """True where the venv imports audiolm_pytorch (with the harness's stubs)."""
    if not python.exists():
        return False
    try:
        proc = subprocess.run(
            [str(python), str(HARNESS), "check"],
            capture_output=True,
            text=True,
            env=_peer_environ(),
            timeout=timeout,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    if proc.returncode != 0:
        _log("peer venv check failed:\n" + proc.stderr[-2000:])
        return False
    try:
        return bool(_parse_json_line(proc.stdout).get("ok"))
    except ValueError:
        return False


def _install(path: Path) -> None:
    python = _venv_python(path)
    if not python.exists():
        _run([_base_python(), "-m", "venv", "--clear", path])
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]

    wheels = sorted(glob.glob(TORCH_WHEEL_GLOB))
    _run(pip + [wheels[-1] if wheels else f"torch=={TORCH_VERSION}"])
    _run(pip + ["--no-deps", AUDIOLM_PYTORCH])

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(f"torch=={TORCH_VERSION}\n")
        constraints = f.name
    try:
        _run(pip + ["-c", constraints] + PEER_REQUIREMENTS)
        _run(pip + ["--no-deps"] + NO_DEPS_REQUIREMENTS)
    finally:
        os.unlink(constraints)


def ensure_peer_venv(path: Path = DEFAULT_PATH) -> Path:
    """Create (or reuse) the peer venv at ``path``; return the path of its python."""
    path = Path(path).expanduser().resolve()
    python = _venv_python(path)
    if path in _checked:
        return _checked[path]
    path.parent.mkdir(parents=True, exist_ok=True)
    # One creator at a time (benchmarks may run side by side).
    with open(path.parent / (path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _works(python):
                _log(f"creating the peer venv at {path} (a few minutes)")
                _install(path)
                if not _works(python):
                    raise RuntimeError(f"peer venv at {path} still does not import audiolm_pytorch")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _checked[path] = python
    return python


def _parse_json_line(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    raise ValueError("no JSON object line on stdout:\n" + stdout[-2000:])


def run_peer(
    script: str | os.PathLike,
    *args,
    venv: Path = DEFAULT_PATH,
    timeout: float | None = None,
    echo_stderr: bool = False,
    env: dict[str, str] | None = None,
) -> dict:
    """Run ``script`` (a path, or a name in benchmarks/) in the peer venv; return its JSON line.

    The child gets OMP/MKL threads = 2 (the scripts also call ``torch.set_num_threads(2)``),
    no PYTHONPATH and no OPENBLAS_* tuning variables; ``env`` adds variables (e.g.
    `audiolm_jax.host.MALLOC_ENV`, our process's malloc settings).
    """
    python = ensure_peer_venv(venv)
    script = Path(script)
    if not script.is_absolute() and not script.exists():
        script = BENCH_DIR / script
    proc = subprocess.run(
        [str(python), str(script), *map(str, args)],
        capture_output=True,
        text=True,
        env={**_peer_environ(), **(env or {})},
        timeout=timeout,
    )
    if echo_stderr and proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(
            f"peer script {script.name} {' '.join(map(str, args))} exited {proc.returncode}:\n"
            + proc.stderr[-4000:]
        )
    return _parse_json_line(proc.stdout)


if __name__ == "__main__":
    print(ensure_peer_venv())
