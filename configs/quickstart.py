"""The first command a newcomer runs: trains every part tiny on a CPU and says what it did.

    python launch.py --config=quickstart

Now: the codec (`soundstream_tiny`) on the embedded speech corpus, reporting its held-out mel
distance before and after and writing reconstructions to <workdir>/audio/; then the semantic
tokenizer (`w2v_bert_tiny` pretrained on the same corpus, k-means on one layer, held-out clips
tokenized); then the semantic stage (`semantic_tiny`) on a synthetic Markov source, reporting
how close it came to the source's true entropy and checking its samples. Each part's config is
under `parts` (`--config.parts.codec.train.steps=100` overrides one). It grows with the project
until it goes from audio to audio.
"""

import ml_collections

from configs import semantic_tiny, soundstream_tiny, w2v_bert_tiny


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "quickstart"
    c.workflow = "quickstart"
    c.seed = 0
    codec = soundstream_tiny.get_config()
    codec.name = "soundstream_tiny"
    # Shorter than soundstream_tiny's own 400 steps, still through 50 adversarial steps.
    codec.train.update(steps=300, eval_every=150, checkpoint_every=150)
    codec.loss.adversarial_start = 250
    tokenizer = w2v_bert_tiny.get_config()
    tokenizer.name = "w2v_bert_tiny"
    semantic = semantic_tiny.get_config()
    semantic.name = "semantic_tiny"
    c.parts = ml_collections.ConfigDict(dict(codec=codec, tokenizer=tokenizer, semantic=semantic))
    c.reconstructions = 4  # held-out clips written to <workdir>/audio/
    return c
