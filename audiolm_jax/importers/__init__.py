"""Importers of public checkpoints (Hugging Face formats, read from disk; nothing is downloaded)
into the project's modules, written as Orbax checkpoints every workflow loads like trained ones.

    python launch.py --mode=import --from=encodec   --checkpoint=DIR --workdir=runs/encodec
    python launch.py --mode=import --from=hubert    --checkpoint=DIR --workdir=runs/hubert
    python launch.py --mode=import --from=w2v_bert2 --checkpoint=DIR --workdir=runs/w2v_bert2

DIR is what `save_pretrained` writes (config.json + model.safetensors or pytorch_model.bin).
Then `codec.load(workdir)`, or `launch.py --config=<workdir>/config.py --mode=fit_kmeans` and
`semantic.load(workdir)` for the speech models. Each module documents what maps and what not.
"""

from __future__ import annotations

import importlib
import logging
import os
import pprint
import time

from audiolm_jax.importers.common import CheckpointImportError, write_checkpoint

log = logging.getLogger("audiolm_jax")

# --from name -> module with import_checkpoint(path) -> (project config, params, model_state).
IMPORTERS = {
    "encodec": "audiolm_jax.importers.encodec",
    "hubert": "audiolm_jax.importers.hubert",
    "w2v_bert2": "audiolm_jax.importers.w2v_bert2",
}

__all__ = ["IMPORTERS", "CheckpointImportError", "import_to_workdir"]


def import_to_workdir(kind: str, checkpoint: str, workdir: str) -> dict:
    """Imports the `kind` checkpoint at `checkpoint` into `<workdir>/checkpoints` (step 0) and
    writes `<workdir>/config.py`, a config file that rebuilds it (for --config= of later
    workflows). Returns a summary: parameter count, tensors, where it went."""
    if kind not in IMPORTERS:
        raise ValueError(f"unknown --from={kind!r}; importers: {', '.join(IMPORTERS)}")
    if not checkpoint:
        raise ValueError("--mode=import needs --checkpoint=PATH (a save_pretrained folder)")
    t0 = time.perf_counter()
    module = importlib.import_module(IMPORTERS[kind])
    config, params, model_state = module.import_checkpoint(checkpoint)
    import jax

    n_params = sum(int(x.size) for x in jax.tree.leaves(params))
    step_dir = write_checkpoint(workdir, config, params, model_state, source=checkpoint)
    config_py = os.path.join(workdir, "config.py")
    with open(config_py, "w", encoding="utf-8") as f:
        f.write(
            f'"""The config of the {kind} checkpoint imported from {os.path.abspath(checkpoint)}'
            '."""\n\nimport ml_collections\n\n\ndef get_config():\n'
            "    return ml_collections.ConfigDict(\n"
            f"{pprint.pformat(config.to_dict(), indent=4)}\n    )\n"
        )
    summary = {
        "from": kind,
        "checkpoint": os.path.abspath(checkpoint),
        "workdir": os.path.abspath(workdir),
        "written": step_dir,
        "config": config_py,
        "model": config.model,
        "params": n_params,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("Imported %s (%s, %d params) into %s", checkpoint, kind, n_params, step_dir)
    return summary
