"""The token layouts of AudioLM's three stages: one definition, read by data and sampling alike.

AudioLM (Borsos et al. 2022, arXiv:2209.03143, sec. 4) trains three decoder-only LMs over
semantic ids z (w2v-BERT k-means, K_s = 1024 at 25 Hz) and acoustic codes y (SoundStream RVQ,
Q = 12 levels of K_a = 1024 at 50 Hz, the first Q' = 4 "coarse"). The data pipeline writes the
sequences defined here and the sampler reads them back with the same functions, so the two
cannot drift apart by an offset. Rates, level counts and crop lengths all come from
`TokenLayout` (built from config); nothing below hard-codes them. The TF-graph twins of the
writers live in `audiolm_jax.data.tf_layouts`; this module never imports TensorFlow.

Id scheme. Every stage shares four special ids, then its own content ids, each group one
contiguous block; a stage's vocabulary is padded to a multiple of 128 (the padding ids are
never valid):

    0 PAD  right padding; never a target, never sampled
    1 BOS  first token of every sequence
    2 EOS  end of a sequence whose length the model decides (coarse; semantic if asked)
    3 SEP  between a stage's conditioning prefix and the tokens it generates

    stage     content ids after the 4 specials          paper sizes: real -> padded
    semantic  K_s semantic ids                          4 + 1024            = 1028  -> 1152
    coarse    K_s semantic ids, then Q' levels of K_a   4 + 1024 + 4 * 1024 = 5124  -> 5248
    fine      Q levels of K_a (levels < Q' are the      4 + 12 * 1024       = 12292 -> 12416
              prefix, levels >= Q' are generated)

Semantic id z has token 4 + z. Acoustic level q's code c has token `base + q * K_a + c`, with
base = 4 + K_s in the coarse stage and 4 in the fine stage, so each level owns the block
[offset_q, offset_q + K_a) and a sampler can restrict a position to its level's block.

Sequences (F frames; m semantic ids after de-duplication; k <= C frames per fine chunk):

    semantic  BOS z_1 .. z_m [EOS]                               loss on z (and EOS)
    coarse    BOS z_1 .. z_m SEP y_1^1 .. y_1^Q' .. y_F^Q' EOS   loss on y and EOS only
    fine      BOS y_1^1 .. y_k^Q' SEP y_1^Q'+1 .. y_k^Q  PAD..   loss on the fine y only

Stages 1 and 2 drop consecutive repeats of z (paper sec. 4.2); the run lengths come back so a
continuation can map de-duplicated ids to frames. With `coarse_semantic="aligned"` (an option,
not the paper's) the coarse prefix keeps every frame's z and the LM is also given, at each
acoustic position, the z under the frame it predicts (`TokenLayout.coarse_conditioning`).
Acoustic codes are flattened row-major over (frame, level). The fine stage works on
non-overlapping chunks of C = 3 s, each right-padded with PAD to 2 + C * Q tokens.
`loss_mask[i]` is True where `tokens[i]` is a target: the model predicts tokens[i] from
tokens[:i], so a trainer feeds tokens[:-1] and scores tokens[1:] with weights loss_mask[1:].

"start" below is the position of the first generated token: 1 (semantic), m + 2 (coarse),
k * Q' + 2 (fine); `generation_start` computes it.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PAD, BOS, EOS, SEP = 0, 1, 2, 3
NUM_SPECIALS = 4
VOCAB_MULTIPLE = 128
STAGES = ("semantic", "coarse", "fine")
COARSE_SEMANTIC = ("dedup", "aligned")


class Sequence(NamedTuple):
    """One stage's training sequence: tokens [length], loss_mask [length] (fine: [chunks, length])
    and, for the stages that de-duplicate, run_lengths [m] of each kept semantic id."""

    tokens: np.ndarray
    loss_mask: np.ndarray
    run_lengths: np.ndarray | None = None


def round_up(n: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """The smallest multiple of `multiple` that is >= n (vocab padding for the MXU)."""
    return -(-n // multiple) * multiple


def _xp(*arrays: Any):
    """jnp when any input is a jax array or tracer (inside jit), else numpy: one code path."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _count(seconds: float, rate_hz: float, what: str) -> int:
    n = seconds * rate_hz
    if abs(n - round(n)) > 1e-6 or round(n) <= 0:
        raise ValueError(
            f"{what}: {seconds} s at {rate_hz} Hz is {n} frames, not a positive whole number; "
            "pick a duration that is a whole number of frames"
        )
    return int(round(n))


