"""w2v-BERT pretraining learns, and its tokens carry phonetics (slow: about 8 minutes).

Trains `w2v_bert_tiny` on the embedded corpus, then scores semantic tokens with an ABX test on
words synthesised by flite and by espeak-ng (audiolm_jax/semantic/abx.py): same word across
the two synthesisers against different words within one.

Known gap (issue 7 stays open for it): the tiny model's phonetic advantage depends on the seed.
Layer-1 ABX across-synthesiser error (%), 600 steps, jax 0.10.2 / flax 0.12.8 (2026-11-27):
seed 0: 40.2, seed 1: 46.4, seed 2: 55.8, seed 3: 62.3, against 38.8 untrained and 36.4 for
log-mel k-means; an earlier environment gave 32.9 for seed 0. At 1500 steps: 45.3, 34.8, 29.1,
49.7, and the two seeds that fail are the two whose contrastive loss plateaus (2.97 and 2.52
against 2.23 and 2.24): ABX follows how far contrastive learning gets, and some seeds stall.
The losses fall for every seed and are asserted; the ABX table is computed and printed on every
run, and the claim that the trained tokens beat both baselines is not asserted until the recipe
stops stalling (issue 7 is open for it).

Recipes tried on 2026-11-28 (600 steps unless said; across-synthesiser error %, seeds 0-3; none
holds for every seed): data.speed_perturb=0.15 39.5 / 48.2 / 48.5 / 53.1; w2v_bert.mlm_weight=0.3
65.0 / 38.5 / 35.5 / 57.7; temperature=0.2 33.1 / 46.7 / 54.7 / 51.5; mask_prob=0.12 (47% of frames
masked, wav2vec 2.0's share, against 28% at 0.065) 33.9 / 36.8 / 36.4 / 37.6, but at 1200 steps
48.7 / 31.5 / 35.1 / 47.4; mask_prob=0.2 44.3 / 42.8 / 37.0 / 52.0; mask_prob=0.3 35.1 / 34.4 /
45.5 / 49.5; quantizer_init_scale=2 (seeds 0-5) 31.2 / 35.3 / 36.7 / 34.3 / 33.4 / 48.0 with the
contrastive loss at chance (log 21 = 3.04) for all six. Seeds 0 and 3 keep the contrastive loss
at chance (2.89-3.02) under every variant, and the ABX error moves by up to 17 points between
seeds of one recipe, including between runs whose contrastive loss is at chance: at this size the
tokens' phonetic content is not controlled by how far the contrastive task gets.

k-means, 2026-11-28 (same trained models, seeds 0-3): with the Lloyd refinement passes now on
by default, 37.2 / 47.9 / 55.9 / 61.0 (seed 0's untrained model 41.1); fitted on 1 s clips
(`semantic.clip_seconds=1.0`, nearer the words' length) 34.2 / 48.7 / 52.6 / 58.4. Better
centroids do not close the gap between seeds.
"""

import json

import flax.linen as nn
import pytest

from audiolm_jax import dsp, semantic, tasks
from audiolm_jax.config import load_config
from audiolm_jax.data import audio
from audiolm_jax.semantic import abx
from audiolm_jax.semantic.fit import fit_kmeans
from audiolm_jax.train.trainer import evaluate_untrained, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """w2v_bert_tiny trained, its tokenizer and the untrained one's, and the ABX table."""
    tmp_path = tmp_path_factory.mktemp("w2v_bert_learning")
    config = load_config("w2v_bert_tiny")
    config.train.async_checkpoints = False
    model, train_source, eval_source = tasks.build(config)
    result = train(config, str(tmp_path / "w2v"), model, train_source, eval_source)
    before, untrained = evaluate_untrained(config, model, eval_source)
    after = result.eval_metrics

    # Tokens: the trained model's, the untrained model's (same layer, same k-means) and
    # k-means on log-mel frames.
    config.semantic.overwrite = True
    trained_tok, _ = fit_kmeans(
        config, str(tmp_path / "w2v"), model.cfg, result.state.params["model"]
    )
    untrained_tok, _ = fit_kmeans(
        config, str(tmp_path / "untrained"), model.cfg, nn.unbox(untrained.params)["model"]
    )
    items = abx.synthesize_words(abx.WORDS, str(tmp_path / "words"))
    wavs = abx.read_items(items)
    train_wavs = [dsp.read_audio(e["path"], 16000)[0] for e in audio.corpus_entries("train")]
    scores = {
        "trained": abx.tokenizer_abx(trained_tok, items, wavs),
        "untrained": abx.tokenizer_abx(untrained_tok, items, wavs),
        "log-mel k-means": abx.logmel_kmeans_abx(items, wavs, train_wavs, config.semantic.k),
    }
    table = {
        name: {task: round(s[task]["error"], 1) for task in ("across", "within")}
        for name, s in scores.items()
    }
    print("ABX error % (lower is better):", json.dumps(table), "| losses", before, after)
    (tmp_path / "abx.json").write_text(json.dumps(table))
    return dict(before=before, after=after, model=model, table=table, tok=trained_tok)


def test_pretraining_lowers_both_losses_and_keeps_the_quantizer_in_use(trained):
    before, after, model = trained["before"], trained["after"], trained["model"]
    assert after["contrastive_loss"] < before["contrastive_loss"] - 0.2, (before, after)
    assert after["mlm_loss"] < before["mlm_loss"] - 0.3, (before, after)
    assert after["code_perplexity"] >= 0.1 * model.cfg.codebook_size, after
    # The ABX table is computed (and printed) for every run; its rows are finite error rates.
    for row in trained["table"].values():
        assert 0 <= row["across"] <= 100 and 0 <= row["within"] <= 100
    assert semantic.describe(trained["tok"]).startswith("w2v-BERT layer")
