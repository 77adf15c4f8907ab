"""sWUGGY / sBLIMP-style scoring: does the model prefer the real item of a pair?

ZeroSpeech 2021's lexical (sWUGGY) and syntactic (sBLIMP) tasks (Nguyen et al. 2020,
arXiv:2011.11588) give pairs of spoken items, one real word (or grammatical sentence) and one
pseudo-word (ungrammatical sentence), read by the same voice; a spoken language model scores
each and is right on a pair when it gives the real item the higher log-probability. Chance is
50 %. The local format read here is the challenge's: a folder of `<filename>.wav` and a
`gold.csv` with at least the columns `id` (the pair/group), `filename` and `correct` (1 real,
0 not), optionally `voice` (pairs are formed within a voice).

    items = read_gold(folder)
    scores = {it["filename"]: -score(pipe, read(it["path"]))["semantic"]["nll"] for it in items}
    pair_accuracy(items, scores)      # {"accuracy": .., "pairs": .., "chance": 0.5}

`write_lexical_set` synthesises a small set of this kind with flite (real English words and
pseudo-words one or two phonemes away) for a self-contained check.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence

# (real word, pseudo-word): pronounceable non-words that differ from the word in one or two
# sounds, sWUGGY style.
LEXICAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("brick", "brisk"),
    ("table", "tayble"),
    ("window", "windoe"),
    ("garden", "garnen"),
    ("people", "peeple"),
    ("little", "liddle"),
    ("morning", "morming"),
    ("water", "wotter"),
    ("yellow", "yellog"),
    ("mother", "mothen"),
    ("happy", "hoppy"),
    ("rabbit", "rabbot"),
)


def read_gold(folder: str) -> list[dict]:
    """The items of a ZeroSpeech-format folder: [{filename, path, id, correct, voice}].
    Errors name the missing file or column and the row."""
    gold = os.path.join(folder, "gold.csv")
    if not os.path.exists(gold):
        raise FileNotFoundError(f"{folder} has no gold.csv (ZeroSpeech lexical/syntactic format)")
    with open(gold, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"id", "filename", "correct"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{gold}: missing columns {sorted(missing)}; has {reader.fieldnames}")
        items = []
        for n, row in enumerate(reader, start=2):
            path = os.path.join(folder, row["filename"] + ".wav")
            if not os.path.exists(path):
                raise FileNotFoundError(f"{gold} line {n}: {path} does not exist")
            if row["correct"] not in ("0", "1", "True", "False"):
                raise ValueError(f"{gold} line {n}: correct must be 1 or 0, got {row['correct']!r}")
            items.append(
                dict(
                    filename=row["filename"],
                    path=path,
                    id=row["id"],
                    correct=row["correct"] in ("1", "True"),
                    voice=row.get("voice") or "",
                )
            )
    if not items:
        raise ValueError(f"{gold} lists no items")
    return items


def pair_accuracy(items: Sequence[Mapping], scores: Mapping[str, float]) -> dict:
    """Fraction of (real, fake) pairs of the same id and voice where the real item scores
    higher (ties count half), over every such pair; scores are log-probabilities by filename."""
    groups = defaultdict(lambda: ([], []))
    for it in items:
        groups[(it["id"], it.get("voice", ""))][0 if it["correct"] else 1].append(it["filename"])
    right, pairs = 0.0, 0
    for real, fake in groups.values():
        for r, f in itertools.product(real, fake):
            if r not in scores or f not in scores:
                raise ValueError(f"no score for {r if r not in scores else f!r}")
            right += 1.0 if scores[r] > scores[f] else 0.5 if scores[r] == scores[f] else 0.0
            pairs += 1
    if not pairs:
        raise ValueError("no (real, fake) pair with the same id and voice")
    return {"accuracy": right / pairs, "pairs": pairs, "chance": 0.5}


def write_lexical_set(
    out_dir: str,
    pairs: Sequence[tuple[str, str]] = LEXICAL_PAIRS,
    voices: Sequence[str] = ("slt", "rms"),
    sample_rate: int = 16000,
) -> list[dict]:
    """Synthesises each (word, pseudo-word) with each flite voice into `out_dir` in the
    ZeroSpeech format (WAVs as `semantic.abx.synthesize_words` makes them: trimmed, -20 dBFS;
    plus gold.csv) and returns `read_gold(out_dir)`."""
    from audiolm_jax.semantic.abx import synthesize_words

    words = sorted({w for pair in pairs for w in pair})
    made = synthesize_words(words, out_dir, sample_rate, [("flite", v) for v in voices])
    name = {(it["word"], it["voice"]): os.path.basename(it["path"])[:-4] for it in made}
    rows = [
        {"id": i, "filename": name[(text, voice)], "voice": voice, "correct": correct}
        for i, (word, fake) in enumerate(pairs)
        for voice in voices
        for text, correct in ((word, 1), (fake, 0))
    ]
    with open(os.path.join(out_dir, "gold.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "filename", "voice", "correct"])
        w.writeheader()
        w.writerows(rows)
    return read_gold(out_dir)
