"""The eval report's numbers: metrics per group of clips (speaker, accent, language, ...).

    from audiolm_jax.eval.report import group_metrics

    rows = [{"speaker": "slt", "accent": "en-us", "wer": 0.05, "si_sdr": 9.1}, ...]
    g = group_metrics(rows, by="accent")
    g["groups"]["en-us"]    # {"rows": 12, "mean": {"wer": .., ...}, "count": {"wer": 12, ...}}
    g["metrics"]["wer"]     # {"direction": "lower", "best": "en-us", "worst": "en-029",
                            #  "best_value": .., "worst_value": .., "spread": ..}

Whether higher or lower is better comes from `metrics.DIRECTIONS`, extended or overridden by
`directions`. Results are plain dicts of str, int and float, ready for JSON.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

from audiolm_jax.eval.metrics import DIRECTIONS


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)  # NumPy scalars count


def group_metrics(
    rows: Sequence[Mapping],
    by: str,
    metrics: Sequence[str] | None = None,
    directions: Mapping[str, str] | None = None,
) -> dict:
    """Means of each metric per group of `rows`, and per metric the best and worst group.

    rows: one dict per clip holding metric values (numbers) and labels (e.g. "speaker").
    by: the label to group on; every row must have it (values are turned into str).
    metrics: the metric names to report; None takes every key of the rows with a known
        direction. A row may lack a metric (e.g. no transcript, so no "wer"): its group's mean
        is over the rows that have it, and `count` says how many.
    directions: {metric: "higher" | "lower"} for metrics not in `metrics.DIRECTIONS`.

    Returns {"by", "groups": {group: {"rows", "mean", "count"}}, "metrics":
    {metric: {"direction", "best", "worst", "best_value", "worst_value", "spread"}}}, groups in
    sorted order. best/worst are the groups whose means are best/worst by the metric's direction
    (ties go to the first group in sorted order); spread = |best_value - worst_value|, in the
    metric's units, 0 with one group. ValueError for an empty `rows`, a row without `by`, a
    metric without a direction, or a metric value that is not a finite number.
    """
    dirs = {**DIRECTIONS, **(directions or {})}
    for m, d in dirs.items():
        if d not in ("higher", "lower"):
            raise ValueError(f"direction of {m!r} must be 'higher' or 'lower', got {d!r}")
    if not rows:
        raise ValueError("rows is empty: nothing to group")
    for i, row in enumerate(rows):
        if by not in row:
            raise ValueError(f"rows[{i}] has no {by!r} label (keys: {sorted(row)})")
    if metrics is None:
        metrics = sorted({k for row in rows for k in row if k != by and k in dirs})
    else:
        metrics = list(metrics)
        unknown = [m for m in metrics if m not in dirs]
        if unknown:
            raise ValueError(
                f"no direction known for metrics {unknown}: pass directions={{name: 'higher' "
                f"or 'lower'}} (known: {sorted(dirs)})"
            )
    if by in metrics:
        raise ValueError(f"{by!r} is both the grouping label and a metric")

    values: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, int] = {}
    for i, row in enumerate(rows):
        group = str(row[by])
        sizes[group] = sizes.get(group, 0) + 1
        per = values.setdefault(group, {m: [] for m in metrics})
        for m in metrics:
            if m not in row:
                continue
            v = row[m]
            if not _is_number(v) or not math.isfinite(float(v)):
                raise ValueError(f"rows[{i}][{m!r}] must be a finite number, got {v!r}")
            per[m].append(float(v))

    groups = {}
    for group in sorted(values):
        per = values[group]
        groups[group] = {
            "rows": sizes[group],
            "mean": {m: sum(v) / len(v) for m, v in per.items() if v},
            "count": {m: len(v) for m, v in per.items()},
        }

    summary = {}
    for m in metrics:
        means = [(g, s["mean"][m]) for g, s in groups.items() if m in s["mean"]]
        if not means:
            continue
        sign = 1.0 if dirs[m] == "higher" else -1.0
        best = max(means, key=lambda gv: sign * gv[1])  # max/min keep the first of ties
        worst = min(means, key=lambda gv: sign * gv[1])
        summary[m] = {
            "direction": dirs[m],
            "best": best[0],
            "worst": worst[0],
            "best_value": best[1],
            "worst_value": worst[1],
            "spread": abs(best[1] - worst[1]),
        }
    return {"by": by, "groups": groups, "metrics": summary}
