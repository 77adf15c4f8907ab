"""audiolm-jax: AudioLM (Borsos et al. 2022, arXiv:2209.03143) in JAX/Flax.

`pip install -e .` is the whole set-up; `pip install -e ".[test]"` adds what the tests need.
"""

from setuptools import find_packages, setup

setup(
    name="audiolm-jax",
    version="0.1.0",
    description="AudioLM in JAX/Flax: SoundStream, w2v-BERT tokens and three transformer stages, "
    "sharded across TPU/GPU meshes.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["audiolm_jax", "audiolm_jax.*"]),
    # The embedded speech corpus (audiolm_jax/data/make_corpus.py) the quickstart trains on.
    package_data={"audiolm_jax.data": ["corpus/*.flac", "corpus/corpus.json"]},
    install_requires=[
        "jax>=0.8",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "ml_collections>=1.0",
        "absl-py",
        "numpy",
        "soundfile",
        "soxr",  # resampling (dsp.resample)
        "librosa",
        "tensorflow-datasets",
        "seqio",
        # TF 2.21 no longer pulls tensorboard in; our event writer uses its protos.
        "tensorboard",
        # Importers read public checkpoints' .safetensors with NumPy (no torch needed).
        "safetensors",
    ],
    extras_require={
        # torch + transformers build the reference models the importers are parity-tested
        # against (random weights, CPU). .ci/run installs torch==2.13.0, a CPU build, first.
        "test": [
            "pytest",
            "pytest-xdist",
            "hypothesis",
            "ruff",
            "torch",
            "transformers",
            # audiolm_jax.eval's metrics (the eval tests run them on real speech).
            "pystoi",
            "visqol-python",
            "speechmos",
            "onnxruntime",
            "pocketsphinx",
            # The eval HTML test reads Chromium's screenshots.
            "pillow",
        ],
        # Offline metrics of audiolm_jax.eval: STOI, ViSQOL, DNSMOS (models in the wheels) and
        # pocketsphinx's English model for word error rates.
        "eval": ["pystoi", "visqol-python", "speechmos", "onnxruntime", "pocketsphinx"],
        # JAX for the accelerator the job runs on (tpu/setup.sh installs one of these).
        "tpu": ["jax[tpu]"],
        "gpu": ["jax[cuda12]"],
        # Ahead-of-time TPU compiles on a CPU host for `--dry_run --target=v5e:4x4`.
        "tpu_aot": ["libtpu==0.0.42.*"],
        # Quality metrics of benchmarks/bench_codec_quality.py (and Debian's opus-tools).
        "bench": ["visqol-python", "pystoi"],
    },
)
