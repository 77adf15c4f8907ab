"""Synthetic token sources with known entropy, for training LMs before (or without) audio.

`MarkovSource`: each token has `successors` equally likely next tokens, drawn once from the seed;
with `lag` = k the token at t depends on the token at t - k. Its true entropy is
log(successors) nats per predicted token, while unigram statistics give about log(vocab): a model
that learns closes that gap. Batches are a pure function of (seed, split, index), so the data
position is one integer and resumed runs see the same batches.
"""

from __future__ import annotations

import math

import numpy as np

_SPLIT_STREAM = {"train": 0, "eval": 1}


class MarkovSource:
    """An endless, resumable iterator of LM batches from a sparse random Markov chain.

    `batch(i)` is the global batch; iterating yields this process's rows of it.

    Yields {inputs, targets, weights} [batch, seq_len]: inputs are targets shifted right behind
    `bos_id`; content ids are `token_offset + [0, vocab)`. The first `lag` targets of each row
    are uniform draws with nothing to predict them from, so they carry weight 0.
    """

    def __init__(
        self,
        *,
        vocab: int,
        batch_size: int,
        seq_len: int,
        successors: int = 4,
        lag: int = 1,
        seed: int = 0,
        split: str = "train",
        token_offset: int = 0,
        bos_id: int = 0,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if split not in _SPLIT_STREAM:
            raise ValueError(f"split must be one of {list(_SPLIT_STREAM)}, got {split!r}")
        if not 1 <= successors <= vocab:
            raise ValueError(f"successors must be in [1, vocab={vocab}], got {successors}")
        if not 1 <= lag < seq_len:
            raise ValueError(f"lag must be in [1, seq_len={seq_len}), got {lag}")
        self.vocab, self.batch_size, self.seq_len = vocab, batch_size, seq_len
        self.successors, self.lag, self.seed, self.split = successors, lag, seed, split
        self.token_offset, self.bos_id = token_offset, bos_id
        if batch_size % process_count:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by {process_count} processes"
            )
        # Each process yields its own rows of the global batch (the global batch is the same
        # whatever the process count, so multi-host runs match single-host ones).
        rows = batch_size // process_count
        self._rows = slice(process_index * rows, (process_index + 1) * rows)
        chain = np.random.default_rng([seed, 12345])
        # Row i: `successors` distinct next tokens of token i (one chain for train and eval).
        self.table = np.argsort(chain.random((vocab, vocab)), axis=1)[:, :successors]
        self.index = 0

    @property
    def entropy(self) -> float:
        """True conditional entropy of a weighted target, nats."""
        return math.log(self.successors)

    def batch(self, index: int) -> dict[str, np.ndarray]:
        """The batch at position `index` of this split's stream."""
        rng = np.random.default_rng([self.seed, _SPLIT_STREAM[self.split], index])
        b, n, k = self.batch_size, self.seq_len, self.lag
        x = np.empty((b, n), np.int64)
        x[:, :k] = rng.integers(0, self.vocab, (b, k))
        choice = rng.integers(0, self.successors, (b, n))
        for t in range(k, n):
            x[:, t] = self.table[x[:, t - k], choice[:, t]]
        targets = (x + self.token_offset).astype(np.int32)
        inputs = np.concatenate([np.full((b, 1), self.bos_id, np.int32), targets[:, :-1]], 1)
        weights = np.ones((b, n), np.float32)
        weights[:, :k] = 0.0
        return {"inputs": inputs, "targets": targets, "weights": weights}

    def follows_chain(self, tokens: np.ndarray) -> float:
        """Fraction of (token at t - lag -> token at t) steps in `tokens` [batch, length] that
        the chain allows; non-content ids (specials) are skipped. Chance: successors / vocab."""
        x = np.asarray(tokens) - self.token_offset
        prev, nxt = x[:, : -self.lag], x[:, self.lag :]
        ok = (prev >= 0) & (prev < self.vocab) & (nxt >= 0) & (nxt < self.vocab)
        if not ok.any():
            return 0.0
        allowed = (self.table[prev[ok]] == nxt[ok][:, None]).any(axis=1)
        return float(allowed.mean())

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = {k: v[self._rows] for k, v in self.batch(self.index).items()}
        self.index += 1
        return out

    def get_state(self) -> dict:
        return {"index": int(self.index)}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])


def unigram_entropy(source: MarkovSource, num_batches: int = 8) -> float:
    """Entropy (nats) of the weighted targets' unigram distribution, estimated from batches."""
    counts = np.zeros(source.vocab, np.float64)
    for i in range(num_batches):
        batch = source.batch(i)
        ids = batch["targets"][batch["weights"] > 0] - source.token_offset
        counts += np.bincount(ids, minlength=source.vocab)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
