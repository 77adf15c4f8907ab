"""The eval report's HTML page (audiolm_jax.eval.html): its structure for a report built from
real group_metrics output (metrics computed on espeak-ng speech in three accents, degraded by
noise at a different SNR per accent), and what headless Chromium draws of it.

espeak-ng and chromium are Debian packages (.ci/run installs them); without them these tests
fail. A spectrogram comes from the real recording in ../shared/audio where it is present, from
espeak-ng speech otherwise.
"""

import json
import math
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from audiolm_jax import dsp
from audiolm_jax.eval import group_metrics, mel_distance, si_sdr, stoi
from audiolm_jax.eval.html import BAR_COLOURS, LINE_COLOURS, METER_COLOUR, write_html

SHARED = REPO.parent / "shared" / "audio"
RATE = 16000
SECONDS = 1.5  # every clip cut or padded to this: mel_distance compiles once
SENTENCES = ["the quick brown fox jumps over the lazy dog", "can you tell me the way home"]
# accent -> SNR (dB) of the noise its "resynthesis" gets: a real gap between accents.
ACCENTS = {"en-us": 30.0, "en-029": 15.0, "en-gb-scotland": 3.0}
VARIANTS = ("m3", "f3")
EVIL = "<script>alert('x')</script>"
SVG = "{http://www.w3.org/2000/svg}"
FLAGS = ("missing-file", "render-error")


def _espeak(voice: str, text: str, path) -> np.ndarray:
    tool = shutil.which("espeak-ng")
    assert tool, "espeak-ng is not installed: apt-get install espeak-ng (.ci/run installs it)"
    subprocess.run([tool, "-v", voice, "-s", "150", "-w", str(path), text], check=True)
    return dsp.read_audio(str(path), RATE)[0]


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x[:n], (0, max(0, n - len(x)))).astype(np.float32)


