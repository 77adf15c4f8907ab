"""The eval report as one self-contained HTML page: tables, inline SVG plots, spectrogram PNGs.

    from audiolm_jax.eval.html import write_html

    report = json.load(open("runs/quickstart/eval/report.json"))
    write_html(report, "runs/quickstart/eval")     # -> "runs/quickstart/eval/report.html"

`report` is the dict `launch.py --mode=eval` writes (every section optional; an absent one
reads "not measured"):

    {"title", "workdir", "created", "device", "notes": [str, ...],
     "sections": {
        "codec" / "continuation": {"description", "rows": [{clip labels and metrics}, ...],
                                   "groups": {name: group_metrics(rows, by=name), ...}},
        "abx": {"error_rate", "groups"?}, "lexical": {"accuracy", "pairs", "chance"},
        "validation_loss": {stage: {"loss", "per_level": {level: loss}}},
        "curves": {stage: {series: [[step, value], ...]}},
        "spectrograms": [{"title", "png": path relative to the page}]}}

Grouped sections get a table per grouping (one row per group, a column per metric with its
direction arrow, best and worst group highlighted) and one bar chart per metric (one bar per
group; dashed lines at the best and worst means and the spread between them written beside).
ABX error and lexical accuracy are numbers plus a bar against chance; validation losses a
table and a bar chart per stage (overall and per level); curves a line chart per stage (a
line per series, legend, log y axis when the values span 10x or more). Sections this module
does not know are shown as tables of their values.

Plots are inline SVG made here (no JavaScript, no plotting library, no network). Every plot
has a stable id (`bars-<section>-<grouping>-<metric>`, `bars-validation_loss-<stage>`,
`curves-<stage>`, `meter-abx`, `meter-lexical`) and class (`plot bars`, `plot lines`,
`plot meter`); bars take `BAR_COLOURS` by group index, lines `LINE_COLOURS` by series index,
single bars `METER_COLOUR`. All text is escaped; values that are None, NaN or not numbers read
"n/a" and get no bar or point. A section that fails to render shows the error in its place
(class `render-error`) and the rest of the page is still written.
"""

from __future__ import annotations

import html
import json
import logging
import math
import numbers
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger("audiolm_jax")

# Solid fills, told apart in a screenshot: bars by group index (Tableau 10), lines by series.
BAR_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#edc948",
    "#76b7b2",
    "#ff9da7",
    "#9c755f",
    "#e15759",
    "#bab0ac",
)
LINE_COLOURS = ("#1f3f99", "#d6204e", "#0f8a3c", "#7b2cbf", "#c77c02", "#00838f")
METER_COLOUR = "#3a6ea5"

# (key in report["sections"], heading), in page order.
SECTIONS = (
    ("codec", "Codec resynthesis"),
    ("continuation", "Continuation"),
    ("abx", "ABX discrimination of semantic tokens"),
    ("lexical", "Lexical judgements (sWUGGY / sBLIMP style)"),
    ("validation_loss", "Validation loss"),
    ("detector", "Detector of generated speech"),
    ("curves", "Training curves"),
    ("spectrograms", "Spectrograms"),
)

_ARROWS = {"higher": "\u2191", "lower": "\u2193"}
_MARK_COLOURS = {"best": "#1b7a2e", "worst": "#b3261e"}

_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: #222; background: #fff;
       margin: 0 auto; padding: 16px 24px; max-width: 1180px; font-size: 14px; }
