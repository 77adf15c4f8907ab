"""The piano quickstart sized to show AudioLM's piano coherence from scratch on a CPU: twice
the pieces, longer stage training, 240 held-out pieces with 3 continuations each, so that the
key-keeping rate of the continuations is told apart from the shuffled-semantic-token control
(BENCHMARKS.md, "Piano key coherence").

    python launch.py --config=piano_coherence          # about 23 minutes on 2 cores

Everything else is `piano_quickstart`'s (no detector step). The stages' held-out losses and the
coherence counts, intervals and p-values are in <workdir>/quickstart.json ("coherence");
tests/test_piano_coherence.py (slow) runs this config and asserts them.
"""

from configs import piano_quickstart


def get_config():
    c = piano_quickstart.get_config()
    c.name = "piano_coherence"
    # 2400 pieces of 8 s (5.3 h), 240 of them held out whole. With 1200 pieces the semantic
    # stage overfits after 250-500 steps (held-out 2.56 nats); here it reaches 2.48 at 600
    # steps and the coarse stage 2.42 at 2000. (4800 pieces, 1000 / 3000 steps: 2.27 / 2.15,
    # 25 min, and no larger effect: BENCHMARKS.md.)
    c.piano.pieces = 2400
    c.parts.corpus.corpus.eval_speaker_count = 240
    c.parts.semantic.train.update(steps=600, eval_every=200, checkpoint_every=300)
    c.parts.coarse.train.update(steps=2000, eval_every=500, checkpoint_every=1000)
    del c.parts["detector"]
    # A single 4 s continuation's estimated key is a noisy test: with 60 prompts x 1 the two
    # rates (~0.15 and ~0.10) sit inside each other's 95% intervals; 240 x 3 separate them.
    c.coherence.update(prompts=240, samples=3)
    return c
