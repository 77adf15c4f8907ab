"""`import audiolm_jax`, the training path, the codec, the tokenizers and the importers never
import TensorFlow (nor torch: importers read safetensors with NumPy)."""

import subprocess
import sys

from conftest import REPO


def test_no_tensorflow_on_the_training_path():
    code = (
        "import sys, audiolm_jax, audiolm_jax.layouts, audiolm_jax.train.trainer, "
        "audiolm_jax.lm.model, audiolm_jax.workflows, audiolm_jax.tasks, "
        "audiolm_jax.data.synthetic, audiolm_jax.codec, audiolm_jax.codec.model, "
        "audiolm_jax.dsp, audiolm_jax.data.audio, audiolm_jax.train.checkpoint, "
        "audiolm_jax.kmeans, audiolm_jax.semantic, audiolm_jax.semantic.w2v_bert, "
        "audiolm_jax.semantic.fit, audiolm_jax.semantic.abx, audiolm_jax.semantic.hubert, "
        "audiolm_jax.semantic.w2v_bert2, audiolm_jax.importers, audiolm_jax.importers.encodec, "
        "audiolm_jax.importers.hubert, audiolm_jax.importers.w2v_bert2;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'seqio', "
        "'tensorflow_datasets', 'torch', 'transformers')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_sample_path_imports_no_tensorflow():
    """The issue's check, plus a real call path: load_pipeline, sample and score resolved and
    the sampling module imported."""
    code = (
        "import sys, audiolm_jax; audiolm_jax.sample; audiolm_jax.load_pipeline; "
        "audiolm_jax.score; import audiolm_jax.sampling.pipeline; "
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
