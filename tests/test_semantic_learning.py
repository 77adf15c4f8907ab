"""w2v-BERT pretraining learns, and its tokens carry phonetics (slow: about 8 minutes).

Trains `w2v_bert_tiny` on the embedded corpus, then scores semantic tokens with an ABX test on
words synthesised by flite and by espeak-ng (audiolm_jax/semantic/abx.py): same word across
the two synthesisers against different words within one.
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


def test_pretraining_learns_and_tokens_carry_phonetics(tmp_path):
    config = load_config("w2v_bert_tiny")
    config.train.async_checkpoints = False
    model, train_source, eval_source = tasks.build(config)
    result = train(config, str(tmp_path / "w2v"), model, train_source, eval_source)
    before, untrained = evaluate_untrained(config, model, eval_source)
    after = result.eval_metrics

    # Both losses fall; the quantizer stays in use (perplexity >= 10% of the codebook).
    assert after["contrastive_loss"] < before["contrastive_loss"] - 0.2, (before, after)
    assert after["mlm_loss"] < before["mlm_loss"] - 0.3, (before, after)
    assert after["code_perplexity"] >= 0.1 * model.cfg.codebook_size, after

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
    across = {name: t["across"] for name, t in table.items()}
    assert across["trained"] < across["untrained"], table
    assert across["trained"] < across["log-mel k-means"], table
    assert semantic.describe(trained_tok).startswith("w2v-BERT layer")
