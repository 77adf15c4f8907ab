"""The first command a newcomer runs: audio to audio, every part tiny, on a CPU.

    python launch.py --config=quickstart

1. the codec (`soundstream_tiny`) on the embedded speech corpus (8 synthetic voices), its
   held-out mel distance before and after, reconstructions in <workdir>/audio/;
2. the semantic tokenizer (`w2v_bert_tiny` pretrained on 29 min of speech that flite and
   espeak-ng synthesise into <workdir>/synth_speech, k-means on one layer);
3. the corpus as a tfds dataset (2 voices held out) and its token cache through both;
4. the three stages (`semantic/coarse/fine_cache_tiny`) on the cache;
5. a continuation of a held-out utterance: <workdir>/generated/continuation.wav + .png, and
   <workdir>/pipeline/ for `load_pipeline` and `launch.py --mode=generate`;
6. a detector of the pipeline's output (`detector_tiny`): held-out AUC for codec resynthesis
   and for continuations, <workdir>/detector/.

Afterwards `python launch.py --config=quickstart --mode=eval` writes its evaluation report,
<workdir>/eval/report.html. Each part's config is under `parts`
(`--config.parts.codec.train.steps=100` overrides one).
"""

import ml_collections

from configs import base, detector_tiny, soundstream_tiny, w2v_bert_tiny


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
    # The quickstart's 10-minute budget: w2v_bert_tiny's earlier, 10x shorter recipe (600
    # steps, ~1 min; its tokens beat log-mel k-means on the ABX test but not the untrained
    # network, tests/test_semantic_learning.py), on layer 1. The piano results were measured
    # with it too.
    tokenizer.w2v_bert.mask_prob = 0.065
    tokenizer.optimizer.lr = 2.5e-4
    tokenizer.train.update(steps=600, eval_every=300, checkpoint_every=300)
    tokenizer.semantic.layer = 1
    corpus = base.get_base_config()
    corpus.update(base.corpus())
    corpus.name = "quickstart_corpus"
    corpus.corpus.update(name="quickstart_corpus", eval_speaker_count=2, max_seconds=10.0)
    corpus.tokenize.update(num_shards=2, batch_size=8)
    parts = dict(codec=codec, tokenizer=tokenizer, corpus=corpus)
    for stage in ("semantic", "coarse", "fine"):
        # The cache dir is set by the quickstart once it has written it.
        parts[stage] = base.stage_tiny(stage, {"quickstart": "<workdir>/dataset/tokens"})
    # ~1500 de-duplicated ids of training speech: the semantic stage overfits within ~50
    # steps (held-out loss 3.2 nats at step 25, 4.5 at 100, 5.2 at 200), so it stops early.
    parts["semantic"].train.update(steps=40, eval_every=20, checkpoint_every=20)
    # The detector of this pipeline's output (resynthesis and continuations of the corpus).
    parts["detector"] = detector_tiny.get_config()
    c.parts = ml_collections.ConfigDict(parts)
    c.reconstructions = 4  # held-out clips written to <workdir>/audio/
    # The continuation: the first prompt_seconds of the longest held-out utterance, then
    # `seconds` of new audio.
    c.generate = ml_collections.ConfigDict(dict(prompt_seconds=1.5, seconds=4.0))
    # --mode=eval on the quickstart's workdir: the report of its tiny pipeline.
    c.eval = base.get_base_config().eval
    return c
