"""The audio-token pipeline on a local folder: a tfds dataset, then a sharded token cache.

    python launch.py --config=corpus --mode=build_dataset --input=DIR --workdir=runs/corpus
    python launch.py --config=corpus --mode=tokenize --workdir=runs/corpus \\
        --config.tokenize.codec=runs/soundstream_tiny --config.tokenize.semantic=runs/w2v

`--config.corpus.layout=librispeech` or `librilight` reads those corpora's folder layouts;
`--config.corpus.subsets=small` picks Libri-Light's unlab-small. The stage LMs then train on the
cache with a `data` section from `configs/base.py`'s `cache_stage` (see semantic_cache_tiny).
On a pod, run the same `--mode=tokenize` command on every worker: each host tokenizes its own
shards.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    c = base.get_base_config()
    c.update(base.corpus())
    c.workflow = "build_dataset"  # the mode when --mode is not given
    return c
