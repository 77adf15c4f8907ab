"""Audio sources for the tfds builders: list a local corpus, hold out whole speakers, and read each
file into examples (mono, resampled, loudness-normalised, long recordings cut at silences).

Pure Python and numpy (soundfile, soxr through `audiolm_jax.dsp`); no TensorFlow here, so the
reading and segmentation can be tested and reused without the data pipeline.

Layouts (`AudioSourceConfig.layout`):

- "librispeech": `<root>[/<subset>]/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` with
  `<speaker>-<chapter>.trans.txt` beside them (the transcript goes into `FileEntry.metadata`).
  The speaker is the file name's first field. `root` may hold subsets (train-clean-100, ...) or
  be one subset.
- "librilight": `<root>[/<small|medium|large|duplicate>]/<speaker>/<book>/<name>.flac` with
  `<name>.json` beside each flac (LibriVox metadata, "speaker", "snr" and "voice_activity":
  [[onset, offset], ...] in seconds). The speaker is the folder above the book folder; the JSON
  is read when the file is (its voice activity chooses the cut points).
- "folder": any `.wav`, `.flac`, `.ogg` under `root`, recursively; the speaker is the first
  folder under `root`, or the file's stem for files directly in `root`.

Examples are dicts {"id", "speaker", "audio" float32 [n], "path", "start_seconds"}; the id is
the file's path under `root` without extension, plus `_<segment index:04d>`: unique and stable.

Policies:

- Segmentation: a recording longer than `max_seconds` is cut into consecutive segments that
  tile it (nothing is thrown away between them), each at most `max_seconds` long and, except
  for a whole file that is itself short, at least `min_seconds`. Each cut is made in the last
  half of the allowed length, at the middle of the longest stretch of the quietest audio there
  (100 ms smoothed frame energy); where Libri-Light's voice activity is known, stretches outside
  voice activity come first. With no silence in reach the cut still falls at the quietest point,
  so no segment is ever longer than `max_seconds`.
- Short files: a readable, non-silent file shorter than `min_seconds` is kept whole as one
  example; `min_seconds` only bounds the pieces that cutting makes. No good file is dropped.
- Loudness: each example is scaled to `loudness_db` dBFS RMS (`dsp.normalize_loudness`) after
  cutting, so every example the tokenizers see has the same level. A segment of digital silence
  (RMS below -100 dBFS) is left out, since it cannot be normalised and holds no speech.
- Bad files: unreadable, corrupt, empty, wrong-format, non-finite or entirely silent files raise
  `BadAudioFile(path, reason)`; `iterate_examples` logs each with its path and reason, records it
  and goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator

import numpy as np

from audiolm_jax import dsp

log = logging.getLogger("audiolm_jax")

LAYOUTS = ("folder", "librispeech", "librilight")
LIBRILIGHT_SUBSETS = ("small", "medium", "large", "duplicate")
SPLITS = ("train", "validation")

_FRAME_SECONDS = 0.01  # energy frames for the silence detector
_SMOOTH_SECONDS = 0.1  # the energy is averaged over this long a stretch before a cut is chosen
_QUIET_TOLERANCE_DB = 3.0  # frames this close to the quietest one count as equally quiet
_SILENT_RMS = 1e-5  # -100 dBFS: digital silence


@dataclasses.dataclass
class AudioSourceConfig:
    """Where a corpus is and how its files become examples.

    layout: "folder" | "librispeech" | "librilight" (see the module docstring).
    root: the corpus folder.
    sample_rate: examples' rate in Hz; files at other rates are resampled (soxr).
    max_seconds: the longest example; longer recordings are cut at silences.
    min_seconds: the shortest piece cutting may make (at most max_seconds / 2).
    loudness_db: RMS level in dBFS each example is scaled to; None leaves levels alone.
    eval_speakers: fraction of speakers held out for "validation" (at least one when the corpus
        has two or more speakers and the fraction is > 0).
    eval_speaker_count: an exact number of held-out speakers; overrides eval_speakers.
    seed: picks which speakers are held out (a stable hash of seed and speaker id).
    subsets: Libri-Light or LibriSpeech subset folders to read (e.g. ("small",) or
        ("train-clean-100",)); None reads all there are.
    """

    layout: str = "folder"
    root: str = ""
    sample_rate: int = 16000
    max_seconds: float = 30.0
    min_seconds: float = 0.5
    loudness_db: float | None = -20.0
    eval_speakers: float = 0.1
    eval_speaker_count: int | None = None
    seed: int = 0
    subsets: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not self.root:
            raise ValueError("AudioSourceConfig.root is required")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.max_seconds <= 0 or self.min_seconds < 0:
            raise ValueError(
                f"need max_seconds > 0 and min_seconds >= 0, got {self.max_seconds}, "
                f"{self.min_seconds}"
            )
        if self.min_seconds > self.max_seconds / 2:
            raise ValueError(
                f"min_seconds ({self.min_seconds}) must be at most max_seconds / 2 "
                f"({self.max_seconds / 2}) so that cutting never leaves a shorter tail"
            )
        if not 0.0 <= self.eval_speakers < 1.0:
            raise ValueError(f"eval_speakers must be in [0, 1), got {self.eval_speakers}")
        if self.eval_speaker_count is not None and self.eval_speaker_count < 0:
            raise ValueError(f"eval_speaker_count must be >= 0, got {self.eval_speaker_count}")
        if self.subsets is not None:
            self.subsets = tuple(self.subsets)

    def to_dict(self) -> dict:
        """The config as a JSON-ready dict (for summaries and dataset metadata)."""
        d = dataclasses.asdict(self)
        d["subsets"] = list(self.subsets) if self.subsets is not None else None
        return d


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One audio file of a corpus: its path, speaker, id (path under root, no extension) and
    layout-specific metadata (LibriSpeech: subset, chapter, text; Libri-Light: subset, book,
    json path)."""

    path: str
    speaker: str
    rel_id: str
    metadata: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)


