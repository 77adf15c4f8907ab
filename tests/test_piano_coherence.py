"""AudioLM's piano coherence on the tiny piano pipeline: over >= 50 held-out prompts,
continuations stay in the prompt's key more often than continuations whose acoustic stage is
given another prompt's semantic tokens (a prompt in another key). Trains the whole piano
pipeline (`--config=piano_quickstart`, ~10 min on 2 cores), so it is slow."""

import json
import re

import pytest
from conftest import run_launch


@pytest.mark.slow
def test_piano_continuations_keep_the_prompt_key_more_than_shuffled_semantics(tmp_path):
    out = run_launch("--config=piano_quickstart", f"--workdir={tmp_path}", timeout=2400)
    assert out.returncode == 0, out.stderr[-3000:]

    from audiolm_jax.data.tfds_builders import load_examples
    from audiolm_jax.eval.coherence import key_coherence
    from audiolm_jax.sampling.pipeline import load_pipeline

    pipe = load_pipeline(str(tmp_path / "pipeline"))
    assert pipe.fine is None and pipe.layout.coarse_levels == 3
    prompts = []
    for ex in load_examples(str(tmp_path / "dataset" / "tfds"), "piano_corpus", "validation"):
        key = re.search(r"piece\d+_([A-G]#?_m(?:aj|in)or)", ex["id"]).group(1)
        prompts.append((ex["audio"], key.replace("_", " ")))
    assert len(prompts) >= 50
    report = key_coherence(pipe, prompts, prompt_seconds=3.0, seconds=4.0)
    print(json.dumps(report, indent=2))
    (tmp_path / "coherence.json").write_text(json.dumps(report, indent=2))
    p, s = report["pipeline"], report["shuffled"]
    assert p["rate"] > s["rate"], report
    assert report["p_value"] < 0.05, report
