"""AudioLM end to end: a prompt (or nothing) -> semantic ids -> coarse codes -> fine codes -> audio.

    import jax
    from audiolm_jax import load_pipeline, sample, score

    pipe = load_pipeline("runs/quickstart/pipeline")     # codec, tokenizer, three stages
    wav = sample(pipe, prompt=prompt_wav, prompt_sample_rate=16000, seconds=10,
                 rng=jax.random.key(0))                  # [batch, seconds * rate] float32
    nll = score(pipe, wav[0])                            # per-stage negative log-likelihood

Each stage is sampled by `sample_tokens` (a KV cache preallocated to the stage's context and
filled in one compiled `lax.while_loop`), with the layouts' valid-id masks so every acoustic
position emits a code of its level. Everything here is a function of its arguments: the same
pipeline, prompt and key give the same audio.

Longer than the training context (AudioLM, arXiv:2209.03143 sec. 4, trains on 30 s semantic
and 10 s coarse crops and 3 s fine chunks):

- semantic: a sliding window. Each window keeps BOS plus the newest ids (at least half the
  context when there are that many) and fills the rest; training crops start mid-utterance
  after BOS too, so every window looks like a training sequence.
- coarse: windows of `coarse_crop_seconds` over the acoustic frames. A window starts half a
  window before the first frame still to generate (its frames so far are the acoustic prompt)
  and is conditioned on the semantic ids that cover it, as training crops are; generated
  semantic ids are spread evenly over the new seconds to place them in time. With the
  "aligned" coarse layout (`TokenLayout.coarse_semantic`) a window starts on the crop grid,
  its prefix holds every frame's id and each position gets the id of its frame
  (`TokenLayout.coarse_conditioning`).
- fine: non-overlapping chunks of `fine_chunk_seconds`, all sampled in one batch, as trained.

So `seconds` is unbounded; the limits are compute (each window re-reads its context once) and
coherence (nothing older than a window is seen). The output is exactly `seconds` long: the
coarse stage is asked for exactly that many frames (its EOS is masked), and the semantic stage
for as many de-duplicated ids as the training audio had per second (`semantic_runs_per_second`,
from the token cache; the prompt's own rate when that is unknown).

No TensorFlow is imported on this path (`load_pipeline` reads checkpoints with Orbax).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from audiolm_jax import dsp, layouts
from audiolm_jax.layouts import BOS, EOS, NUM_SPECIALS, SEP, TokenLayout
from audiolm_jax.lm.transformer import Transformer, TransformerConfig
from audiolm_jax.sampling.lm import sample_tokens

log = logging.getLogger("audiolm_jax")

# AudioLM's sampling temperatures for the semantic, coarse and fine stages (arXiv:2209.03143,
# sec. 5; ../shared/PAPER.md).
TEMPERATURES = {"semantic": 0.6, "coarse": 0.8, "fine": 0.6}
STAGE_DIRS = ("semantic", "coarse", "fine")
PIPELINE_FILE = "pipeline.json"


class PipelineMismatchError(ValueError):
    """Parts of a pipeline that cannot work together (rates, levels, vocabularies)."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One trained stage LM: its Transformer config and params, and `context`, the longest
    token sequence it reads (its training `seq_len` + 1: inputs plus the last target)."""

    name: str
    cfg: TransformerConfig
    params: Any
    context: int
    workdir: str = ""
    step: int = 0


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Everything `sample` and `score` need. Build with `load_pipeline` (from workdirs) or
    directly from parts (`codec.Codec`, `semantic.Tokenizer`, a `TokenLayout`, `Stage`s);
    `check()` runs either way."""

    codec: Any
    tokenizer: Any
    layout: TokenLayout
    semantic: Stage
    coarse: Stage
    fine: Stage | None = None
    semantic_runs_per_second: float | None = None

    def __post_init__(self):
        self.check()

    @property
    def sample_rate(self) -> int:
        """The rate of the audio `sample` returns (the codec's)."""
        return int(self.codec.sample_rate)

    @property
    def stages(self) -> dict[str, Stage]:
        out = {"semantic": self.semantic, "coarse": self.coarse}
        if self.fine is not None:
            out["fine"] = self.fine
        return out

    def check(self) -> None:
        """Raises PipelineMismatchError naming the first disagreement between the parts."""
        lay, c, t = self.layout, self.codec, self.tokenizer
        problems = []
        if c.cfg.codebook_size != lay.codebook_size:
            problems.append(
                f"the codec has {c.cfg.codebook_size} codes per level, the stages were trained "
                f"on {lay.codebook_size}"
            )
        if c.levels < lay.acoustic_levels:
            problems.append(
                f"the codec has {c.levels} levels, the stages model {lay.acoustic_levels}"
            )
        if abs(c.cfg.frame_rate - lay.acoustic_rate_hz) > 1e-6:
            problems.append(
                f"the codec runs at {c.cfg.frame_rate:g} frames/s, the stages at "
                f"{lay.acoustic_rate_hz:g}"
            )
        if t.vocab_size != lay.semantic_vocab:
            problems.append(
                f"the semantic tokenizer has K={t.vocab_size} ids, the stages were trained on "
                f"{lay.semantic_vocab}"
            )
        if abs(t.frame_rate - lay.semantic_rate_hz) > 1e-6:
            problems.append(
                f"the semantic tokenizer runs at {t.frame_rate:g} ids/s, the stages at "
                f"{lay.semantic_rate_hz:g}"
            )
        if lay.has_fine_stage and self.fine is None:
            problems.append("the layout has a fine stage but no fine stage LM was given")
        if not lay.has_fine_stage and self.fine is not None:
            problems.append("the layout has no fine stage (has_fine_stage=False) but one was given")
        for name, stage in self.stages.items():
            if name == "fine" and not lay.has_fine_stage:
                continue
            if stage.cfg.vocab_size < lay.vocab_size(name):
                problems.append(
                    f"the {name} stage's vocabulary ({stage.cfg.vocab_size}) is smaller than the "
                    f"layout's {lay.vocab_size(name)} ids"
                )
        if lay.has_fine_stage and self.fine and self.fine.context < lay.max_length("fine"):
            problems.append(
                f"the fine stage reads {self.fine.context} tokens; a {lay.fine_chunk_seconds:g} "
                f"s chunk needs {lay.max_length('fine')}"
            )
        aligned = lay.coarse_semantic == "aligned"
        if aligned != self.coarse.cfg.cond_embed:
            problems.append(
                f"the layout's coarse_semantic is {lay.coarse_semantic!r} but the coarse stage "
                f"{'has no' if aligned else 'has a'} conditioning embedding (lm.cond_embed)"
            )
        min_coarse = 3 + lay.coarse_levels
        if self.coarse.context < min_coarse:
            problems.append(f"the coarse stage's context {self.coarse.context} is too short")
        if problems:
            raise PipelineMismatchError("pipeline parts disagree: " + "; ".join(problems))


