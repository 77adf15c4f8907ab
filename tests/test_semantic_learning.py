"""w2v-BERT pretraining learns, and its tokens carry phonetics (slow: about 2 minutes).

Trains `w2v_bert_tiny` (600 steps on 29 min of synthesised speech, audiolm_jax/data/
synth_speech.py), then scores semantic tokens with an ABX test on words synthesised by flite and
by espeak-ng (audiolm_jax/semantic/abx.py): same word across the two synthesisers against
different words within one. Every row of the table is the mean over three k-means draws
(`config.seed` 0, 1, 2 for the fit): with K = 64 one trained model's error moved from 34.4 to
41.8 % over six k-means seeds, and log-mel k-means' from 37.9 to 44.5 % over four.

Measured 2026-11-28 (jax 0.10.2; across-synthesiser error %, training seed -> trained mean /
untrained mean over k-means seeds 0-2; log-mel k-means on the same 540 training files: 43.8,
44.5, 44.4, 37.9 for k-means seeds 0-3):
- this recipe (lr 2.5e-4, 600 synthesised sentences): seed 0 35.7 / 43.2, seed 1 35.0 / 29.5,
  seed 4 36.4 / 34.8, seed 6 36.4 / 29.3; single k-means draws over seeds 0-7: 28.9-42.2.
- the earlier recipe (lr 2e-3 on the 94 s embedded corpus): 40.2, 46.4, 55.8, 62.3 for seeds
  0-3 (single draws), against 36.4 for log-mel k-means there.
- lr 5e-4 on the embedded corpus, seeds 0-7 (single draws): 34.3, 33.9, 33.0, 29.1, 40.6, 34.8,
  45.7, 40.8.
- A frequency-warped view (VTLP, +-15 %) as the context network's input, targets from the
  clip as it is, on a similar 29 min synthesised corpus (single draws): lr 5e-4, seeds 0-3
  32.4 / 37.8 / 39.0 / 36.8 against 41.2 / 41.0 / 38.1 / 34.1 without; lr 2.5e-4, seed 7 41.6
  against 38.2 without. Not kept.
- 3000 steps at lr 5e-4 on 1200 sentences (contrastive loss 2.03, accuracy 38 %; MLM 2.98):
  seed 6 32.8 / 31.3.
- Other layers of the lr 2.5e-4 models, seeds 6 / 1: layer 2 41.8 / 45.7 (untrained 38.6 /
  37.4), layer 4 46.0 / 58.3 (untrained 44.7 / 43.5): deeper trained layers tell the
  synthesisers apart more, not less.

So the trained tokens beat log-mel k-means (mean 44.2 over k-means seeds 0-2) by 8-9 points
for every seed tried (asserted), but not the untrained network: a random 2-layer conformer
over mean-normalised log-mel scores 29-43 % by its initialisation, and pretraining brings
every seed to about 35 % rather than below the best random ones. That part of issue 7 stays
open; the table is printed on every run.
"""

import json

import flax.linen as nn
import numpy as np
import pytest

from audiolm_jax import dsp, semantic, tasks
from audiolm_jax.config import load_config
from audiolm_jax.data import audio
from audiolm_jax.semantic import abx
from audiolm_jax.semantic.fit import fit_kmeans
from audiolm_jax.train.trainer import evaluate_untrained, train

pytestmark = pytest.mark.slow

KMEANS_DRAWS = (0, 1, 2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """w2v_bert_tiny trained, its tokenizer and the untrained one's, and the ABX table."""
    tmp_path = tmp_path_factory.mktemp("w2v_bert_learning")
    config = load_config("w2v_bert_tiny")
    config.train.async_checkpoints = False
    config.data.path = str(tmp_path / "speech")  # the synthesised corpus, built here
    model, train_source, eval_source = tasks.build(config)
    result = train(config, str(tmp_path / "w2v"), model, train_source, eval_source)
    before, untrained = evaluate_untrained(config, model, eval_source)
    after = result.eval_metrics

    # Tokens: the trained model's, the untrained model's (same layer, same k-means) and
    # k-means on log-mel frames of the same training audio, each over KMEANS_DRAWS fits.
    trained_params = result.state.params["model"]
    untrained_params = nn.unbox(untrained.params)["model"]
    items = abx.synthesize_words(abx.WORDS, str(tmp_path / "words"))
    wavs = abx.read_items(items)
    train_files = audio.split_files(
        dsp.list_audio(config.data.path), "train", int(config.data.eval_every)
    )
    train_wavs = [dsp.read_audio(p, 16000)[0] for p in train_files]
    scores, toks = {"trained": [], "untrained": [], "log-mel k-means": []}, {}
    for draw in KMEANS_DRAWS:
        config.seed = draw
        for name, params in (("trained", trained_params), ("untrained", untrained_params)):
            tok, _ = fit_kmeans(config, str(tmp_path / f"{name}_{draw}"), model.cfg, params)
            scores[name].append(abx.tokenizer_abx(tok, items, wavs))
            toks.setdefault(name, tok)
        scores["log-mel k-means"].append(
            abx.logmel_kmeans_abx(items, wavs, train_wavs, config.semantic.k, seed=draw)
        )
    table = {
        name: {
            task: round(float(np.mean([s[task]["error"] for s in runs])), 1)
            for task in ("across", "within")
        }
        for name, runs in scores.items()
    }
    print("ABX error % (lower is better):", json.dumps(table), "| losses", before, after)
    (tmp_path / "abx.json").write_text(json.dumps(table))
    return dict(before=before, after=after, model=model, table=table, tok=toks["trained"])


def test_pretraining_lowers_both_losses_and_keeps_the_quantizer_in_use(trained):
    before, after, model = trained["before"], trained["after"], trained["model"]
    assert after["contrastive_loss"] < before["contrastive_loss"] - 0.2, (before, after)
    assert after["mlm_loss"] < before["mlm_loss"] - 0.3, (before, after)
    assert after["code_perplexity"] >= 0.1 * model.cfg.codebook_size, after
    assert semantic.describe(trained["tok"]).startswith("w2v-BERT layer")


def test_trained_tokens_carry_phonetics_across_synthesisers(trained):
    """Same word across flite and espeak-ng against different words within one: the trained
    tokens' mean error is below that of k-means on log-mel frames of the same training audio
    (by 8-9 points in the runs of the module docstring). Against the untrained network it is
    printed, not asserted (module docstring: issue 7 stays open for it)."""
    table = trained["table"]
    for row in table.values():
        assert 0 <= row["across"] <= 100 and 0 <= row["within"] <= 100
    assert table["trained"]["across"] < table["log-mel k-means"]["across"] - 2.0, table
    assert table["trained"]["across"] < 45.0, table  # well below chance (50)
