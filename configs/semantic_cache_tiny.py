"""A tiny semantic-stage LM trained on a token cache (`--config=corpus --mode=tokenize`).

    python launch.py --config=semantic_cache_tiny --config.data.corpora.corpus=runs/corpus/tokens

Reads the cache through the seqio Task "corpus_semantic" (packed crops of de-duplicated ids),
resumes data exactly with the checkpoint. The vocabulary is sized for the quickstart's
tokenizer (K = 64 semantic ids); a cache with more ids gets an error naming the size to set
(`--config.lm.vocab_size=`).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
    return base.stage_tiny("semantic", {"corpus": "runs/corpus/tokens"})
