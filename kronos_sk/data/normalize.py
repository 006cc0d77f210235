"""Per-series normalisation with statistics of the lookback (context) part only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STD_EPSILON = 1e-5
DEFAULT_CLIP = 5.0


@dataclass
class Normalizer:
    """Per-series, per-column mean and population std of a context, as float32.

    Attributes
    ----------
    mean, std : ndarray of shape (n_series, n_features)
    clip : float
        Normalised values are clipped to [-clip, clip].
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float = DEFAULT_CLIP

    @classmethod
    def fit(cls, contexts: list[np.ndarray], clip: float = DEFAULT_CLIP) -> Normalizer:
        """Statistics of each (T_i, F) context, computed in float32 like the reference."""
        rows = [np.asarray(context, dtype=np.float32) for context in contexts]
        return cls(np.stack([row.mean(axis=0) for row in rows]),
                   np.stack([row.std(axis=0) for row in rows]), clip)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(n_series, T, F) values -> normalised and clipped float32."""
        scaled = (np.asarray(values, dtype=np.float32) - self.mean[:, None]) / (
            self.std[:, None] + np.float32(STD_EPSILON))
        return np.clip(scaled, -self.clip, self.clip)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """(n_series, ..., F) normalised values -> original units (float32)."""
        shape = (values.shape[0],) + (1,) * (values.ndim - 2) + (values.shape[-1],)
        scale = (self.std + np.float32(STD_EPSILON)).reshape(shape)
        return np.asarray(values, dtype=np.float32) * scale + self.mean.reshape(shape)