h1 { font-size: 22px; margin: 4px 0 8px; }
h2 { font-size: 18px; margin: 26px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta span { margin-right: 18px; }
.meta b { font-weight: 600; }
nav a { margin-right: 12px; }
.not-measured { color: #888; font-style: italic; }
.render-error { color: #a00; border: 1px solid #a00; padding: 6px; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
td.best { background: #cdeccf; font-weight: 600; }
td.worst { background: #f8d3cf; font-weight: 600; }
td.na { color: #999; }
tfoot th, tfoot td { font-style: italic; background: #fafafa; }
small { color: #666; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
svg.plot { background: #fff; border: 1px solid #ddd; max-width: 100%; height: auto; }
svg.plot text { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; fill: #222; }
.big { font-size: 20px; font-weight: 600; margin-right: 10px; }
figure { margin: 8px 0 14px; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 13px; }
details { margin: 6px 0; }
pre { background: #f6f6f6; padding: 6px; overflow-x: auto; }
"""


# --- values and text ------------------------------------------------------------------------------


def _num(v) -> float | None:
    """v as a finite float, or None for None, NaN, infinities, booleans and non-numbers."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt(v) -> str:
    """A value for reading: 4 significant digits, "n/a" where it is not a finite number."""
    x = _num(v)
    if x is None:
        return "n/a" if v is None or isinstance(v, numbers.Number) else str(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.4g}"


def _tick(v: float) -> str:
    v = round(v, 10) + 0.0  # ticks are multiples of a step: drop float noise and -0
    return f"{v:.6g}"


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


class _Ids:
    """Stable, unique element ids from readable parts ("bars", "codec", "accent", "wer")."""

    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, *parts) -> str:
        base = "-".join(re.sub(r"[^A-Za-z0-9_]+", "_", str(p)).strip("_") or "x" for p in parts)
        name, n = base, 2
        while name in self.used:
            name, n = f"{base}-{n}", n + 1
        self.used.add(name)
        return name


# --- axes -----------------------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k apart) covering [lo, hi]; first and last are the
    axis ends."""
    if not hi > lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    start, end = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [i * step for i in range(start, end + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis over [lo, hi] (both > 0): powers of ten, or 1-2-5 steps
    where fewer than three powers of ten fall inside."""
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    inside = lambda t: lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)
    ticks = [10.0**e for e in range(e0, e1 + 1) if inside(10.0**e)]
    if len(ticks) < 3:
        ticks = [m * 10.0**e for e in range(e0, e1 + 1) for m in (1, 2, 5) if inside(m * 10.0**e)]
    if len(ticks) < 2:
        ticks = [lo, hi]
    return ticks


class _Scale:
    """Linear or log10 map from data values to pixel coordinates."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        self.log = log
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        v = math.log10(v) if self.log else v
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _text(x, y, s, *, anchor="middle", size=11, cls=None, extra="") -> str:
    c = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{c}{extra}>'
        f"{_esc(s)}</text>"
    )


def _y_axis(ticks, ys: _Scale, x0: float, x1: float) -> list[str]:
    out = []
    for t in ticks:
        y = ys(t)
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(_text(x0 - 5, y + 4, _tick(t), anchor="end", size=10, cls="tick"))
    out.append(f'<line x1="{x0}" x2="{x0}" y1="{ys.p0}" y2="{ys.p1}" stroke="#444"/>')
    return out


# --- plots ----------------------------------------------------------------------------------------


def _bar_chart(
    svg_id: str,
    title: str,
    bars: Sequence[tuple[str, object]],
    *,
    best: str | None = None,
    worst: str | None = None,
    spread: object = None,
) -> str:
    """One bar per (label, value), coloured by index; "n/a" where the value is not a number.
    With `best`/`worst` labels: dashed lines at their values and the spread written beside."""
    n = max(len(bars), 1)
    slot = max(30.0, min(90.0, 560.0 / n))
    rotate = slot < 64 or any(len(str(b[0])) * 6.5 > slot for b in bars)
    ml, mr, mt, plot_h = 62, 96, 38, 170
    marked = best is not None and best != worst
    label_y = plot_h + mt + (28 if marked else 15)  # best/worst marks go between axis and labels
    longest = min(max((len(str(b[0])) for b in bars), default=1), 22)
    mb = label_y - plot_h - mt + (int(longest * 4.2) + 8 if rotate else 8)
    width = int(max(ml + n * slot + mr, 16 + 7 * len(title)))
    height = int(mt + plot_h + mb)
    values = [_num(v) for _, v in bars]
    finite = [v for v in values if v is not None]
    ticks = _nice_ticks(min([0.0, *finite]), max([0.0, *finite]))
    ys = _Scale(ticks[0], ticks[-1], mt + plot_h, mt)
    x_end = ml + n * slot
    out = [
        f'<svg class="plot bars" id="{_esc(svg_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        _text(8, 18, title, anchor="start", size=13, cls="title"),
        *_y_axis(ticks, ys, ml, x_end),
    ]
    zero = ys(0.0)
    # The spread first, under the bars: dashed lines at the best and worst means, a bracket.
    by_label = dict(zip((str(b[0]) for b in bars), values))
    vb, vw = by_label.get(str(best)), by_label.get(str(worst))
    if vb is not None and vw is not None and best != worst:
        yb, yw = ys(vb), ys(vw)
        for y in (yb, yw):
            out.append(
                f'<line class="spread-line" x1="{ml}" x2="{x_end + 14}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="#333" stroke-dasharray="4 3"/>'
            )
        bx = x_end + 14
        out.append(
            f'<line class="spread-bracket" x1="{bx}" x2="{bx}" y1="{yb:.1f}" y2="{yw:.1f}" '
            f'stroke="#222" stroke-width="2"/>'
        )
        mid = (yb + yw) / 2
        out.append(_text(bx + 5, mid - 2, "spread", anchor="start", size=10))
        out.append(
            _text(
                bx + 5,
                mid + 11,
                f"\u0394 {_fmt(spread)}",
                anchor="start",
                size=11,
                cls="spread",
                extra=' font-weight="bold"',
            )
        )
    for i, ((label, raw), v) in enumerate(zip(bars, values)):
        cx = ml + (i + 0.5) * slot
        if v is None:
            out.append(_text(cx, zero - 4, "n/a", size=11, cls="na"))
        else:
            top, bottom = min(ys(v), zero), max(ys(v), zero)
            h = max(bottom - top, 1.0)
            colour = BAR_COLOURS[i % len(BAR_COLOURS)]
            out.append(
                f'<rect class="bar" x="{cx - slot * 0.35:.1f}" y="{top:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{colour}" '
                f'data-group="{_esc(label)}" data-value="{v!r}"><title>{_esc(label)}: '
                f"{_esc(_fmt(raw))}</title></rect>"
            )
            if slot >= 40:  # narrower bars: the values would overlap (the table has them)
                ty = top - 4  # a negative bar's value sits above the zero line
                out.append(_text(cx, ty, _fmt(raw), size=10, cls="value"))
        ly = label_y
        if rotate:
            short = str(label) if len(str(label)) <= 22 else str(label)[:21] + "\u2026"
            rot = f' transform="rotate(-40 {cx + 3:.1f} {ly:.1f})"'
            out.append(_text(cx + 3, ly, short, anchor="end", size=10, cls="label", extra=rot))
        else:
            out.append(_text(cx, ly, label, size=11, cls="label"))
        mark = "best" if label == best else "worst" if label == worst else None
        if mark and marked:
            style = f' style="fill:{_MARK_COLOURS[mark]};font-weight:bold"'
            out.append(_text(cx, mt + plot_h + 13, mark, size=10, cls=f"{mark}-mark", extra=style))
    out.append(f'<line x1="{ml}" x2="{x_end}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#444"/>')
    out.append("</svg>")
    return "".join(out)


def _meter(svg_id: str, label: str, value, *, chance=None, colour: str = METER_COLOUR) -> str:
    """A horizontal bar of a fraction in [0, 1] on a 0-100 % scale, a dashed line at chance."""
    width, height, ml, mr = 460, 62, 10, 60
    xs = _Scale(0.0, 1.0, ml, width - mr)
    v = _num(value)
    out = [
        f'<svg class="plot meter" id="{_esc(svg_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        _text(ml, 14, label, anchor="start", size=12, cls="title"),
        f'<rect x="{ml}" y="20" width="{xs(1) - ml:.1f}" height="18" fill="#f0f0f0" '
        'stroke="#bbb"/>',
    ]
    if v is None:
        out.append(_text(ml + 6, 33, "n/a", anchor="start", size=11, cls="na"))
    else:
        w = xs(min(max(v, 0.0), 1.0)) - ml
        out.append(
            f'<rect class="bar" x="{ml}" y="20" width="{max(w, 1.0):.1f}" height="18" '
            f'fill="{colour}" data-value="{v!r}"/>'
        )
        out.append(_text(xs(1) + 6, 33, f"{100 * v:.1f}%", anchor="start", size=12, cls="value"))
    c = _num(chance)
    if c is not None and 0 <= c <= 1:
        x = xs(c)
        out.append(
            f'<line class="chance" x1="{x:.1f}" x2="{x:.1f}" y1="16" y2="42" stroke="#222" '
            'stroke-width="2" stroke-dasharray="3 2"/>'
        )
        out.append(_text(x, 55, f"chance {100 * c:.0f}%", size=10))
    out.append("</svg>")
    return "".join(out)


def _line_chart(svg_id: str, title: str, series: Sequence[tuple[str, object]]) -> str:
    """A line per (name, [[step, value], ...]) series, coloured by index, with a legend. Points
    whose step or value is not finite break the line. The y axis is log10 when every value is
    positive and the largest is 10x the smallest or more."""
    width, height, ml, mr, mt, mb = 560, 300, 60, 130, 34, 44
    clean = []
    for name, points in series:
        pts = []
        for p in points if hasattr(points, "__iter__") and not isinstance(points, str) else []:
            try:
                s, v = _num(p[0]), _num(p[1])
            except (TypeError, IndexError, KeyError):
                s = v = None
            pts.append((s, v) if s is not None and v is not None else None)
        # Sort by step, keeping breaks where they were (a None splits the line).
        runs, cur = [], []
        for p in pts:
            if p is None:
                runs.append(cur)
                cur = []
            else:
                cur.append(p)
        runs.append(cur)
        clean.append((str(name), [sorted(r) for r in runs if r]))
    xs_all = [s for _, runs in clean for r in runs for s, _ in r]
    vs_all = [v for _, runs in clean for r in runs for _, v in r]
    out = [
        f'<svg class="plot lines" id="{_esc(svg_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
    ]
    if not vs_all:
        out += [_text(8, 18, title, anchor="start", size=13, cls="title")]
        out += [_text(width / 2, height / 2, "no finite values", size=13, cls="na"), "</svg>"]
        return "".join(out)
    log_y = min(vs_all) > 0 and max(vs_all) >= 10 * min(vs_all)
    x_ticks = _nice_ticks(min(xs_all), max(xs_all))
    xsc = _Scale(x_ticks[0], x_ticks[-1], ml, width - mr)
    if log_y:
        lo, hi = min(vs_all) / 1.15, max(vs_all) * 1.15
        y_ticks = _log_ticks(lo, hi)
        ysc = _Scale(lo, hi, height - mb, mt, log=True)
    else:
        y_ticks = _nice_ticks(min(vs_all), max(vs_all))
        ysc = _Scale(y_ticks[0], y_ticks[-1], height - mb, mt)
    scale = " (log scale)" if log_y else ""
    out.append(_text(8, 18, f"{title}{scale}", anchor="start", size=13, cls="title"))
    out += _y_axis(y_ticks, ysc, ml, width - mr)
    y0 = height - mb
    out.append(f'<line x1="{ml}" x2="{width - mr}" y1="{y0}" y2="{y0}" stroke="#444"/>')
    for t in x_ticks:
        x = xsc(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y0 + 4}" stroke="#444"/>')
        out.append(_text(x, y0 + 16, _tick(t), size=10, cls="tick"))
    out.append(_text((ml + width - mr) / 2, height - 6, "step", size=11))
    for i, (name, runs) in enumerate(clean):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        d = " ".join(
            ("M" if j == 0 else "L") + f"{xsc(s):.1f},{ysc(v):.1f}"
            for r in runs
            for j, (s, v) in enumerate(r)
        )
        if d:
            out.append(
                f'<path class="line" data-series="{_esc(name)}" d="{d}" fill="none" '
                f'stroke="{colour}" stroke-width="3" stroke-linejoin="round" '
                'stroke-linecap="round"/>'
            )
        count = sum(len(r) for r in runs)
        if count <= 40:  # sparse series (eval every N steps) get a marker per point
            for r in runs:
                for s, v in r:
                    out.append(
                        f'<circle class="point" cx="{xsc(s):.1f}" cy="{ysc(v):.1f}" r="3.5" '
                        f'fill="{colour}"/>'
                    )
        ly = mt + 8 + 20 * i
        shown = name if len(name) <= 14 else name[:13] + "\u2026"
        lx = width - mr + 14
        out.append(
            f'<g class="legend-item"><line x1="{lx}" x2="{lx + 24}" y1="{ly}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="4"/>'
            + _text(lx + 30, ly + 4, shown if count else f"{shown} (none)", anchor="start")
            + f"<title>{_esc(name)}</title></g>"
        )
    out.append("</svg>")
    return "".join(out)


# --- sections -------------------------------------------------------------------------------------


def _kv_table(d: Mapping, skip: Sequence[str] = ()) -> str:
    """Scalar entries of `d` as a two-column table; nested ones as JSON."""
    rows = []
    for k, v in d.items():
        if k in skip:
            continue
        if isinstance(v, (Mapping, list, tuple)):
            text = json.dumps(v, default=str, allow_nan=True)
            if len(text) > 400:
                text = text[:400] + " \u2026"
            cell = f"<code>{_esc(text)}</code>"
        else:
            cell = _esc(_fmt(v))
        rows.append(f"<tr><th>{_esc(k)}</th><td>{cell}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>' if rows else ""


def _group_metric_names(g: Mapping) -> list[str]:
    names = list(g.get("metrics", {}) or {})
    for stats in (g.get("groups", {}) or {}).values():
        for m in (stats or {}).get("mean", {}) or {}:
            if m not in names:
                names.append(m)
    return names


def _grouping(section: str, name: str, g: Mapping, ids: _Ids) -> str:
    """A table (one row per group) and one bar chart per metric of a group_metrics result."""
    by = str(g.get("by", name))
    groups = g.get("groups", {}) or {}
    summary = g.get("metrics", {}) or {}
    metrics = _group_metric_names(g)
    out = [f"<h3>by {_esc(by)}</h3>"]
    if not groups:
        return out[0] + '<p class="not-measured">no groups</p>'
    head = [f"<th>{_esc(by)}</th>", "<th>clips</th>"]
    for m in metrics:
        d = (summary.get(m) or {}).get("direction")
        arrow = _ARROWS.get(d, "")
        tip = f' title="{d} is better"' if d else ""
        head.append(f'<th class="metric"{tip}>{_esc(m)} {arrow}</th>')
    body = []
    for gname, stats in groups.items():
        stats = stats or {}
        mean, count = stats.get("mean", {}) or {}, stats.get("count", {}) or {}
        cells = [f"<td>{_esc(gname)}</td>", f"<td>{_esc(_fmt(stats.get('rows')))}</td>"]
        for m in metrics:
            s = summary.get(m) or {}
            cls = []
            if s.get("best") != s.get("worst"):
                if str(gname) == str(s.get("best")):
                    cls.append("best")
                elif str(gname) == str(s.get("worst")):
                    cls.append("worst")
            v = mean.get(m)
            if _num(v) is None:
                cls.append("na")
            text = _esc(_fmt(v))
            n, rows = _num(count.get(m)), _num(stats.get("rows"))
            if n is not None and rows is not None and n != rows:
                text += f" <small>(n={int(n)})</small>"
            c = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{c}>{text}</td>")
        body.append(f'<tr class="group" data-group="{_esc(gname)}">{"".join(cells)}</tr>')
    foot = ["<th>spread</th>", "<td></td>"]
    for m in metrics:
        s = summary.get(m) or {}
        tip = ""
        if s:
            tip = f' title="best {_esc(s.get("best"))}, worst {_esc(s.get("worst"))}"'
        foot.append(f'<td class="spread"{tip}>{_esc(_fmt(s.get("spread")) if s else "")}</td>')
    table_id = ids("table", section, by)
    out.append(
        f'<table class="groups" id="{table_id}"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody><tfoot><tr>{''.join(foot)}</tr></tfoot></table>"
    )
    charts = []
    for m in metrics:
        s = summary.get(m) or {}
        d = s.get("direction")
        title = f"{m} {_ARROWS.get(d, '')} by {by}" + (f" ({d} is better)" if d else "")
        bars = [(str(k), (v or {}).get("mean", {}).get(m)) for k, v in groups.items()]
        charts.append(
            _bar_chart(
                ids("bars", section, by, m),
                title,
                bars,
                best=None if s.get("best") is None else str(s.get("best")),
                worst=None if s.get("worst") is None else str(s.get("worst")),
                spread=s.get("spread"),
            )
        )
    out.append(f'<div class="plots">{"".join(charts)}</div>')
    return "".join(out)


def _rows_table(rows: Sequence[Mapping]) -> str:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{_esc(_fmt(r.get(c)) if c in r else '')}</td>" for c in cols)
        + "</tr>"
        for r in rows
    )
    return (
        f"<details><summary>{len(rows)} clips</summary>"
        f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        "</details>"
    )


def _grouped_section(key: str, sec: Mapping, ids: _Ids) -> str:
    out = []
    if sec.get("description"):
        out.append(f'<p class="description">{_esc(sec["description"])}</p>')
    groups = sec.get("groups") or {}
    for name, g in groups.items():
        if isinstance(g, Mapping):
            out.append(_grouping(key, str(name), g, ids))
    rows = sec.get("rows")
    if isinstance(rows, Sequence) and rows and all(isinstance(r, Mapping) for r in rows):
        out.append(_rows_table(rows))
    rest = _kv_table(sec, skip=("description", "groups", "rows"))
    if rest:
        out.append(rest)
    return "".join(out)


def _abx(sec: Mapping, ids: _Ids) -> str:
    v = sec.get("error_rate")
    chance = sec.get("chance", 0.5)
    out = [
        f'<p><span class="big">error rate {_esc(_fmt(v))}</span>'
        f"<small>(lower is better; chance {_esc(_fmt(chance))})</small></p>",
        _meter(ids("meter", "abx"), "ABX error rate \u2193", v, chance=chance),
    ]
    out.append(_grouped_section("abx", {k: x for k, x in sec.items() if k != "error_rate"}, ids))
    return "".join(out)


def _lexical(sec: Mapping, ids: _Ids) -> str:
    def one(name: str | None, d: Mapping) -> str:
        acc, chance = d.get("accuracy"), d.get("chance")
        label = f"{name}: accuracy \u2191" if name else "accuracy \u2191"
        extra = ", ".join(f"{k} {_fmt(d[k])}" for k in ("pairs", "chance") if k in d)
        return (
            f'<p><span class="big">{_esc(label[:-2])} {_esc(_fmt(acc))}</span>'
            f"<small>{_esc(extra)}</small></p>"
            + _meter(ids("meter", "lexical", *([name] if name else [])), label, acc, chance=chance)
            + _kv_table(d, skip=("accuracy", "pairs", "chance"))
        )

    if "accuracy" in sec:
        return one(None, sec)
    parts = [one(str(k), d) for k, d in sec.items() if isinstance(d, Mapping)]
    return "".join(parts) or _kv_table(sec)


def _validation_loss(sec: Mapping, ids: _Ids) -> str:
    stages = {k: v for k, v in sec.items() if isinstance(v, Mapping)}
    levels: list[str] = []
    for s in stages.values():
        for lv in s.get("per_level", {}) or {}:
            if lv not in levels:
                levels.append(lv)
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["stage", "loss \u2193", *levels])
    body = []
    for name, s in stages.items():
        per = s.get("per_level", {}) or {}
        cells = [f"<td>{_esc(name)}</td>", f"<td>{_esc(_fmt(s.get('loss')))}</td>"]
        cells += [f"<td>{_esc(_fmt(per[lv]) if lv in per else '')}</td>" for lv in levels]
        body.append(f"<tr>{''.join(cells)}</tr>")
    out = [
        f'<table class="validation" id="{ids("table", "validation_loss")}"><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
    ]
    charts = []
    for name, s in stages.items():
        per = s.get("per_level", {}) or {}
        bars = [("all levels", s.get("loss")), *((str(k), v) for k, v in per.items())]
        charts.append(
            _bar_chart(
                ids("bars", "validation_loss", name), f"{name}: validation loss \u2193", bars
            )
        )
    out.append(f'<div class="plots">{"".join(charts)}</div>')
    other = {k: v for k, v in sec.items() if k not in stages}
    out.append(_kv_table(other))
    return "".join(out)


def _detector(sec: Mapping, ids: _Ids) -> str:
    """Per kind of generated audio (and the real-vs-real control): AUC and accuracy against
    chance, precision / recall / counts, and a calibration chart (mean predicted probability
    per bin against the fraction of generated clips in it; the diagonal is perfect)."""
    out = []
    for kind, f in sec.items():
        if not isinstance(f, Mapping) or "auc" not in f:
            continue
        out.append(f"<h3>{_esc(kind)}</h3>")
        out.append(_meter(ids("meter", "detector", kind, "auc"), f"{kind}: AUC \u2191",
                          f.get("auc"), chance=0.5))  # fmt: skip
        out.append(_meter(ids("meter", "detector", kind, "accuracy"),
                          f"{kind}: accuracy \u2191", f.get("accuracy"), chance=0.5))  # fmt: skip
        out.append(_kv_table(f, skip=("auc", "accuracy", "calibration")))
        cal = [[b.get("mean_predicted"), b.get("fraction_generated")]
               for b in f.get("calibration", []) or []]  # fmt: skip
        if cal:
            out.append(
                _line_chart(
                    ids("calibration", kind),
                    f"{kind}: calibration (x predicted, y observed)",
                    [("observed", cal), ("ideal", [[0.0, 0.0], [1.0, 1.0]])],
                )
            )
    other = {k: v for k, v in sec.items() if not isinstance(v, Mapping)}
    out.append(_kv_table(other))
    return "".join(out)


def _curves(sec: Mapping, ids: _Ids) -> str:
    charts = []
    for stage, series in sec.items():
        if isinstance(series, Mapping):
            charts.append(_line_chart(ids("curves", stage), f"{stage}: loss", list(series.items())))
    return f'<div class="plots">{"".join(charts)}</div>'


def _spectrograms(sec, ids: _Ids, base_dir: str | None) -> str:
    items = sec if isinstance(sec, Sequence) and not isinstance(sec, str) else []
    out = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        title, png = item.get("title", ""), str(item.get("png", ""))
        if base_dir and os.path.isabs(png):
            png = os.path.relpath(png, base_dir)
        src = urllib.parse.quote(png.replace(os.sep, "/"), safe="/._-~")
        missing = ""
        if base_dir and not os.path.exists(os.path.join(base_dir, png)):
            missing = ' <span class="missing-file">(file not found)</span>'
        out.append(
            f'<figure class="spectrogram" id="{ids("spec", title or png)}">'
            f'<img src="{_esc(src)}" alt="{_esc(title)}"/>'
            f"<figcaption>{_esc(title)}{missing}</figcaption></figure>"
        )
    return f'<div class="plots">{"".join(out)}</div>' if out else ""


def _safe(name: str, render: Callable[[], str]) -> str:
    try:
        return render()
    except Exception as e:  # a malformed section must not cost the rest of the page
        log.exception("eval report: could not render section %s", name)
        return f'<div class="render-error">could not render {_esc(name)}: {_esc(repr(e))}</div>'


# --- the page -------------------------------------------------------------------------------------


def render_html(report: Mapping, base_dir: str | None = None) -> str:
    """The report page as a string. `base_dir` is where the page will live: spectrogram paths
    are checked against it (a missing file is flagged) and absolute ones made relative to it."""
    if not isinstance(report, Mapping):
        raise TypeError(f"report must be a dict, got {type(report).__name__}")
    sections = report.get("sections") or {}
    if not isinstance(sections, Mapping):
        raise TypeError(f"report['sections'] must be a dict, got {type(sections).__name__}")
    ids = _Ids()
    title = str(report.get("title") or "audiolm-jax evaluation")
    meta = "".join(
        f'<span class="{k}"><b>{k}</b> {_esc(report[k])}</span>'
        for k in ("workdir", "created", "device")
        if report.get(k) not in (None, "")
    )
    notes = report.get("notes") or []
    if isinstance(notes, str):
        notes = [notes]
    known = dict(SECTIONS)
    order = [k for k, _ in SECTIONS] + [k for k in sections if k not in known]
    sec_ids = {k: ids("sec", k) for k in order}
    nav = " ".join(f'<a href="#{sec_ids[k]}">{_esc(known.get(k, k))}</a>' for k in order)
    absent = [known.get(k, k) for k in order if sections.get(k) in (None, {}, [])]

    renderers = {
        "codec": lambda s: _grouped_section("codec", s, ids),
        "continuation": lambda s: _grouped_section("continuation", s, ids),
        "abx": lambda s: _abx(s, ids),
        "lexical": lambda s: _lexical(s, ids),
        "validation_loss": lambda s: _validation_loss(s, ids),
        "detector": lambda s: _detector(s, ids),
        "curves": lambda s: _curves(s, ids),
        "spectrograms": lambda s: _spectrograms(s, ids, base_dir),
    }
    body = []
    for key in order:
        sec = sections.get(key)
        heading = f"<h2>{_esc(known.get(key, key))}</h2>"
        if sec in (None, {}, []):
            content = '<p class="not-measured">not measured</p>'
        elif key in renderers and (isinstance(sec, Mapping) or key == "spectrograms"):
            content = _safe(key, lambda key=key, sec=sec: renderers[key](sec))
        elif isinstance(sec, Mapping) and ("groups" in sec or "rows" in sec):
            content = _safe(key, lambda key=key, sec=sec: _grouped_section(key, sec, ids))
        elif isinstance(sec, Mapping):
            content = _kv_table(sec)
        else:
            content = f"<p>{_esc(_fmt(sec))}</p>"
        content = content or '<p class="not-measured">no results</p>'
        cls = "section missing" if sec in (None, {}, []) else "section"
        body.append(f'<section class="{cls}" id="{sec_ids[key]}">{heading}{content}</section>')

    notes_html = "".join(f"<li>{_esc(n)}</li>" for n in notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1 id="title">{_esc(title)}</h1><p class="meta">{meta}</p>'
        + (f'<ul class="notes">{notes_html}</ul>' if notes_html else "")
        + (f'<p class="absent">Not measured: {_esc(", ".join(absent))}</p>' if absent else "")
        + f"<nav>{nav}</nav></header>"
        + "".join(body)
        + "</body></html>\n"
    )


def write_html(report: Mapping, out_dir: str) -> str:
    """Writes the report page to `out_dir/report.html` (spectrogram PNGs are referenced by their
    paths relative to `out_dir`) and returns that path."""
    page = render_html(report, base_dir=out_dir)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "report.html")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path