class Tokens(NamedTuple):
    """What `sample(..., return_tokens=True)` generated, prompt included: semantic ids
    [batch, m] (de-duplicated, as the stages see them), codes [batch, frames, Q], and how many
    of each came from the prompt."""

    semantic: np.ndarray
    codes: np.ndarray
    prompt_semantic: int
    prompt_frames: int


# ---- loading -------------------------------------------------------------------------------


def _stage_from_workdir(workdir: str, expect: str, step: int | None = None):
    """(Stage, resolved data info) of a stage LM trained on the token cache in `workdir`."""
    import flax.linen as nn

    from audiolm_jax.train.checkpoint import read_trained

    step, state, config = read_trained(workdir, "lm", "a stage LM", step)
    d = config.data
    if d.get("source") != "cache" or "resolved" not in d:
        raise PipelineMismatchError(
            f"{workdir} is a stage LM trained on {d.get('source')!r} tokens, not on a token "
            "cache (config.data.source='cache'): it has no layout to sample audio with"
        )
    if d.stage != expect:
        raise PipelineMismatchError(f"{workdir} holds the {d.stage} stage, not the {expect} stage")
    cfg = TransformerConfig.from_config(config.lm)
    params = nn.unbox(state["params"]["model"])
    stage = Stage(expect, cfg, params, int(d.seq_len) + 1, os.path.abspath(workdir), int(step))
    return stage, d.resolved.to_dict()


