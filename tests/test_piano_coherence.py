"""AudioLM's piano coherence (arXiv:2209.03143 sec. 5), trained from nothing on a CPU: the tiny
piano pipeline's continuations of held-out pieces stay in their prompt's key more often than
continuations whose acoustic stage is given another piece's semantic tokens.

The slow test runs `launch.py --config=piano_coherence` (procedural pieces, codec, w2v-BERT +
k-means, semantic and coarse stages, all from scratch, ~23 min; then 240 held-out prompts of
3 s with 4 s continuations, 3 of each) and asserts the quickstart's coherence step: more
continuations in key than the shuffled control's, and more of their chroma on the key's
scale at paired p < 0.01 over pieces. The counts and 95% intervals it reports are in
BENCHMARKS.md ("Piano key coherence"). The statistics themselves are checked quickly below.
"""

import json
import math

import pytest
from conftest import run_launch

from audiolm_jax.eval.coherence import (
    _partners,
    one_sided_p,
    paired_one_sided_p,
    wilson_interval,
)


def test_wilson_interval_known_values():
    # 5 of 10: the textbook 95% Wilson interval 0.237-0.763; 0 of 10: 0-0.278.
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_one_sided_p_of_two_proportions():
    # 10/20 against 5/20: pooled 0.375, z = 0.25 / sqrt(0.375 * 0.625 * 0.1) = 1.633.
    z = 0.25 / math.sqrt(0.375 * 0.625 * 0.1)
    assert one_sided_p(10, 20, 5, 20) == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert one_sided_p(10, 20, 5, 20) == pytest.approx(0.0512, abs=1e-3)
    assert one_sided_p(7, 20, 7, 20) == pytest.approx(0.5)
    assert one_sided_p(5, 20, 10, 20) > 0.9


def test_paired_p_over_prompts():
    # Differences with mean 0.02 and sample sd 0.1005 over 100 prompts: z = 1.990, p = 0.0233.
    d = [0.12, -0.08] * 50
    assert paired_one_sided_p(d) == pytest.approx(0.0233, abs=2e-4)
    assert paired_one_sided_p([-x for x in d]) == pytest.approx(1 - 0.0233, abs=2e-4)
    assert paired_one_sided_p([0.1, -0.1]) == pytest.approx(0.5)
    assert paired_one_sided_p([0.05]) == 0.5


def test_control_partners_are_in_another_key():
    keys = ["C major", "A minor", "G major", "E minor", "D major", "C major"]
    partners = _partners(keys)
    relative = {"C major": "A minor", "G major": "E minor"}
    for i, j in enumerate(partners):
        assert j != i
        a, b = keys[i], keys[j]
        assert a != b and relative.get(a) != b and relative.get(b) != a, (a, b)


@pytest.mark.slow
def test_piano_continuations_keep_the_key_more_often_than_shuffled_semantic_tokens(tmp_path):
    out = run_launch("--config=piano_coherence", f"--workdir={tmp_path}", timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "quickstart.json").read_text())["coherence"]
    p, c = r["pipeline"], r["shuffled"]
    total = r["n"] * r["samples"]
    print(
        f"in key: pipeline {p['in_key']}/{total} (95% CI {p['ci95']}), shuffled semantic "
        f"tokens {c['in_key']}/{total} ({c['ci95']}), one-sided p {r['p_value']:.4f}; "
        f"chroma on the key's scale {p['in_key_fraction']:.4f} against "
        f"{c['in_key_fraction']:.4f}, paired p {r['in_key_fraction_p']:.2g}"
    )
    assert r["n"] >= 50
    # More continuations in the prompt's key than with another piece's semantic tokens, and
    # more of their chroma on its scale, significantly so with the piece as the unit.
    assert p["in_key"] > c["in_key"], r
    assert p["in_key_fraction"] > c["in_key_fraction"] and r["in_key_fraction_p"] < 0.01, r
