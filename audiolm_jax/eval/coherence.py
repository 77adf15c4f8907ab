"""Does a continuation stay in its prompt's key? AudioLM's piano coherence, measured.

    from audiolm_jax.eval.coherence import key_coherence
    report = key_coherence(pipe, [(wav, "E minor"), ...], prompt_seconds=3, seconds=4)
    prompts = held_out_pieces("runs/piano_quickstart", 60)   # a piano quickstart's held-out set

For each prompt (a piece in a known key) the pipeline samples a continuation; its key is
estimated from chroma (`eval.key.estimate_key`, Krumhansl-Kessler profiles via librosa). The
control samples the same prompt's continuation with *shuffled semantic tokens*: the acoustic
stage is conditioned on the semantic continuation sampled for another prompt, in another key.
A pipeline whose semantic tokens carry the music keeps the key more often than its control.
Rates come with 95% Wilson intervals and a one-sided two-proportion z-test; the share of each
continuation's chroma on the key's scale, averaged per prompt, gets a paired one-sided test
over prompts (steadier than the key count: one 4 s continuation's estimated key is noisy, so
`samples` continuations per prompt help both).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import jax
import numpy as np

from audiolm_jax.eval.key import (
    chroma,
    estimate_key,
    profile_in_key_fraction,
    profile_key,
    same_key,
)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (95% for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def one_sided_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """P-value of 'rate 1 > rate 2' by the pooled two-proportion z-test."""
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2)) or 1e-12
    z = (k1 / n1 - k2 / n2) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def _partners(keys: Sequence[str]) -> list[int]:
    """For each prompt, another prompt in a different key (the nearest one after it)."""
    n = len(keys)
    out = []
    for i in range(n):
        j = next(
            (
                (i + d) % n
                for d in range(n // 2, n + n // 2)
                if not same_key(keys[i], keys[(i + d) % n], relative_ok=True)
            ),
            (i + 1) % n,
        )
        out.append(j)
    return out


def paired_one_sided_p(differences: Sequence[float]) -> float:
    """P-value of 'mean difference > 0' by the one-sided paired z-test (normal approximation
    of the t-test: meant for the tens to hundreds of prompts of `key_coherence`)."""
    d = np.asarray(differences, np.float64)
    if d.size < 2:
        return 0.5
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    if se == 0.0:
        return 0.5 if d.mean() == 0 else float(d.mean() < 0)
    return 0.5 * math.erfc(float(d.mean()) / se / math.sqrt(2))


def key_coherence(
    pipe,
    prompts: Sequence[tuple[np.ndarray, str]],
    *,
    sample_rate: int | None = None,
    prompt_seconds: float = 3.0,
    seconds: float = 4.0,
    samples: int = 1,
    seed: int = 0,
    relative_ok: bool = True,
    temperature=None,
    top_k=None,
    top_p=None,
) -> dict:
    """Key-keeping rate of `pipe`'s continuations of `prompts` [(wav, key)] against the
    shuffled-semantic control (module docstring).

    Args:
      samples: continuations per prompt, sampled as one batch (and as many control
        continuations, each on one of the partner prompt's sampled semantic sequences). The
        key test of one continuation is noisy (a 4 s continuation's chroma): more samples per
        prompt give a steadier rate for the same prompts.
      relative_ok: a continuation in the prompt's relative major/minor (the same scale)
        counts as in key.
      temperature, top_k, top_p: passed to `sample` for both the pipeline and the control
        (one value or {stage: value}; default the paper's temperatures).

    Returns {"n" (prompts), "samples", "pipeline": {"in_key" (of n * samples), "rate",
    "ci95", "in_key_fraction"}, "shuffled": {...}, "p_value" (one-sided two-proportion test
    over all continuations, which counts a prompt's samples as independent),
    "in_key_fraction_p" (one-sided paired test over prompts of the mean share of chroma on
    the key's scale, pipeline minus control: prompts are the unit), "prompt_keys_estimated"
    (rate at which the prompts' own audio is estimated in their key, the estimator's
    ceiling)}."""
    from audiolm_jax.sampling.pipeline import sample

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rate = int(sample_rate or pipe.sample_rate)
    head = int(round(prompt_seconds * rate))
    keys = [k for _, k in prompts]
    n = len(prompts)
    out: dict = {"n": n, "samples": samples}
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p, batch_size=samples)
    semantic, audio = [], {"pipeline": [], "shuffled": []}
    for i, (wav, _) in enumerate(prompts):
        a, tok = sample(
            pipe,
            wav[:head],
            prompt_sample_rate=rate,
            seconds=seconds,
            rng=jax.random.key(seed * 100_003 + i),
            return_tokens=True,
            **options,
        )
        audio["pipeline"].append(list(a))
        semantic.append(tok.semantic[:, tok.prompt_semantic :])
    for i, j in enumerate(_partners(keys)):
        a = sample(
            pipe,
            prompts[i][0][:head],
            prompt_sample_rate=rate,
            seconds=seconds,
            rng=jax.random.key(seed * 100_003 + i),
            semantic_ids=semantic[j],
            **options,
        )
        audio["shuffled"].append(list(a))
    sr = pipe.sample_rate
    per_prompt = {}
    for name, waves in audio.items():
        # One chroma per continuation, read for both its key and its share on the key's scale.
        profiles = [[chroma(w, sr).sum(axis=1) for w in ws] for ws in waves]
        hits = [
            same_key(profile_key(pr)[0], k, relative_ok=relative_ok)
            for prs, k in zip(profiles, keys)
            for pr in prs
        ]
        per_prompt[name] = [
            np.mean([profile_in_key_fraction(pr, k) for pr in prs])
            for prs, k in zip(profiles, keys)
        ]
        k = int(sum(hits))
        out[name] = {
            "in_key": k,
            "rate": k / len(hits),
            "ci95": wilson_interval(k, len(hits)),
            "in_key_fraction": float(np.mean(per_prompt[name])),
        }
    total = n * samples
    out["p_value"] = one_sided_p(out["pipeline"]["in_key"], total, out["shuffled"]["in_key"], total)
    out["in_key_fraction_p"] = paired_one_sided_p(
        np.subtract(per_prompt["pipeline"], per_prompt["shuffled"])
    )
    own = [
        same_key(estimate_key(w[:head], rate)[0], k, relative_ok=relative_ok) for w, k in prompts
    ]
    out["prompt_keys_estimated"] = float(np.mean(own))
    return out


def held_out_pieces(workdir: str, count: int = 60) -> list[tuple[np.ndarray, str]]:
    """The first `count` held-out pieces [(wav at the corpus rate, "C# minor")] of a piano
    quickstart `workdir` (its tfds dataset's validation split; the key is in each piece's id,
    e.g. "piece0123_C#_minor"). Reading the dataset imports TensorFlow."""
    from audiolm_jax.data.tfds_builders import load_examples

    data = os.path.join(workdir, "dataset", "tfds")
    if not os.path.isdir(data):
        raise FileNotFoundError(f"{data}: no dataset; run launch.py --config=piano_quickstart")
    out = []
    for ex in load_examples(data, "piano_corpus", "validation"):
        found = re.search(r"piece\d+_([A-G]#?_m(?:aj|in)or)", ex["id"])
        if not found:
            raise ValueError(f"{data}: example id {ex['id']!r} names no key (not a piano corpus)")
        out.append((np.asarray(ex["audio"]), found.group(1).replace("_", " ")))
        if len(out) == count:
            break
    return out
