"""coarse_tpu on one node of 8 x H100 (80 GB): parameters and Adam states sharded over the
node (fsdp 8), cuDNN fused attention, the paper's global batch of 256 in 4 micro-batches.

    python launch.py --config=coarse_gpu --workdir=runs/coarse \
        --config.data.corpora.librilight=/data/librilight/tokens
    python launch.py --config=coarse_gpu --dry_run --target=h100:8   # memory plan, no GPU
    tpu/slurm.sh --config=coarse_gpu --nodes=4 ...                  # 4 nodes: mesh.slices=4
"""

import ml_collections

from configs import base
from configs.semantic_tpu import CORPORA


def get_config() -> ml_collections.ConfigDict:
    c = base.stage_lm("coarse", CORPORA)
    base.for_gpu_node(c, grad_accum=4)
    return c