def _checkpoint_workdir(path: str | None) -> str | None:
    """`<workdir>/checkpoints/<step>` (as a token cache manifest records it) -> workdir."""
    if not path:
        return None
    path = os.path.normpath(path)
    if os.path.basename(os.path.dirname(path)) == "checkpoints":
        return os.path.dirname(os.path.dirname(path))
    return path


def load_pipeline(
    path: str | None = None,
    *,
    semantic: str | None = None,
    coarse: str | None = None,
    fine: str | None = None,
    codec: str | None = None,
    tokenizer: str | None = None,
) -> Pipeline:
    """Assembles a Pipeline from workdirs, newest checkpoints.

    `path`: a folder with `pipeline.json` ({"codec", "tokenizer", "semantic", "coarse",
    "fine"}: workdirs, relative to the file or absolute; the quickstart writes one) or with
    subfolders `semantic/`, `coarse/`, `fine/` (and `codec/`, `tokenizer/`). Keyword
    arguments override single parts. The codec and tokenizer default to the checkpoints that
    wrote the stages' token cache (recorded in the stage checkpoints). Refuses parts that
    disagree, naming the mismatch: stage kinds, layouts, rates, levels, vocabularies.
    """
    from audiolm_jax import codec as codec_lib
    from audiolm_jax import semantic as semantic_lib

    parts: dict[str, str | None] = {}
    if path is not None:
        spec = os.path.join(path, PIPELINE_FILE)
        if os.path.isfile(spec):
            with open(spec) as f:
                listed = json.load(f)
            unknown = set(listed) - {"codec", "tokenizer", *STAGE_DIRS}
            if unknown:
                raise ValueError(f"{spec}: unknown parts {sorted(unknown)}")
            parts = {k: v and os.path.join(path, v) for k, v in listed.items()}
        elif os.path.isdir(path):
            for name in ("codec", "tokenizer", *STAGE_DIRS):
                if os.path.isdir(os.path.join(path, name)):
                    parts[name] = os.path.join(path, name)
        else:
            raise FileNotFoundError(f"no pipeline at {path}")
    given = dict(semantic=semantic, coarse=coarse, fine=fine, codec=codec, tokenizer=tokenizer)
    parts.update({k: v for k, v in given.items() if v})
    for name in ("semantic", "coarse"):
        if not parts.get(name):
            raise ValueError(
                f"no {name} stage: pass {name}=WORKDIR or a path with {PIPELINE_FILE} or a "
                f"{name}/ folder"
            )

    stages, infos = {}, {}
    for name in STAGE_DIRS:
        if parts.get(name):
            stages[name], infos[name] = _stage_from_workdir(parts[name], name)
    layouts_seen = {n: TokenLayout(**i["layout"]) for n, i in infos.items()}
    # Only the coarse stage's sequences depend on coarse_semantic: the others may differ there.
    how = layouts_seen["coarse"].coarse_semantic
    layouts_seen = {n: dataclasses.replace(v, coarse_semantic=how) for n, v in layouts_seen.items()}
    layout = layouts_seen["semantic"]
    for name, lay in layouts_seen.items():
        if lay != layout:
            diff = {
                f.name: (getattr(layout, f.name), getattr(lay, f.name))
                for f in dataclasses.fields(lay)
                if getattr(layout, f.name) != getattr(lay, f.name)
            }
            raise PipelineMismatchError(
                f"the {name} stage was trained on another token layout than the semantic "
                f"stage: (semantic, {name}) = {diff}"
            )
    recorded = infos["semantic"]["tokenizers"]
    codec_dir = parts.get("codec") or _checkpoint_workdir(recorded["acoustic"].get("checkpoint"))
    tok_dir = parts.get("tokenizer") or _checkpoint_workdir(recorded["semantic"].get("checkpoint"))
    if not codec_dir or not tok_dir:
        raise ValueError("pass codec=WORKDIR and tokenizer=WORKDIR: the stages do not name them")
    runs = [i.get("semantic_runs_per_second") for i in infos.values()]
    pipe = Pipeline(
        codec=codec_lib.load(codec_dir),
        tokenizer=semantic_lib.load(tok_dir),
        layout=layout,
        semantic=stages["semantic"],
        coarse=stages["coarse"],
        fine=stages.get("fine"),
        semantic_runs_per_second=next((r for r in runs if r), None),
    )
    log.info(
        "Pipeline: codec %s, tokenizer %s, stages %s",
        codec_dir,
        tok_dir,
        ", ".join(f"{n} {s.workdir} (step {s.step})" for n, s in pipe.stages.items()),
    )
    return pipe


