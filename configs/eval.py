"""The evaluation report of any trained workdir (a quickstart, a pipeline folder, or a codec):

    python launch.py --config=eval --workdir=runs/quickstart
    python launch.py --config=eval --workdir=runs/soundstream_tiny --config.eval.sections=codec
    python launch.py --config=eval --workdir=runs/q --config.eval.lexical_dir=/data/lexical/dev

writes <workdir>/eval/report.json and report.html (audiolm_jax/eval/evaluate.py): codec
resynthesis and continuation metrics per accent and speaker, ABX, sWUGGY-style accuracy,
per-level validation loss and loss curves. `eval.*` fields: configs/base.py.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.name = "eval"
    c.workflow = "eval"
    return c