class BadAudioFile(Exception):
    """A file that cannot be used: `path` and a human-readable `reason`."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# --- listing -------------------------------------------------------------------------------------


def _rel_id(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def _subset_dirs(root: str, subsets: tuple[str, ...] | None, known: tuple[str, ...]) -> list[str]:
    """The subset folders to read: those named, else the known (or, for LibriSpeech, all)
    subsets present, else `root` itself (a root that is one subset)."""
    if subsets is not None:
        missing = [s for s in subsets if not os.path.isdir(os.path.join(root, s))]
        if missing:
            raise FileNotFoundError(f"subsets {missing} not found under {root}")
        return [os.path.join(root, s) for s in subsets]
    found = [os.path.join(root, s) for s in known if os.path.isdir(os.path.join(root, s))]
    return found or [root]


def _librispeech_subsets(root: str, subsets: tuple[str, ...] | None) -> list[str]:
    if subsets is not None:
        return _subset_dirs(root, subsets, ())
    # A subset folder holds speaker folders whose names are numbers; a root that is one subset
    # has numeric folders itself.
    names = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
    if any(n.isdigit() for n in names):
        return [root]
    return [os.path.join(root, n) for n in names]


def _read_transcripts(folder: str) -> dict[str, str]:
    texts = {}
    for name in os.listdir(folder):
        if not name.endswith(".trans.txt"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                for line in f:
                    utt, _, text = line.strip().partition(" ")
                    if utt:
                        texts[utt] = text
        except (OSError, UnicodeDecodeError) as e:
            log.warning("Unreadable transcript %s: %s", os.path.join(folder, name), e)
    return texts


def list_files(cfg: AudioSourceConfig) -> list[FileEntry]:
    """The corpus' audio files (wav, flac, ogg) as `FileEntry`s, sorted by id. Files are listed,
    not opened: a bad file shows up when it is read. Raises FileNotFoundError for a missing
    root."""
    root = os.path.abspath(cfg.root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"audio root {root} does not exist")
    entries = []
    if cfg.layout == "folder":
        for path in dsp.list_audio(root):
            rel = _rel_id(path, root)
            speaker = rel.split("/")[0]  # first folder, or the stem of a file in root
            entries.append(FileEntry(path, speaker, rel, {}))
    elif cfg.layout == "librispeech":
        for sub in _librispeech_subsets(root, cfg.subsets):
            texts: dict[str, dict[str, str]] = {}
            for path in dsp.list_audio(sub):
                folder = os.path.dirname(path)
                if folder not in texts:
                    texts[folder] = _read_transcripts(folder)
                stem = os.path.splitext(os.path.basename(path))[0]
                fields = stem.split("-")
                # <speaker>-<chapter>-<utt>; otherwise the folders say who and which chapter.
                rel_in_sub = os.path.relpath(path, sub).split(os.sep)
                speaker = fields[0] if len(fields) == 3 else rel_in_sub[0]
                chapter = fields[1] if len(fields) == 3 else rel_in_sub[-2]
                meta = {
                    "subset": os.path.relpath(sub, root).replace(os.sep, "/"),
                    "chapter": chapter,
                    "text": texts[folder].get(stem, ""),
                }
                entries.append(FileEntry(path, speaker, _rel_id(path, root), meta))
    else:  # librilight
        for sub in _subset_dirs(root, cfg.subsets, LIBRILIGHT_SUBSETS):
            for path in dsp.list_audio(sub):
                rel_in_sub = os.path.relpath(path, sub).split(os.sep)
                speaker = rel_in_sub[0] if len(rel_in_sub) > 1 else "unknown"
                json_path = os.path.splitext(path)[0] + ".json"
                meta = {
                    "subset": os.path.relpath(sub, root).replace(os.sep, "/"),
                    "book": rel_in_sub[-2] if len(rel_in_sub) > 2 else "",
                    "json_path": json_path if os.path.exists(json_path) else None,
                }
                entries.append(FileEntry(path, speaker, _rel_id(path, root), meta))
    entries.sort(key=lambda e: e.rel_id)
    return entries


# --- speaker split -------------------------------------------------------------------------------


def _speaker_rank(speaker: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{speaker}".encode()).hexdigest()


def held_out_speakers(speakers, cfg: AudioSourceConfig) -> set[str]:
    """The speakers `split_speakers` holds out: the `k` with the smallest sha256(seed:speaker),
    k = eval_speaker_count, else round(eval_speakers * n) but at least 1 (when eval_speakers >
    0); at least one speaker always stays in train."""
    speakers = sorted(set(speakers))
    n = len(speakers)
    if cfg.eval_speaker_count is not None:
        k = cfg.eval_speaker_count
    elif cfg.eval_speakers > 0:
        k = max(1, round(cfg.eval_speakers * n))
    else:
        k = 0
    k = min(k, n - 1) if n > 1 else 0
    ranked = sorted(speakers, key=lambda s: (_speaker_rank(s, cfg.seed), s))
    return set(ranked[:k])


def split_speakers(entries: list[FileEntry], cfg: AudioSourceConfig) -> dict[str, list[FileEntry]]:
    """{"train": [...], "validation": [...]}: whole speakers held out for validation (see
    `held_out_speakers`); the same corpus and seed always give the same split, whatever the
    process or the order of `entries`. Each list keeps `entries`' order."""
    held = held_out_speakers([e.speaker for e in entries], cfg)
    return {
        "train": [e for e in entries if e.speaker not in held],
        "validation": [e for e in entries if e.speaker in held],
    }