# ---- prompts -------------------------------------------------------------------------------


def tokenize_prompt(
    pipe: Pipeline, wav: Any, sample_rate: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A prompt [samples] -> (semantic ids [s], run lengths [s'] of the de-duplicated ids,
    codes [frames, Q]), both tokenizers run on the same audio, cut to the longest span that is
    a whole number of crop units (`TokenLayout.crop_unit`) so the two streams cover the same
    time. Any prompt rate is resampled to each tokenizer's."""
    from audiolm_jax import codec as codec_lib
    from audiolm_jax import semantic as semantic_lib

    wav = np.asarray(wav, np.float32)
    if wav.ndim != 1:
        raise ValueError(f"a prompt is one waveform [samples], got shape {wav.shape}")
    rate = int(sample_rate or pipe.sample_rate)
    lay = pipe.layout
    a, b = lay.crop_unit
    unit_s = a / lay.semantic_rate_hz
    units = int(len(wav) / rate / unit_s + 1e-6)
    if units < 1:
        raise ValueError(
            f"the prompt is {len(wav) / rate:.3f} s; it must hold at least {unit_s:g} s "
            "(one semantic id and its acoustic frames)"
        )
    wav = wav[: int(round(units * unit_s * rate))]

    def at(target: int) -> np.ndarray:
        return wav if target == rate else dsp.resample(wav, rate, target)

    ids = np.asarray(semantic_lib.encode(pipe.tokenizer, at(pipe.tokenizer.sample_rate)))[0]
    codes = np.asarray(
        codec_lib.encode(pipe.codec, at(pipe.codec.sample_rate), levels=lay.acoustic_levels)
    )[0]
    ids, codes = ids[: units * a], codes[: units * b]
    return ids, layouts.dedup(ids)[1], codes


# ---- the stages ----------------------------------------------------------------------------


def _options(value: Any, stage: str, default: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(stage, default)
    return default if value is None else value


def _continue(
    stage: Stage,
    buf: np.ndarray,
    table: jax.Array,
    start: int,
    stop: int,
    rng: jax.Array,
    temperature: float,
    top_k: int,
    top_p: float,
    cond: np.ndarray | None = None,
) -> np.ndarray:
    """Tokens start .. stop - 1 of `buf` [rows, context], sampled after its first `start` (one
    compilation per stage and row count: lengths and the mask table are traced); `cond`
    [rows, context]: the conditioning ids of a `cond_embed` stage."""
    tokens = sample_tokens(
        stage.cfg,
        stage.params,
        jnp.asarray(buf),
        max_len=buf.shape[1],
        rng=rng,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        valid_table=table,
        prompt_len=start,
        stop_len=stop,
        cond=None if cond is None else jnp.asarray(cond),
    )
    return np.asarray(tokens)[:, start:stop]


def _semantic_windows(
    pipe: Pipeline,
    history: np.ndarray,
    count: int,
    rng: jax.Array,
    temperature: float,
    top_k: int,
    top_p: float,
) -> np.ndarray:
    """history [batch, h] de-duplicated semantic ids (h may be 0) -> [batch, h + count]."""
    stage, lay = pipe.semantic, pipe.layout
    n = stage.context
    batch = history.shape[0]
    table = jnp.asarray(lay.valid_ids_table("semantic", n))
    table = table.at[:, EOS].set(False)  # the length is ours to choose
    out = history
    window = 0
    while out.shape[1] < history.shape[1] + count:
        remaining = history.shape[1] + count - out.shape[1]
        gen = min(remaining, max(n - 1 - out.shape[1], (n - 1) // 2))
        tail = out[:, max(0, out.shape[1] - (n - 1 - gen)) :]
        buf = np.zeros((batch, n), np.int32)
        buf[:, 0] = BOS
        buf[:, 1 : 1 + tail.shape[1]] = tail + NUM_SPECIALS
        p = 1 + tail.shape[1]
        opts = (temperature, top_k, top_p)
        new = _continue(stage, buf, table, p, p + gen, jax.random.fold_in(rng, window), *opts)
        new = new - NUM_SPECIALS
        out = np.concatenate([out, new.astype(np.int32)], axis=1)
        window += 1
    return out


def _coarse_windows(
    pipe: Pipeline,
    semantic: np.ndarray,
    times: np.ndarray,
    codes: np.ndarray,
    frames: int,
    rng: jax.Array,
    temperature: float,
    top_k: int,
    top_p: float,
) -> np.ndarray:
    """semantic [batch, m] de-duplicated ids starting at `times` [m] seconds; codes
    [batch, g, Q'] prompt frames -> [batch, frames, Q'] (see the module docstring)."""
    stage, lay = pipe.coarse, pipe.layout
    n, qc = stage.context, lay.coarse_levels
    crop = lay.coarse_crop_frames
    aligned = lay.coarse_semantic == "aligned"
    if aligned:
        # Every frame's id, as the stage was trained: id k covers [k, k + 1) / rate seconds.
        a, b = lay.crop_unit
        frame_times = np.arange(-(-frames * a // b)) / lay.semantic_rate_hz
        which = np.maximum(np.searchsorted(times, frame_times + 1e-9, "right") - 1, 0)
        per_frame = semantic[:, which]
    out = codes
    window = 0
    while out.shape[1] < frames:
        g = out.shape[1]
        w0 = max(0, g - crop // 2)
        w1 = min(w0 + crop, frames)
        if aligned:
            # Start on the crop grid, as training crops do, so ids and frames line up.
            w0 = w0 // b * b
            w1 = min(w0 + crop, frames)
            sem = per_frame[:, w0 * a // b : -(-w1 * a // b)]
            if 2 + sem.shape[1] + (w1 - w0) * qc > n:
                raise ValueError(
                    f"the coarse stage's context ({n} tokens) cannot hold a "
                    f"{lay.coarse_crop_seconds:g} s window ({sem.shape[1]} ids and {w1 - w0} "
                    "frames); train it with data.seq_len >= layout.max_length('coarse') - 1"
                )
        else:
            while True:
                t0, t1 = w0 / lay.acoustic_rate_hz, w1 / lay.acoustic_rate_hz
                i0 = max(int(np.searchsorted(times, t0, "right")) - 1, 0)
                i1 = max(int(np.searchsorted(times, t1, "left")), i0 + 1)
                fit = (n - 2 - (i1 - i0)) // qc  # frames the context holds beside these ids
                if fit >= w1 - w0:
                    break
                # Denser semantic ids than in training: a shorter window, keeping >= 1 new frame.
                if w0 + fit > g:
                    w1 = w0 + fit
                elif w0 < g:
                    w0 = min(g, w0 + (w1 - w0 - fit))
                else:
                    raise ValueError(
                        f"the coarse stage's context ({n} tokens) cannot hold {i1 - i0} "
                        "semantic ids and one frame; train it with a longer data.seq_len"
                    )
            sem = semantic[:, i0:i1]
        buf, p, start = _coarse_buffer(lay, n, sem, out[:, w0:g])
        table = jnp.asarray(lay.valid_ids_table("coarse", n, start)).at[:, EOS].set(False)
        cond = np.asarray(lay.coarse_conditioning(buf)) if aligned else None
        key = jax.random.fold_in(rng, window)
        new = _continue(
            stage, buf, table, p, p + (w1 - g) * qc, key, temperature, top_k, top_p, cond
        )
        new_codes = lay.tokens_to_codes("coarse", new, 0, qc).astype(np.int32)
        out = np.concatenate([out, new_codes], axis=1)
        window += 1
    return out


def _coarse_buffer(lay: TokenLayout, n: int, sem: np.ndarray, known: np.ndarray):
    """A coarse window's token buffer [batch, n]: BOS, the semantic ids sem [batch, m], SEP,
    then the frames known [batch, g, Q'] so far; returns (buffer, tokens in it, the position
    of the first acoustic token)."""
    m = sem.shape[1]
    buf = np.zeros((sem.shape[0], n), np.int32)
    buf[:, 0] = BOS
    buf[:, 1 : 1 + m] = sem + NUM_SPECIALS
    buf[:, 1 + m] = SEP
    known = lay.codes_to_tokens("coarse", known)
    p = 2 + m + known.shape[1]
    buf[:, 2 + m : p] = known
    return buf, p, lay.generation_start("coarse", m)


def _fine_chunks(
    pipe: Pipeline,
    coarse: np.ndarray,
    rng: jax.Array,
    temperature: float,
    top_k: int,
    top_p: float,
) -> np.ndarray:
    """coarse [batch, f, Q'] -> fine levels [batch, f, Q - Q'], chunk by chunk (all full
    chunks of every row in one batch, a last partial chunk in a second call of the same
    compiled loop)."""
    stage, lay = pipe.fine, pipe.layout
    batch, f, qc = coarse.shape
    c, qf = lay.fine_chunk_frames, lay.fine_levels
    n = lay.max_length("fine")
    out = np.zeros((batch, f, qf), np.int32)
    groups = [(s, min(c, f - s)) for s in range(0, f, c)]
    for k in sorted({size for _, size in groups}, reverse=True):
        starts = [s for s, size in groups if size == k]
        rows = [lay.fine_prompt(coarse[b, s : s + k]) for b in range(batch) for s in starts]
        buf = np.zeros((len(rows), n), np.int32)
        buf[:, : rows[0].size] = np.stack(rows)
        p = rows[0].size
        table = jnp.asarray(lay.valid_ids_table("fine", n, p))
        key = jax.random.fold_in(rng, k)
        new = _continue(stage, buf, table, p, p + k * qf, key, temperature, top_k, top_p)
        fine = lay.tokens_to_codes("fine", new).reshape(batch, len(starts), k, qf)
        for j, s in enumerate(starts):
            out[:, s : s + k] = fine[:, j]
    return out


# ---- sample --------------------------------------------------------------------------------


def sample(
    pipe: Pipeline,
    prompt: Any = None,
    *,
    seconds: float,
    rng: jax.Array,
    prompt_sample_rate: int | None = None,
    batch_size: int = 1,
    temperature: float | Mapping[str, float] | None = None,
    top_k: int | Mapping[str, int] | None = None,
    top_p: float | Mapping[str, float] | None = None,
    semantic_ids: Any = None,
    return_tokens: bool = False,
    matmul_dtype: str | None = None,
):
    """`seconds` of new audio from `pipe`: a continuation of `prompt` or, without one,
    unconditional generation. Returns float32 audio [batch_size, round(seconds * rate)] at
    `pipe.sample_rate` (and `Tokens` with return_tokens=True).

    Args:
      prompt: one waveform [samples] (any rate: `prompt_sample_rate`, default the codec's),
        continued batch_size times. It is tokenized by both tokenizers; the stages keep its
        tokens verbatim and generate after them; the returned audio starts where it ends.
      seconds: length of the new audio; may exceed the stages' training context (sliding
        windows, see the module docstring).
      rng: a `jax.random` key; the same key gives the same audio.
      temperature, top_k, top_p: one value for all stages or {stage: value}; defaults: the
        paper's temperatures (TEMPERATURES), no top-k, no nucleus.
      semantic_ids: [batch_size, count] (or [count]) de-duplicated semantic ids for the new
        seconds, used instead of sampling stage 1: audio for given semantic content (and the
        "shuffled semantic tokens" control of the piano test).
      matmul_dtype: "bfloat16" runs every stage's Dense matmuls on bf16 copies of the
        kernels (`TransformerConfig.matmul_dtype`; attention, KV cache and sampling stay in
        the stage's dtype): on a CPU with AMX the 6 x 512 LM sampled 1.7-1.8x faster at batch 8
        (BENCHMARKS.md, LM sampling); logits move by bf16 rounding. None: as trained.
    """
    if matmul_dtype is not None:
        pipe = dataclasses.replace(
            pipe,
            **{
                name: dataclasses.replace(
                    st, cfg=dataclasses.replace(st.cfg, matmul_dtype=matmul_dtype)
                )
                for name in STAGE_DIRS
                if (st := getattr(pipe, name)) is not None
            },
        )
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lay = pipe.layout
    t0 = time.perf_counter()
    keys = {s: jax.random.fold_in(rng, i) for i, s in enumerate(STAGE_DIRS)}
    opts = {
        s: (
            float(_options(temperature, s, TEMPERATURES[s])),
            int(_options(top_k, s, 0)),
            float(_options(top_p, s, 1.0)),
        )
        for s in STAGE_DIRS
    }
    new_frames = int(np.ceil(seconds * lay.acoustic_rate_hz - 1e-6))
    if prompt is not None:
        ids, runs, codes = tokenize_prompt(pipe, prompt, prompt_sample_rate)
        unique = layouts.dedup(ids)[0]
        starts = np.concatenate([[0], np.cumsum(runs)[:-1]]) / lay.semantic_rate_hz
        prompt_seconds = len(ids) / lay.semantic_rate_hz
    else:
        unique = np.zeros((0,), np.int32)
        codes = np.zeros((0, lay.acoustic_levels), np.int32)
        starts = np.zeros((0,))
        prompt_seconds = 0.0
    rate = pipe.semantic_runs_per_second
    if not rate:
        rate = len(unique) / prompt_seconds if len(unique) else lay.semantic_rate_hz / 2
    count = max(1, int(round(seconds * rate)))
    if semantic_ids is not None:
        given = np.asarray(semantic_ids, np.int32)
        given = np.broadcast_to(given, (batch_size, given.shape[-1]))
        if given.size and (given.min() < 0 or given.max() >= lay.semantic_vocab):
            raise ValueError(f"semantic_ids must lie in [0, {lay.semantic_vocab})")
        count = given.shape[1]
    times = np.concatenate([starts, prompt_seconds + np.arange(count) * seconds / count])

    # Stage 1: semantic ids.
    history = np.broadcast_to(unique, (batch_size, len(unique))).astype(np.int32)
    if semantic_ids is None:
        semantic = _semantic_windows(pipe, history, count, keys["semantic"], *opts["semantic"])
    else:
        semantic = np.concatenate([history, given], axis=1)
    t1 = time.perf_counter()
    # Stage 2: coarse codes (every level when there is no fine stage).
    f_p = codes.shape[0]
    prompt_codes = np.broadcast_to(codes, (batch_size, *codes.shape))
    coarse = _coarse_windows(
        pipe,
        semantic,
        times,
        prompt_codes[..., : lay.coarse_levels],
        f_p + new_frames,
        keys["coarse"],
        *opts["coarse"],
    )
    t2 = time.perf_counter()
    # Stage 3: fine codes of the new frames; the prompt keeps its own.
    if lay.has_fine_stage:
        fine = _fine_chunks(pipe, coarse[:, f_p:], keys["fine"], *opts["fine"])
        all_codes = np.concatenate(
            [prompt_codes, np.concatenate([coarse[:, f_p:], fine], axis=2)], axis=1
        )
    else:
        all_codes = coarse
    t3 = time.perf_counter()
    from audiolm_jax import codec as codec_lib

    audio = np.asarray(codec_lib.decode(pipe.codec, jnp.asarray(all_codes)))
    hop = pipe.codec.hop
    n_out = int(round(seconds * pipe.sample_rate))
    audio = audio[:, f_p * hop : f_p * hop + n_out]
    t4 = time.perf_counter()
    log.info(
        "Sampled %d x %.2f s (prompt %.2f s): semantic %d ids %.2f s, coarse %d frames %.2f s, "
        "fine %.2f s, decode %.2f s",
        batch_size,
        seconds,
        prompt_seconds,
        count,
        t1 - t0,
        new_frames,
        t2 - t1,
        t3 - t2,
        t4 - t3,
    )
    if return_tokens:
        return audio, Tokens(semantic, all_codes, len(unique), f_p)
    return audio


# ---- score ---------------------------------------------------------------------------------


def token_groups(layout: layouts.TokenLayout, stage: str, targets: np.ndarray) -> np.ndarray:
    """What each target token is, for per-level losses: "semantic", "eos", "level_<q>" (the
    RVQ level that owns an acoustic id), "special" otherwise."""
    t = np.asarray(targets)
    out = np.full(t.shape, "special", dtype=object)
    out[t == layouts.EOS] = "eos"
    k_s = layout.semantic_vocab
    if stage in ("semantic", "coarse"):
        out[(t >= layouts.NUM_SPECIALS) & (t < layouts.NUM_SPECIALS + k_s)] = "semantic"
    if stage != "semantic":
        base = layout.acoustic_offset(stage, 0)
        acoustic = t >= base
        levels = (t[acoustic] - base) // layout.codebook_size
        out[acoustic] = np.char.add("level_", levels.astype(str)).astype(object)
    return out


def _stage_nll(
    stage: Stage, rows: list[tuple[np.ndarray, np.ndarray]], layout: layouts.TokenLayout
) -> tuple[float, int, dict[str, float]]:
    """Summed NLL (nats) of the loss-masked tokens of `rows` [(tokens, mask)], each cut to the
    stage's context and padded to it (one compilation per stage), its token count, and the
    mean NLL per token group (`token_groups`: per RVQ level, semantic ids, EOS)."""
    n = stage.context
    tokens = np.zeros((len(rows), n), np.int32)
    mask = np.zeros((len(rows), n), np.float32)
    for i, (t, m) in enumerate(rows):
        t, m = t[:n], m[:n]
        tokens[i, : t.size], mask[i, : m.size] = t, m
    cond = None
    if stage.cfg.cond_embed:
        cond = jnp.asarray(layout.coarse_conditioning(tokens[:, :-1]))
    nll = np.asarray(
        _score_rows(stage.cfg, stage.params, jnp.asarray(tokens), jnp.asarray(mask), cond)
    )
    weights = mask[:, 1:]
    groups = token_groups(layout, stage.name, tokens[:, 1:])
    per_group = {}
    for g in sorted(set(groups[weights > 0].tolist())):
        sel = (groups == g) & (weights > 0)
        per_group[g] = float(nll[sel].sum() / sel.sum())
    return float((nll * weights).sum()), int(weights.sum()), per_group


@functools.partial(jax.jit, static_argnums=0)
def _score_rows(
    cfg: TransformerConfig,
    params: Any,
    tokens: jax.Array,
    mask: jax.Array,
    cond: jax.Array | None = None,
):
    """NLL of each of tokens[:, 1:] given the tokens before, zero where mask[:, 1:] is; cond
    [rows, length - 1]: the conditioning ids of a `cond_embed` stage's inputs."""
    logits = Transformer(cfg).apply({"params": params}, tokens[:, :-1], cond=cond)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return nll * mask[:, 1:]


def score(pipe: Pipeline, wav: Any, *, sample_rate: int | None = None) -> dict[str, dict]:
    """Per-stage negative log-likelihood of audio under the pipeline: the building block of
    sWUGGY / sBLIMP-style evaluations (compare the scores of a real and a fake word).

    The audio is tokenized as `sample` tokenizes a prompt; each stage scores its training
    layout over consecutive windows of its context: semantic crops of the de-duplicated ids,
    coarse aligned crops of `coarse_crop_seconds` (EOS scored after the last), fine chunks.
    Returns {stage: {"nll": nats, "tokens": scored tokens, "nats_per_token": nll / tokens,
    "per_level": {"level_<q>" | "semantic" | "eos": mean nats per token of that kind}}}.
    """
    lay = pipe.layout
    ids, _, codes = tokenize_prompt(pipe, wav, sample_rate)
    unique = layouts.dedup(ids)[0]
    rows: dict[str, list] = {"semantic": [], "coarse": [], "fine": []}
    per = pipe.semantic.context - 2
    for s in range(0, len(unique), per):
        seq = lay.semantic_sequence(unique[s : s + per], add_eos=False)
        rows["semantic"].append((seq.tokens, seq.loss_mask))
    a, b = lay.crop_unit
    units = lay.crop_units(lay.coarse_crop_seconds)
    starts = list(range(0, min(len(ids) // a, len(codes) // b), units))
    for j, u in enumerate(starts):
        sem, cod = lay.aligned_crop(ids, codes, u, lay.coarse_crop_seconds)
        if not len(sem) or not len(cod):
            continue
        seq = lay.coarse_sequence(sem, cod, add_eos=j == len(starts) - 1)
        rows["coarse"].append((seq.tokens, seq.loss_mask))
    if lay.has_fine_stage:
        seq = lay.fine_sequence(codes)
        rows["fine"] = list(zip(seq.tokens, seq.loss_mask))
    out = {}
    for name, stage in pipe.stages.items():
        nll, n, per_level = _stage_nll(stage, rows[name], lay)
        out[name] = {
            "nll": nll,
            "tokens": n,
            "nats_per_token": nll / max(n, 1),
            "per_level": per_level,
        }
    return out
