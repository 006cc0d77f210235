"""Helpers of the training tests: tiny model settings and a stateless sine-candle source.

Importable from the test modules (pytest puts this folder on sys.path) and from the
distributed test's script (its PYTHONPATH names this folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# 2 + 2 bits: 4 coarse and 4 fine ids, so a few steps visibly lower the losses.
TINY_TOKENIZER = dict(d_model=16, n_heads=2, ff_dim=32, n_enc_layers=2, n_dec_layers=2,
                      s1_bits=2, s2_bits=2, group_size=2)
# No dropout: in the resume tests only the sampled coarse ids draw from the RNG.
TINY_PREDICTOR = dict(s1_bits=2, s2_bits=2, n_layers=1, d_model=16, n_heads=2, ff_dim=32,
                      ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0,
                      token_dropout_p=0.0)
# Validation windows come from an index range that training never reaches.
VALIDATION_OFFSET = 1_000_000


@dataclass(frozen=True)
class SineCandles:
    """Noisy sine-wave OHLCVA windows, each normalised by its context rows as Kronos expects.

    `batch(index, rank=, world_size=)` is a pure function of its arguments: each rank gets
    its own windows, and batch k never depends on which batches came before.
    """

    batch_size: int = 8
    length: int = 24
    seed: int = 0
    n_validation: int = 2

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index, rank])
        B, L = self.batch_size, self.length
        t = np.arange(L + 1)[None, :]
        period = rng.uniform(8.0, 16.0, size=(B, 1))
        phase = rng.uniform(0.0, 2 * np.pi, size=(B, 1))
        price = 100.0 + 5.0 * np.sin(2 * np.pi * t / period + phase)
        price += rng.normal(0.0, 0.2, size=price.shape)
        open_, close = price[:, :-1], price[:, 1:]
        spread = np.abs(rng.normal(0.0, 0.3, size=(B, L)))
        high = np.maximum(open_, close) + spread
        low = np.minimum(open_, close) - spread
        volume = 1000.0 + 200.0 * np.abs(close - open_) + rng.normal(0.0, 10.0, size=(B, L))
        amount = volume * (open_ + high + low + close) / 4
        values = np.stack([open_, high, low, close, volume, amount], axis=-1)  # (B, L, 6)
        # Each window normalised by the statistics of its own context, as the objective needs.
        context = rng.integers(L // 4, L - 1, size=B)
        values = np.stack([(v - v[:c].mean(0)) / (v[:c].std(0) + 1e-5)
                           for v, c in zip(values, context)])
        return {"values": np.clip(values, -5, 5).astype(np.float32),
                "stamps": self._stamps(rng.integers(0, 10 ** 6, size=B), L),
                "context": context}

    def validation(self) -> Iterator[dict[str, np.ndarray]]:
        """Held-out batches, the same ones at every call."""
        for i in range(self.n_validation):
            yield self.batch(VALIDATION_OFFSET + i)

    @staticmethod
    def _stamps(start_minutes: np.ndarray, length: int) -> np.ndarray:
        minutes = start_minutes[:, None] + np.arange(length)[None, :]  # (B, L)
        days = minutes // 1440
        return np.stack([minutes % 60, (minutes // 60) % 24, days % 7, 1 + days % 28,
                         1 + (days // 28) % 12], axis=-1).astype(np.int64)  # (B, L, 5)