# --- reading and segmentation --------------------------------------------------------------------


def _read(path: str, sample_rate: int) -> np.ndarray:
    """Mono float32 at `sample_rate`; raises BadAudioFile with the reason."""
    import soundfile

    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise BadAudioFile(path, f"unreadable: {e.strerror or e}") from e
    if size == 0:
        raise BadAudioFile(path, "empty file (0 bytes)")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, OSError, ...
        raise BadAudioFile(path, f"unreadable or not audio: {e}") from e
    if data.shape[0] == 0:
        raise BadAudioFile(path, "holds no samples")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(wav)):
        raise BadAudioFile(path, "holds NaN or infinite samples")
    if rate != sample_rate:
        wav = dsp.resample(wav, rate, sample_rate)
    return np.asarray(wav, np.float32)


def _voice_activity(entry: FileEntry) -> list[tuple[float, float]] | None:
    """Libri-Light's [onset, offset] seconds from the file's JSON, or None (logged) if there is
    none or it cannot be read: the energy detector then chooses the cuts."""
    json_path = entry.metadata.get("json_path")
    if not json_path:
        return None
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
        vad = [(float(a), float(b)) for a, b in meta.get("voice_activity") or []]
    except (OSError, ValueError, TypeError) as e:
        log.warning("Ignored unreadable metadata %s (cutting by energy instead): %s", json_path, e)
        return None
    return vad or None