def dedup(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drops consecutive repeats: ids [frames] -> (unique [m], run_lengths [m]).

    `undedup(unique, run_lengths)` gives ids back; run_lengths sums to frames.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"semantic ids must be 1-D [frames], got shape {ids.shape}")
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]])[: ids.size])
    run_lengths = np.diff(np.append(starts, ids.size)).astype(np.int32)
    return ids[starts], run_lengths


def undedup(unique: np.ndarray, run_lengths: np.ndarray) -> np.ndarray:
    """The inverse of `dedup`: (unique [m], run_lengths [m]) -> ids [sum(run_lengths)]."""
    return np.repeat(np.asarray(unique), np.asarray(run_lengths))


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Rates, level counts and crop lengths of the three stages; the layouts derive from these.

    Defaults are the paper's speech model (arXiv:2209.03143 sec. 4-5); `PRESETS` holds others.
    """

    semantic_vocab: int = 1024  # K_s, k-means clusters
    semantic_rate_hz: float = 25.0
    acoustic_levels: int = 12  # Q
    coarse_levels: int = 4  # Q'
    codebook_size: int = 1024  # K_a
    acoustic_rate_hz: float = 50.0
    fine_chunk_seconds: float = 3.0
    has_fine_stage: bool = True
    semantic_crop_seconds: float = 30.0
    coarse_crop_seconds: float = 10.0
    # How the coarse stage sees its semantic ids. "dedup" (the paper, sec. 4.2): consecutive
    # repeats dropped, the ids only as a prefix. "aligned" (our option, not the paper's): every
    # frame's id kept in the prefix, and each acoustic position is also given the id of the
    # frame it predicts (`coarse_conditioning`, added through the LM's `cond_embed`): with a
    # relative position bias the LM has no other way to find the id under a frame.
    coarse_semantic: str = "dedup"

    # Fields a config must state: rates and sizes differ per tokenizer, so a default would hide
    # a config that forgot one. The rest default to the paper.
    REQUIRED = (
        "semantic_vocab",
        "semantic_rate_hz",
        "acoustic_levels",
        "coarse_levels",
        "codebook_size",
        "acoustic_rate_hz",
    )

    def __post_init__(self):
        for name in ("semantic_vocab", "acoustic_levels", "coarse_levels", "codebook_size"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        q, qc = self.acoustic_levels, self.coarse_levels
        if self.has_fine_stage and not qc < q:
            raise ValueError(
                f"coarse_levels ({qc}) must be < acoustic_levels ({q}) when has_fine_stage; "
                "set has_fine_stage=False to model every level in the coarse stage"
            )
        if not self.has_fine_stage and qc != q:
            raise ValueError(
                f"without a fine stage coarse_levels ({qc}) must equal acoustic_levels ({q}), "
                "or levels above coarse_levels would never be modelled"
            )
        if self.coarse_semantic not in COARSE_SEMANTIC:
            raise ValueError(
                f"coarse_semantic must be one of {COARSE_SEMANTIC}, got {self.coarse_semantic!r}"
            )
        # Touch every derived length so a bad rate/duration fails here, not mid-epoch.
        _ = (self.semantic_crop_tokens, self.coarse_crop_frames, self.coarse_crop_semantic)
        _ = (self.fine_chunk_frames, self.crop_unit)

    # ---- construction ----
    @classmethod
    def from_config(cls, cfg: Any) -> TokenLayout:
        """From a ConfigDict (or any object with these attributes); unknown attributes ignored."""
        missing = [n for n in cls.REQUIRED if not hasattr(cfg, n)]
        if missing:
            raise ValueError(f"layout config lacks {missing}; see TokenLayout.PRESETS for examples")
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})

    @classmethod
    def preset(cls, name: str) -> TokenLayout:
        """One of PRESETS: 'paper', 'hubert', 'encodec', 'piano'."""
        if name not in PRESETS:
            raise ValueError(f"unknown layout preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]

    def to_config(self):
        """The fields as an ml_collections.ConfigDict, for embedding in a run config."""
        import ml_collections

        return ml_collections.ConfigDict(dataclasses.asdict(self))

    # ---- sizes ----
    @property
    def fine_levels(self) -> int:
        """Q - Q': levels the fine stage generates (0 without a fine stage)."""
        return self.acoustic_levels - self.coarse_levels

    @property
    def semantic_crop_tokens(self) -> int:
        """Semantic ids in a stage-1 crop before de-duplication (paper: 30 s -> 750)."""
        return _count(self.semantic_crop_seconds, self.semantic_rate_hz, "semantic_crop_seconds")

    @property
    def coarse_crop_frames(self) -> int:
        """Acoustic frames in a stage-2 crop (paper: 10 s -> 500 frames, 2000 tokens)."""
        return _count(self.coarse_crop_seconds, self.acoustic_rate_hz, "coarse_crop_seconds")

    @property
    def coarse_crop_semantic(self) -> int:
        """Semantic ids in a stage-2 crop before de-duplication (paper: 10 s -> 250)."""
        return _count(self.coarse_crop_seconds, self.semantic_rate_hz, "coarse_crop_seconds")

    @property
    def fine_chunk_frames(self) -> int:
        """C, acoustic frames per fine chunk (paper: 3 s -> 150 frames)."""
        return _count(self.fine_chunk_seconds, self.acoustic_rate_hz, "fine_chunk_seconds")

    @property
    def crop_unit(self) -> tuple[int, int]:
        """(semantic ids, acoustic frames) in the shortest span both rates divide evenly.

        A crop that starts and ends on this grid covers the same audio in both streams:
        (1, 2) for 25/50 Hz, (2, 3) for 50/75 Hz.
        """
        rs = fractions.Fraction(self.semantic_rate_hz).limit_denominator(1000)
        ra = fractions.Fraction(self.acoustic_rate_hz).limit_denominator(1000)
        g = fractions.Fraction(
            math.gcd(rs.numerator * ra.denominator, ra.numerator * rs.denominator),
            rs.denominator * ra.denominator,
        )
        return int(rs / g), int(ra / g)

    def _check_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
        if stage == "fine" and not self.has_fine_stage:
            raise ValueError("this layout has no fine stage (has_fine_stage=False)")

    def vocab_size(self, stage: str) -> int:
        """Ids a stage uses: specials + its content ids (see the module docstring)."""
        self._check_stage(stage)
        k_s, k_a = self.semantic_vocab, self.codebook_size
        return (
            NUM_SPECIALS
            + {
                "semantic": k_s,
                "coarse": k_s + self.coarse_levels * k_a,
                "fine": self.acoustic_levels * k_a,
            }[stage]
        )

    def padded_vocab_size(self, stage: str) -> int:
        """`vocab_size(stage)` rounded up to a multiple of 128: the LM's embedding rows."""
        return round_up(self.vocab_size(stage))

    def max_length(self, stage: str) -> int:
        """Tokens in the longest training sequence of a stage (a crop with no repeats, + EOS)."""
        self._check_stage(stage)
        if stage == "semantic":
            return 2 + self.semantic_crop_tokens
        if stage == "coarse":
            return 3 + self.coarse_crop_semantic + self.coarse_crop_frames * self.coarse_levels
        return 2 + self.fine_chunk_frames * self.acoustic_levels

    def acoustic_offset(self, stage: str, level):
        """First id of acoustic `level` (int or int array) in a 'coarse' or 'fine' stage."""
        self._check_stage(stage)
        if stage == "semantic":
            raise ValueError("the semantic stage has no acoustic ids")
        base = NUM_SPECIALS + (self.semantic_vocab if stage == "coarse" else 0)
        return base + level * self.codebook_size

    def generation_start(self, stage: str, prefix_len: int = 0) -> int:
        """Position of the first generated token, given the prefix: de-duplicated semantic ids
        (coarse) or coarse frames (fine); prefix_len is unused for the semantic stage."""
        self._check_stage(stage)
        if stage == "semantic":
            return 1
        return 2 + prefix_len * (1 if stage == "coarse" else self.coarse_levels)

    # ---- acoustic codes <-> tokens (numpy or jnp, jit-safe) ----
    def _stage_levels(self, stage: str) -> tuple[int, int]:
        return (
            (0, self.coarse_levels) if stage == "coarse" else (self.coarse_levels, self.fine_levels)
        )

    def codes_to_tokens(self, stage: str, codes, first_level: int | None = None):
        """codes: [..., frames, levels] -> tokens [..., frames * levels], row-major (frame, level).

        Levels are first_level .. first_level + levels - 1 (default: the stage's generated
        levels, 0 for coarse and Q' for fine). Works on numpy and jnp arrays, inside jit.
        """
        first = self._stage_levels(stage)[0] if first_level is None else first_level
        n = codes.shape[-1]
        tokens = codes + self.acoustic_offset(stage, np.arange(first, first + n))
        return tokens.reshape(*codes.shape[:-2], codes.shape[-2] * n)

    def tokens_to_codes(self, stage: str, tokens, first_level: int | None = None, levels=None):
        """tokens: [..., frames * levels] -> codes [..., frames, levels], the inverse of
        `codes_to_tokens` (defaults: the stage's generated levels). numpy or jnp, jit-safe."""
        first, n = self._stage_levels(stage)
        first = first if first_level is None else first_level
        n = n if levels is None else levels
        codes = tokens.reshape(*tokens.shape[:-1], tokens.shape[-1] // n, n)
        return codes - self.acoustic_offset(stage, np.arange(first, first + n))

    # ---- stage 1: semantic ----
    def _check_semantic(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= self.semantic_vocab)):
            raise ValueError(
                f"semantic ids must be [frames] in [0, {self.semantic_vocab}), got shape "
                f"{ids.shape}, range [{ids.min() if ids.size else '-'}, "
                f"{ids.max() if ids.size else '-'}]"
            )
        return ids.astype(np.int32)

    def semantic_sequence(self, semantic_ids: np.ndarray, add_eos: bool = False) -> Sequence:
        """Stage 1: semantic_ids [frames] -> BOS z_1..z_m [EOS], repeats dropped, loss on z/EOS.

        add_eos marks the end of an utterance; crops cut mid-utterance go without it.
        """
        unique, run_lengths = dedup(self._check_semantic(semantic_ids))
        parts = [[BOS], unique + NUM_SPECIALS] + [[EOS]] * add_eos
        tokens = np.concatenate(parts).astype(np.int32)
        return Sequence(tokens, np.arange(tokens.size) >= 1, run_lengths)

    def parse_semantic(self, tokens: np.ndarray) -> np.ndarray:
        """The inverse of stage 1: tokens [length] (from BOS, up to EOS/PAD) -> semantic ids [m]."""
        tokens = np.asarray(tokens)
        body = _until_end(tokens[_expect(tokens, 0, BOS, "BOS") :])
        self._expect_range(body, NUM_SPECIALS, self.semantic_vocab, 1, "semantic")
        return (body - NUM_SPECIALS).astype(np.int32)

    # ---- stage 2: coarse ----
    def _check_codes(self, codes, levels: int) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] < levels:
            raise ValueError(f"codes must be [frames, >= {levels} levels], got {codes.shape}")
        codes = codes[:, :levels]
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]"
            )
        return codes.astype(np.int32)

    def coarse_sequence(
        self, semantic_ids: np.ndarray, codes: np.ndarray, add_eos: bool = True
    ) -> Sequence:
        """Stage 2: (semantic_ids [s_frames], codes [frames, >= Q']) -> BOS z SEP y [EOS].

        Only the first Q' levels of codes are used; loss on the acoustic tokens and EOS.
        EOS tells the sampler that the acoustic tokens have caught up with the semantic prefix;
        a sampling prompt (semantic ids plus prompt frames) is built with add_eos=False.
        """
        unique, run_lengths = self.coarse_prefix(semantic_ids)
        acoustic = self.codes_to_tokens("coarse", self._check_codes(codes, self.coarse_levels))
        parts = [[BOS], unique + NUM_SPECIALS, [SEP], acoustic] + [[EOS]] * add_eos
        tokens = np.concatenate(parts).astype(np.int32)
        return Sequence(tokens, np.arange(tokens.size) >= 2 + unique.size, run_lengths)

    def coarse_prefix(self, semantic_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The coarse stage's semantic prefix: (ids [m], run_lengths [m]); repeats dropped
        unless coarse_semantic is "aligned" (then every frame's id, runs of 1)."""
        ids = self._check_semantic(semantic_ids)
        if self.coarse_semantic == "aligned":
            return ids, np.ones(ids.shape, np.int32)
        return dedup(ids)

    def coarse_conditioning(self, tokens, positions=None):
        """The "aligned" coarse stage's per-position conditioning (jnp or numpy, jit-safe).

        tokens [batch, length]: coarse LM inputs (BOS z_1..z_S SEP y.., possibly packed, with
        `positions` [batch, length] restarting at 0 on each example's BOS). Returns int32
        [batch, length]: at input position i, the token id (4 + z) of the semantic id whose
        time covers the frame of the token predicted there (tokens[i + 1]); PAD (0) in the
        prefix, and where that frame lies past the ids. Frame f of an aligned crop starts at
        semantic id floor(f * a / b) for crop_unit (a, b), as `aligned_crop` cuts them.
        """
        xp = _xp(tokens, positions)
        tokens = xp.asarray(tokens)
        length = tokens.shape[-1]
        idx = xp.arange(length, dtype=np.int32)
        if positions is None:
            positions = xp.broadcast_to(idx, tokens.shape)
        first = idx - xp.asarray(positions)  # where each position's example starts
        marks = xp.where(tokens == SEP, idx, -1)
        if xp is jnp:
            sep = jax.lax.cummax(marks, axis=marks.ndim - 1)
        else:
            sep = np.maximum.accumulate(marks, axis=-1)
        a, b = self.crop_unit
        frame = (idx - sep) // self.coarse_levels
        j = frame * a // b
        src = xp.clip(first + 1 + j, 0, length - 1)
        z = xp.take_along_axis(tokens, src.astype(np.int32), axis=-1)
        ok = (sep >= first) & (sep >= 0) & (first + 1 + j < sep)
        ok = ok & (z >= NUM_SPECIALS) & (z < NUM_SPECIALS + self.semantic_vocab)
        return xp.where(ok, z, PAD).astype(np.int32)

    def parse_coarse(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of stage 2: tokens [length] -> (semantic ids [m], codes [frames, Q']).

        Reads up to the first EOS/PAD after SEP; a trailing partial frame (generation stopped
        mid-frame) is dropped.
        """
        tokens = np.asarray(tokens)
        _expect(tokens, 0, BOS, "BOS")
        sep = _find(tokens, SEP, "SEP")
        semantic = tokens[1:sep]
        self._expect_range(semantic, NUM_SPECIALS, self.semantic_vocab, 1, "semantic")
        codes = self._parse_acoustic("coarse", tokens, sep + 1, 0, self.coarse_levels)
        return (semantic - NUM_SPECIALS).astype(np.int32), codes

    # ---- stage 3: fine ----
    def fine_sequence(self, codes: np.ndarray) -> Sequence:
        """Stage 3: codes [frames, Q] -> tokens, loss_mask [chunks, 2 + C * Q], one row per
        non-overlapping chunk of C frames (the last may be shorter and is right-padded):
        BOS coarse SEP fine PAD.., loss on the fine tokens only."""
        self._check_stage("fine")
        codes = self._check_codes(codes, self.acoustic_levels)
        c, qc = self.fine_chunk_frames, self.coarse_levels
        length = 2 + c * self.acoustic_levels
        chunks = [codes[i : i + c] for i in range(0, codes.shape[0], c)]
        tokens = np.full((len(chunks), length), PAD, np.int32)
        loss_mask = np.zeros((len(chunks), length), bool)
        for row, chunk in enumerate(chunks):
            seq = self.fine_prompt(chunk[:, :qc])
            fine = self.codes_to_tokens("fine", chunk[:, qc:])
            tokens[row, : seq.size + fine.size] = np.concatenate([seq, fine])
            loss_mask[row, seq.size : seq.size + fine.size] = True
        return Sequence(tokens, loss_mask)

    def fine_prompt(self, coarse_codes: np.ndarray) -> np.ndarray:
        """The fine stage's sampling prompt for one chunk: coarse_codes [k, Q'] -> BOS y SEP."""
        self._check_stage("fine")
        coarse = self.codes_to_tokens(
            "fine", self._check_codes(coarse_codes, self.coarse_levels), 0
        )
        return np.concatenate([[BOS], coarse, [SEP]]).astype(np.int32)

    def parse_fine(self, tokens: np.ndarray) -> np.ndarray:
        """The inverse of stage 3: tokens [chunks, length] (or [length]) -> codes [frames, Q].

        Chunks are concatenated in order; within a chunk, frames whose fine levels are
        incomplete (generation stopped early) are dropped.
        """
        self._check_stage("fine")
        rows = np.atleast_2d(np.asarray(tokens))
        qc, out = self.coarse_levels, []
        for row in rows:
            _expect(row, 0, BOS, "BOS")
            sep = _find(row, SEP, "SEP")
            if (sep - 1) % qc:
                raise ValueError(f"fine prefix has {sep - 1} tokens, not a multiple of Q'={qc}")
            self._expect_levels("fine", row[1:sep], 1, 0, qc)
            coarse = self.tokens_to_codes("fine", row[1:sep], 0, qc)
            fine = self._parse_acoustic("fine", row, sep + 1, qc, self.fine_levels)[: len(coarse)]
            out.append(np.concatenate([coarse[: len(fine)], fine], axis=1))
        return np.concatenate(out or [np.zeros((0, self.acoustic_levels))]).astype(np.int32)

    def _parse_acoustic(self, stage, tokens, begin, first_level, levels) -> np.ndarray:
        body = _until_end(tokens[begin:])
        body = body[: body.size - body.size % levels]
        self._expect_levels(stage, body, begin, first_level, levels)
        return self.tokens_to_codes(stage, body, first_level, levels).astype(np.int32)

    def _expect_levels(self, stage, body, begin, first_level, levels) -> None:
        level = first_level + np.arange(body.size) % levels
        lo = self.acoustic_offset(stage, level)
        bad = np.flatnonzero((body < lo) | (body >= lo + self.codebook_size))
        if bad.size:
            i = bad[0]
            raise ValueError(
                f"{stage} token {body[i]} at position {begin + i} is not a level-{level[i]} id "
                f"[{lo[i]}, {lo[i] + self.codebook_size})"
            )

    def _expect_range(self, body, lo, size, begin, what) -> None:
        bad = np.flatnonzero((body < lo) | (body >= lo + size))
        if bad.size:
            i = bad[0]
            raise ValueError(f"token {body[i]} at position {begin + i} is not a {what} id")

    # ---- sampling: which ids may come next ----
    def valid_ids(self, stage: str, position, start=None):
        """Bool mask [..., padded_vocab] of the ids the layout allows at `position` [...].

        position and start (see `generation_start`; ignored for semantic) may be numpy ints or
        traced jnp values inside a jitted sampler loop. An acoustic position admits exactly its
        level's K_a ids; EOS is also admitted where a sequence may end (any semantic position,
        coarse frame boundaries); fine positions past the chunk's last frame admit only PAD.
        """
        self._check_stage(stage)
        xp = _xp(position, start)
        p = xp.asarray(position)[..., None]
        ids = xp.arange(self.padded_vocab_size(stage))
        k_a, qc = self.codebook_size, self.coarse_levels

        def block(lo):
            return (ids >= lo) & (ids < lo + k_a)

        semantic = (ids >= NUM_SPECIALS) & (ids < NUM_SPECIALS + self.semantic_vocab)
        if stage == "semantic":
            return xp.where(p == 0, ids == BOS, semantic | ((ids == EOS) & (p >= 1)))
        s = xp.asarray(start)[..., None]
        if stage == "coarse":
            level = (p - s) % qc
            prefix = semantic
            generated = block(self.acoustic_offset("coarse", level)) | ((ids == EOS) & (level == 0))
        else:
            prefix = block(self.acoustic_offset("fine", (p - 1) % qc))
            fine = block(self.acoustic_offset("fine", qc + (p - s) % self.fine_levels))
            end = s + (s - 2) // qc * self.fine_levels
            generated = xp.where(p < end, fine, ids == PAD)
        return xp.where(
            p == 0,
            ids == BOS,
            xp.where(p < s - 1, prefix, xp.where(p == s - 1, ids == SEP, generated)),
        )

    def valid_ids_table(self, stage: str, length: int, start=None):
        """`valid_ids` for positions 0 .. length - 1: [length, padded_vocab] bool."""
        xp = _xp(start)
        return self.valid_ids(stage, xp.arange(length), start)

    # ---- crops that cover the same audio in both streams ----
    def crop_units(self, seconds: float) -> int:
        """Crop-grid units (see `crop_unit`) in `seconds`; errors if not a whole number."""
        a, _ = self.crop_unit
        return _count(seconds, self.semantic_rate_hz / a, "crop seconds")

    def num_crop_starts(self, semantic_frames: int, acoustic_frames: int, seconds: float) -> int:
        """How many grid-aligned start units give a full crop of `seconds` (at least 1: an
        utterance shorter than the crop is used whole from start 0)."""
        a, b = self.crop_unit
        units = min(semantic_frames // a, acoustic_frames // b)
        return max(1, units - self.crop_units(seconds) + 1)

    def aligned_crop(
        self, semantic_ids: np.ndarray, codes: np.ndarray, start_unit: int, seconds: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(semantic_ids [s], codes [frames, levels]) -> the same `seconds` of both, starting
        at grid unit start_unit (0 <= start_unit < num_crop_starts); shorter at the end."""
        a, b = self.crop_unit
        n = self.crop_units(seconds)
        return (
            np.asarray(semantic_ids)[start_unit * a : (start_unit + n) * a],
            np.asarray(codes)[start_unit * b : (start_unit + n) * b],
        )


def _expect(tokens: np.ndarray, pos: int, token: int, name: str) -> int:
    if tokens.ndim != 1 or tokens.size <= pos or tokens[pos] != token:
        got = tokens[pos] if tokens.ndim == 1 and tokens.size > pos else "nothing"
        raise ValueError(f"expected {name} ({token}) at position {pos}, got {got}")
    return pos + 1


def _find(tokens: np.ndarray, token: int, name: str) -> int:
    hits = np.flatnonzero(tokens == token)
    if not hits.size:
        raise ValueError(f"no {name} ({token}) in the sequence")
    return int(hits[0])


def _until_end(body: np.ndarray) -> np.ndarray:
    ends = np.flatnonzero((body == EOS) | (body == PAD))
    return body[: ends[0]] if ends.size else body


PRESETS = {
    # AudioLM speech: w2v-BERT 25 Hz, SoundStream 16 kHz 12 x 1024 at 50 Hz (sec. 5).
    "paper": TokenLayout(),
    # HuBERT-family semantic tokens run at 50 Hz with the paper's codec.
    "hubert": TokenLayout(semantic_rate_hz=50.0),
    # EnCodec 24 kHz at 6 kbps: 8 x 1024 at 75 Hz with HuBERT ids; 2 coarse + 6 fine levels, the
    # split Bark uses on this codec, keeps 10 s of coarse tokens at 1500.
    "encodec": TokenLayout(
        semantic_rate_hz=50.0, acoustic_levels=8, coarse_levels=2, acoustic_rate_hz=75.0
    ),
    # Piano (sec. 5): 3 quantizers of 2^14 codes, all modelled by the coarse stage, no stage 3.
    "piano": TokenLayout(
        acoustic_levels=3, coarse_levels=3, codebook_size=16384, has_fine_stage=False
    ),
}