def _with_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=x.shape)
    noise *= np.sqrt(np.sum((x - x.mean()) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def _curve(start: float, end: float, steps, tau: float) -> list:
    return [[int(s), end + (start - end) * math.exp(-s / tau)] for s in steps]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(report dict after a JSON round trip, the page's path, per-clip rows)."""
    tmp = tmp_path_factory.mktemp("eval_html")
    n = int(SECONDS * RATE)
    rows, seed = [], 0
    for accent, snr in ACCENTS.items():
        for variant in VARIANTS:
            for i, text in enumerate(SENTENCES):
                ref = _fit(_espeak(f"{accent}+{variant}", text, tmp / "x.wav"), n)
                est = _with_noise(ref, snr, seed)
                seed += 1
                row = {
                    "clip": f"{accent}_{variant}_{i}",
                    "speaker": f"{accent}+{variant}",
                    "accent": accent,
                    "language": "en",
                    "mel_distance": mel_distance(ref, est, RATE),
                    "si_sdr": si_sdr(ref, est),
                }
                if (accent, variant, i) != ("en-029", "f3", 1):  # one clip without STOI
                    row["stoi"] = stoi(ref, est, RATE)
                rows.append(row)
    rows[0]["clip"] = EVIL  # a hostile label reaches the per-clip table

    out = tmp / "eval"
    real = SHARED / "conversation_16k.wav"
    if real.exists():
        wav = dsp.read_audio(str(real), RATE)[0][int(6.5 * RATE) : int(10.5 * RATE)]
    else:  # the project's own clone has no ../shared: espeak-ng speech instead
        wav = _espeak("en-us+f3", " ".join(SENTENCES), tmp / "y.wav")
    dsp.write_spectrogram_png(str(out / "spectrograms" / "real.png"), wav, RATE, marks_s=(2.0,))
    dsp.write_spectrogram_png(str(out / "spectrograms" / "cont_0.png"), _fit(wav, n), RATE)

    continuation = {  # hand-made: group_metrics refuses NaN, a report read from JSON may not
        "by": "speaker",
        "groups": {
            "a": {"rows": 2, "mean": {"speaker_similarity": 0.8}, "count": {}},
            "b": {"rows": 1, "mean": {"speaker_similarity": float("nan")}, "count": {}},
            "c": {"rows": 2, "mean": {"speaker_similarity": 0.5}, "count": {}},
        },
        "metrics": {
            "speaker_similarity": {
                "direction": "higher",
                "best": "a",
                "worst": "c",
                "best_value": 0.8,
                "worst_value": 0.5,
                "spread": 0.3,
            }
        },
    }
    report = {
        "title": f"audiolm-jax evaluation: runs/{EVIL}",
        "workdir": "runs/quickstart",
        "created": "2026-11-27T22:10:00Z",
        "device": "cpu",
        "notes": ["tiny models, 90 s of speech", f"note {EVIL}"],
        "sections": {
            "codec": {
                "description": "resynthesis through the codec, per clip",
                "rows": rows,
                "groups": {
                    "accent": group_metrics(rows, "accent"),
                    "speaker": group_metrics(rows, "speaker"),
                },
            },
            "continuation": {"description": "no speaker b", "groups": {"speaker": continuation}},
            "abx": {"error_rate": 0.21},
            "lexical": {"accuracy": 0.62, "pairs": 40, "chance": 0.5},
            "validation_loss": {
                "semantic": {"loss": 3.2, "per_level": {}},
                "coarse": {"loss": 4.1, "per_level": {"level_0": 3.9, "level_1": 4.3}},
                "fine": {"loss": None, "per_level": {"level_3": 5.0}},
            },
            "curves": {
                "semantic": {
                    "loss": _curve(7.0, 2.5, range(0, 2001, 10), 300),
                    "eval/loss": _curve(7.2, 2.8, range(0, 2001, 250), 300),
                },
                "coarse": {  # spans 100x: a log y axis; a NaN breaks the eval line
                    "loss": _curve(100.0, 0.5, range(0, 2001, 10), 200),
                    "eval/loss": [[250, 40.0], [500, 12.0], [750, float("nan")], [1000, 2.0]],
                },
            },
            "spectrograms": [
                {"title": f"real speech {EVIL}", "png": "spectrograms/real.png"},
                {"title": "prompt + continuation", "png": "spectrograms/cont_0.png"},
            ],
        },
    }
    report = json.loads(json.dumps(report))  # what launch.py writes and reads back
    path = write_html(report, str(out))
    return report, path, rows


def _parse(path) -> ET.Element:
    # The page is well-formed XML (void elements self-closed): a strict parse checks nesting.
    return ET.parse(path).getroot()


def _by_id(root: ET.Element, ident: str) -> ET.Element:
    found = [e for e in root.iter() if e.get("id") == ident]
    assert len(found) == 1, f"{len(found)} elements with id {ident!r}"
    return found[0]


def _text(e: ET.Element) -> str:
    return "".join(e.itertext())


def test_page_structure(built):
    report, path, rows = built
    assert path == os.path.join(os.path.dirname(path), "report.html") and os.path.isfile(path)
    page = open(path, encoding="utf-8").read()
    root = _parse(path)
    svgs = [e for e in root.iter(f"{SVG}svg")]
    assert all("plot" in e.get("class", "").split() for e in svgs)
    assert len({e.get("id") for e in svgs}) == len(svgs)  # ids unique

    # Header.
    head = _text(_by_id(root, "title"))
    assert head == report["title"]
    for s in ("runs/quickstart", "2026-11-27T22:10:00Z", "tiny models, 90 s of speech"):
        assert s in page

    codec = report["sections"]["codec"]
    for by in ("accent", "speaker"):
        g = codec["groups"][by]
        table = _by_id(root, f"table-codec-{by}")
        body = [tr for tr in table.iter("tr") if tr.get("class") == "group"]
        assert [tr.get("data-group") for tr in body] == list(g["groups"])  # a row per group
        heads = [_text(th) for th in table.find("thead").iter("th")]
        for m, s in g["metrics"].items():
            arrow = "\u2191" if s["direction"] == "higher" else "\u2193"
            assert f"{m} {arrow}" in heads
            col = heads.index(f"{m} {arrow}")
            cells = {tr.get("data-group"): list(tr.iter("td"))[col] for tr in body}
            assert "best" in cells[s["best"]].get("class", "")
            assert "worst" in cells[s["worst"]].get("class", "")
            assert _text(cells[s["best"]]).startswith(f"{s['best_value']:.4g}")

            svg = _by_id(root, f"bars-codec-{by}-{m}")  # one bar chart per metric
            assert svg.get("class") == "plot bars"
            bars = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]
            assert [b.get("data-group") for b in bars] == list(g["groups"])
            assert len({b.get("fill") for b in bars}) == len(bars)  # distinct colours
            heights = {b.get("data-group"): float(b.get("height")) for b in bars}
            if s["best_value"] * s["worst_value"] > 0 and s["spread"] > 0:
                ratio = heights[s["best"]] / heights[s["worst"]]
                assert ratio == pytest.approx(s["best_value"] / s["worst_value"], rel=0.02)
            spread = [t for t in svg.iter(f"{SVG}text") if t.get("class") == "spread"]
            assert [_text(t) for t in spread] == [f"\u0394 {s['spread']:.4g}"]
            assert sum(1 for e in svg.iter() if e.get("class") == "spread-line") == 2

    # The accents' gap is real: noise at 30 / 15 / 3 dB SNR orders SI-SDR and mel distance.
    acc = codec["groups"]["accent"]["metrics"]
    assert (acc["si_sdr"]["best"], acc["si_sdr"]["worst"]) == ("en-us", "en-gb-scotland")
    assert acc["si_sdr"]["spread"] > 20
    assert (acc["mel_distance"]["best"], acc["mel_distance"]["worst"]) == (
        "en-us",
        "en-gb-scotland",
    )
    # One en-029 clip has no STOI: its group's cell says over how many clips the mean is.
    row = [tr for tr in _by_id(root, "table-codec-accent").iter("tr") if tr.get("data-group")]
    assert "(n=3)" in _text([tr for tr in row if tr.get("data-group") == "en-029"][0])
    assert len(list(root.iter("details"))[0].find("table").find("tbody")) == len(rows)

    # NaN mean: "n/a" in the table and the chart, and no bar.
    cont = _by_id(root, "table-continuation-speaker")
    b_row = [tr for tr in cont.iter("tr") if tr.get("data-group") == "b"][0]
    assert "n/a" in [_text(td) for td in b_row.iter("td")]
    svg = _by_id(root, "bars-continuation-speaker-speaker_similarity")
    assert [r.get("data-group") for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"] == [
        "a",
        "c",
    ]
    assert "n/a" in [_text(t) for t in svg.iter(f"{SVG}text")]

    # ABX and lexical: numbers and a bar against chance.
    for ident, value in (("meter-abx", "0.21"), ("meter-lexical", "0.62")):
        svg = _by_id(root, ident)
        assert svg.get("class") == "plot meter"
        assert any(e.get("class") == "chance" for e in svg.iter())
        section = _by_id(root, ident.replace("meter-", "sec-"))
        assert value in _text(section) and f"{100 * float(value):.1f}%" in _text(svg)

    # Validation loss: a table row per stage, a bar chart per stage with a bar per level.
    table = _by_id(root, "table-validation_loss")
    assert [_text(tr.find("td")) for tr in table.find("tbody")] == ["semantic", "coarse", "fine"]
    coarse = _by_id(root, "bars-validation_loss-coarse")
    labels = [r.get("data-group") for r in coarse.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert labels == ["all levels", "level_0", "level_1"]
    fine = _by_id(root, "bars-validation_loss-fine")  # loss None: n/a, no bar
    assert [r.get("data-group") for r in fine.iter(f"{SVG}rect") if r.get("class")] == ["level_3"]

    # Curves: a line chart per stage, train and eval lines, a legend; log axis for coarse.
    for stage in ("semantic", "coarse"):
        svg = _by_id(root, f"curves-{stage}")
        assert svg.get("class") == "plot lines"
        lines = {p.get("data-series"): p for p in svg.iter(f"{SVG}path")}
        assert set(lines) == {"loss", "eval/loss"}
        assert lines["loss"].get("stroke") != lines["eval/loss"].get("stroke")
        legend = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "legend-item"]
        assert [_text(g.find(f"{SVG}text")) for g in legend] == ["loss", "eval/loss"]
        title = _text([t for t in svg.iter(f"{SVG}text") if t.get("class") == "title"][0])
        assert ("log scale" in title) == (stage == "coarse")
    coarse_eval = [p for p in _by_id(root, "curves-coarse").iter(f"{SVG}path")][1]
    assert coarse_eval.get("d").count("M") == 2  # the NaN at step 750 breaks the line

    # Spectrograms: <img> by relative path, files there.
    imgs = list(root.iter("img"))
    assert [i.get("src") for i in imgs] == ["spectrograms/real.png", "spectrograms/cont_0.png"]
    for i in imgs:
        assert os.path.isfile(os.path.join(os.path.dirname(path), i.get("src")))
    flagged = [e.get("class") for e in root.iter() if e.get("class") in FLAGS]
    assert not flagged  # no missing file, no section that failed to render

    # Everything hostile was escaped: no script element, the text shown as written.
    assert "<script" not in page.lower()
    assert not [e for e in root.iter() if e.tag.lower().endswith("script")]
    assert page.count("&lt;script&gt;") >= 5  # title (2x), note, clip, spectrogram caption


def test_absent_sections_say_not_measured(tmp_path):
    path = write_html({"title": "empty", "sections": {"abx": None, "odd": {"x": 1.5}}}, tmp_path)
    root = _parse(path)
    for key in ("codec", "continuation", "abx", "lexical", "validation_loss", "curves"):
        sec = _by_id(root, f"sec-{key}")
        assert "missing" in sec.get("class") and "not measured" in _text(sec), key
    assert "1.5" in _text(_by_id(root, "sec-odd"))  # an unknown section: its values shown
    assert not list(root.iter(f"{SVG}svg"))


def test_broken_sections_are_flagged_and_the_rest_written(tmp_path):
    report = {
        "sections": {
            "validation_loss": {"coarse": {"loss": 4.0, "per_level": 5}},  # not a dict
            "lexical": {"accuracy": 0.7, "chance": 0.5},
            "spectrograms": [{"title": "gone", "png": "spectrograms/none.png"}],
        }
    }
    root = _parse(write_html(report, str(tmp_path / "out")))
    error = [e for e in root.iter() if e.get("class") == "render-error"]
    assert len(error) == 1 and "validation_loss" in _text(error[0])
    assert _by_id(root, "meter-lexical") is not None
    missing = [e for e in root.iter() if e.get("class") == "missing-file"]
    assert len(missing) == 1 and "file not found" in _text(missing[0])
    assert _text(_by_id(root, "title")) == "audiolm-jax evaluation"  # the default title


# --- what Chromium draws -------------------------------------------------------------------


def _screenshot(page: str, png, size=(1200, 6000)) -> np.ndarray:
    """Headless Chromium's screenshot of `page` as [height, width, 3] uint8."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: apt-get install chromium (.ci/run installs it)"
    home = os.path.join(os.path.dirname(png), "chromium-home")
    os.makedirs(home, exist_ok=True)
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={home}",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={png}",
        f"file://{page}",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": home}
    )
    assert out.returncode == 0 and os.path.isfile(png), out.stderr[-3000:]
    return np.asarray(Image.open(png).convert("RGB"))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def _mask(img: np.ndarray, colour) -> np.ndarray:
    return np.all(img == np.asarray(colour, np.uint8), axis=-1)


def test_page_renders_in_chromium(built, tmp_path):
    report, path, _ = built
    img = _screenshot(path, str(tmp_path / "page.png"))
    assert np.mean(np.any(img < 235, axis=-1)) > 0.03, "the page looks blank"
    n_groups = len(report["sections"]["codec"]["groups"]["speaker"]["groups"])
    for colour in BAR_COLOURS[:n_groups]:  # bars of every group colour, in many charts
        assert _mask(img, _rgb(colour)).sum() > 2000, colour
    for colour in LINE_COLOURS[:2]:  # train and eval lines
        assert _mask(img, _rgb(colour)).sum() > 300, colour
    assert _mask(img, _rgb(METER_COLOUR)).sum() > 2000  # ABX and lexical bars
    # The spectrograms (last on the page, so the whole page fitted) are drawn from their PNGs.
    spec = np.asarray(Image.open(os.path.join(os.path.dirname(path), "spectrograms/real.png")))
    colours, counts = np.unique(spec.reshape(-1, 3), axis=0, return_counts=True)
    common = colours[np.argmax(counts)]
    assert _mask(img, common).sum() >= counts.max(), "the spectrogram image is not shown"


def test_bar_heights_show_the_gap(tmp_path):
    """One chart alone: the drawn bars are as tall as their values say, so a gap between two
    groups is a gap on screen."""
    rows = [
        {"accent": "en-us", "wer": 0.1},
        {"accent": "en-us", "wer": 0.14},
        {"accent": "en-gb-scotland", "wer": 0.36},
        {"accent": "en-029", "wer": 0.2},
    ]
    g = group_metrics(rows, "accent")
    report = {"title": "gap", "sections": {"codec": {"groups": {"accent": g}}}}
    img = _screenshot(write_html(report, str(tmp_path)), str(tmp_path / "gap.png"), (900, 700))
    heights = {}
    for i, group in enumerate(g["groups"]):  # bars take BAR_COLOURS in group order
        ys = np.nonzero(_mask(img, _rgb(BAR_COLOURS[i])).any(axis=1))[0]
        assert ys.size, f"no bar of {group}"
        heights[group] = ys.max() - ys.min() + 1
    for group, stats in g["groups"].items():
        want = stats["mean"]["wer"] / g["groups"]["en-gb-scotland"]["mean"]["wer"]
        assert heights[group] / heights["en-gb-scotland"] == pytest.approx(want, abs=0.03)