def frame_energy_db(wav: np.ndarray, hop: int, smooth: int = 1) -> np.ndarray:
    """Energy in dBFS of consecutive `hop`-sample frames (the last one partial), averaged over
    `smooth` frames centred on each."""
    n = max(1, -(-len(wav) // hop))
    padded = np.zeros(n * hop, np.float64)
    padded[: len(wav)] = wav
    power = np.mean(padded.reshape(n, hop) ** 2, axis=1)
    if smooth > 1:
        kernel = np.ones(smooth) / smooth
        power = np.convolve(np.pad(power, (smooth // 2, smooth - 1 - smooth // 2), "edge"), kernel)
        power = power[smooth - 1 : smooth - 1 + n]
    return 10 * np.log10(power + 1e-12)


def _quietest_run_middle(score: np.ndarray, lo: int, hi: int) -> int:
    """The middle frame of the longest run of frames within tolerance of the lowest score in
    frames [lo, hi)."""
    window = score[lo:hi]
    quiet = window <= window.min() + _QUIET_TOLERANCE_DB
    best_len, best_mid, run_start = 0, 0, None
    for i, q in enumerate(np.append(quiet, False)):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            if i - run_start > best_len:
                best_len, best_mid = i - run_start, (run_start + i - 1) // 2
            run_start = None
    return lo + best_mid


def segment_bounds(
    wav: np.ndarray,
    sample_rate: int,
    max_seconds: float,
    min_seconds: float = 0.0,
    voice_activity: list[tuple[float, float]] | None = None,
) -> list[tuple[int, int]]:
    """[(start, end)] samples of consecutive segments tiling `wav`, each at most `max_seconds`
    and (if `wav` is longer than `max_seconds`) at least `min_seconds` long. Each cut falls in
    the last half of the allowed length, at the middle of the longest stretch of the quietest
    (100 ms smoothed) audio there; frames outside `voice_activity` ([onset, offset] seconds),
    if given, rank before any voiced frame."""
    n = len(wav)
    max_len = max(1, int(max_seconds * sample_rate))
    if n <= max_len:
        return [(0, n)]
    min_len = int(min_seconds * sample_rate)
    hop = max(1, int(_FRAME_SECONDS * sample_rate))
    score = frame_energy_db(wav, hop, max(1, round(_SMOOTH_SECONDS / _FRAME_SECONDS)))
    if voice_activity:
        voiced = np.zeros(len(score), bool)
        for onset, offset in voice_activity:
            a = max(0, int(np.floor(onset * sample_rate / hop)))
            b = min(len(score), int(np.ceil(offset * sample_rate / hop)))
            voiced[a:b] = True
        score = np.where(voiced, score + 200.0, score)
    bounds, start = [], 0
    while n - start > max_len:
        lo = start + max(min_len, max_len // 2, 1)
        hi = min(start + max_len, n - min_len)  # hi >= lo: min_len <= max_len / 2 < n - start
        # Frames whose start lies in [lo, hi]; the cut is at a frame start, so clamp to [lo, hi].
        f_lo, f_hi = -(-lo // hop), hi // hop + 1
        if f_lo < f_hi:
            cut = min(max(_quietest_run_middle(score, f_lo, f_hi) * hop, lo), hi)
        else:  # window narrower than a frame
            cut = hi
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


def read_and_segment(entry: FileEntry, cfg: AudioSourceConfig) -> list[dict]:
    """A file's examples: {"id", "speaker", "audio" float32 [n] mono at cfg.sample_rate,
    loudness-normalised, "path", "start_seconds"}, one per segment (see `segment_bounds`; a
    recording no longer than cfg.max_seconds is one example). Raises BadAudioFile for a file that
    cannot be used (unreadable, corrupt, empty, wrong format, non-finite or silent)."""
    wav = _read(entry.path, cfg.sample_rate)
    if float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < _SILENT_RMS:
        raise BadAudioFile(entry.path, "silent (RMS below -100 dBFS)")
    vad = _voice_activity(entry) if len(wav) > cfg.max_seconds * cfg.sample_rate else None
    bounds = segment_bounds(wav, cfg.sample_rate, cfg.max_seconds, cfg.min_seconds, vad)
    examples = []
    for k, (a, b) in enumerate(bounds):
        seg = wav[a:b]
        if float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)))) < _SILENT_RMS:
            log.debug("Left out a silent segment of %s at %.2f s", entry.path, a / cfg.sample_rate)
            continue
        if cfg.loudness_db is not None:
            seg = dsp.normalize_loudness(seg, cfg.loudness_db)
        examples.append(
            {
                "id": f"{entry.rel_id}_{k:04d}",
                "speaker": entry.speaker,
                "audio": np.ascontiguousarray(seg, np.float32),
                "path": entry.path,
                "start_seconds": float(a / cfg.sample_rate),
            }
        )
    return examples


def iterate_examples(
    cfg: AudioSourceConfig,
    split: str | None = None,
    bad_files: list | None = None,
    entries: list[FileEntry] | None = None,
) -> Iterator[dict]:
    """Examples of `split` ("train" | "validation" | None for all), file by file in id order.
    `entries` (default: `list_files(cfg)`, split by `split_speakers`) are read as given. A file
    that cannot be used is logged with its path and reason, appended to `bad_files` as
    (path, reason), and skipped: one bad file never stops the corpus."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    if entries is None:
        entries = list_files(cfg)
        if split is not None:
            entries = split_speakers(entries, cfg)[split]
    for entry in entries:
        try:
            examples = read_and_segment(entry, cfg)
        except BadAudioFile as e:
            path, reason = e.path, e.reason
        except Exception as e:  # noqa: BLE001 - anything else about one file is that file's fault
            path, reason = entry.path, f"{type(e).__name__}: {e}"
        else:
            yield from examples
            continue
        log.warning("Skipped bad audio file %s: %s", path, reason)
        if bad_files is not None:
            bad_files.append((path, reason))
