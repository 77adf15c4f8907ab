"""The quickstart on procedural piano: AudioLM's piano variant (3 codec levels, all in the
coarse stage, no fine stage; arXiv:2209.03143 sec. 5), tiny, on a CPU.

    python launch.py --config=piano_quickstart

Writes `piano.pieces` melodies in the 24 keys (audiolm_jax/data/piano.py), then runs the
quickstart's steps on them: codec (piano_soundstream_tiny), semantic tokenizer (w2v_bert_tiny),
dataset + token cache (whole pieces held out), the semantic and coarse stages, and a
continuation of a held-out piece. `tests/test_piano_coherence.py` checks that continuations
stay in their prompt's key.
"""

import ml_collections

from configs import piano_coarse_tiny, piano_semantic_tiny, piano_soundstream_tiny, quickstart


def get_config():
    c = quickstart.get_config()
    c.name = "piano_quickstart"
    c.corpus_source = "piano"
    c.piano = ml_collections.ConfigDict(dict(pieces=240, seconds=8.0))
    codec = piano_soundstream_tiny.get_config()
    parts = c.parts.to_dict()
    parts["codec"] = codec
    parts["tokenizer"]["data"].update(source="folder", path="", eval_every=10)
    parts["corpus"]["corpus"].update(name="piano_corpus", eval_speaker_count=60)
    parts["semantic"] = piano_semantic_tiny.get_config()
    parts["coarse"] = piano_coarse_tiny.get_config()
    # The semantic stage overfits past ~200 steps (held-out 3.38 nats at 200, 4.03 at 400);
    # the coarse stage still improves at 1000.
    parts["semantic"].train.update(steps=200, eval_every=100, checkpoint_every=100)
    parts["coarse"].train.update(steps=1000, eval_every=250, checkpoint_every=500)
    del parts["fine"]
    c.parts = ml_collections.ConfigDict(parts)
    c.generate = ml_collections.ConfigDict(dict(prompt_seconds=3.0, seconds=4.0))
    return c
