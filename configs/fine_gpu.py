"""fine_tpu on one node of 8 x H100 (80 GB): parameters and Adam states sharded over the
node (fsdp 8), cuDNN fused attention, the paper's global batch of 256 in 2 micro-batches.

    python launch.py --config=fine_gpu --workdir=runs/fine \
        --config.data.corpora.librilight=/data/librilight/tokens
    python launch.py --config=fine_gpu --dry_run --target=h100:8   # memory plan, no GPU
    tpu/slurm.sh --config=fine_gpu --nodes=4 ...                  # 4 nodes: mesh.slices=4
"""

import ml_collections

from configs import base
from configs.semantic_tpu import CORPORA


def get_config() -> ml_collections.ConfigDict:
    c = base.stage_lm("fine", CORPORA)
    base.for_gpu_node(c, grad_accum=2)
    return c
