"""AudioLM's piano coherence, end to end: `python launch.py --config=piano_quickstart` trains
the piano variant from nothing (procedural pieces, codec, semantic tokenizer, semantic and
coarse stages), then 60 held-out pieces are continued (3 s prompt, 4 s continuation) and the
continuations' chroma key estimate is compared with the prompt's key, against continuations
whose coarse stage is given the semantic tokens sampled for a prompt in another key
(`audiolm_jax.eval.coherence.key_coherence`). About 25 minutes on 2 cores: the slow step."""

import json

import pytest
from conftest import run_launch

from audiolm_jax.eval.coherence import held_out_pieces, key_coherence
from audiolm_jax.sampling.pipeline import load_pipeline


@pytest.mark.slow
def test_piano_continuations_keep_the_key_more_often_than_with_shuffled_semantic_tokens(
    tmp_path,
):
    out = run_launch("--config=piano_quickstart", f"--workdir={tmp_path}", timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    pipe = load_pipeline(str(tmp_path / "pipeline"))
    prompts = held_out_pieces(str(tmp_path), 60)
    assert len(prompts) == 60
    result = key_coherence(pipe, prompts, prompt_seconds=3.0, seconds=4.0)
    print(json.dumps(result, indent=1))  # the rates, their 95% intervals and the p-value
    ours, shuffled = result["pipeline"], result["shuffled"]
    report = (
        f"in key: pipeline {ours['in_key']}/60 (95% CI {ours['ci95'][0]:.2f}-"
        f"{ours['ci95'][1]:.2f}), shuffled semantic tokens {shuffled['in_key']}/60 "
        f"({shuffled['ci95'][0]:.2f}-{shuffled['ci95'][1]:.2f}), one-sided p "
        f"{result['p_value']:.3g}"
    )
    print(report)
    assert ours["in_key"] > shuffled["in_key"] and result["p_value"] < 0.05, report
