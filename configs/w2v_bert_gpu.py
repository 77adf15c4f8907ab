"""w2v_bert_tpu (w2v-BERT XL, ~0.6B parameters) on one node of 8 x H100: FSDP over the node,
cuDNN fused attention, batch 256 x 10 s in 4 micro-batches.

    python launch.py --config=w2v_bert_gpu --config.data.source=folder --config.data.path=DIR
"""

import ml_collections

from configs import base, w2v_bert_tpu


def get_config() -> ml_collections.ConfigDict:
    c = w2v_bert_tpu.get_config()
    base.for_gpu_node(c, fsdp=8, grad_accum=4, section="w2v_bert")
    c.name = "w2v_bert_gpu"
    return c
