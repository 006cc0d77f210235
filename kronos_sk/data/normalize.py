"""Per-series normalisation with statistics of the lookback (context) part only.

The reference divides by ``std + 1e-5``. That floor swamps the spread of a series quoted
in tiny units (a token priced 1e-5 has a context std near 1e-7), so its normalised values
are nearly flat and the forecasts de-normalise to noise of the size of the price itself.
Here the floor is ``1e-5 * |mean|`` for a column whose mean is below 1 in magnitude, which
makes the normalisation independent of the unit below 1 and leaves every column of mean 1 or
more exactly as the reference normalises it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STD_EPSILON = 1e-5
DEFAULT_CLIP = 5.0
LEVEL_FLOOR = 1e-12  # keeps the floor positive for a column whose mean is 0


def normalising_scale(mean: np.ndarray, std: np.ndarray,
                      eps: float = STD_EPSILON) -> np.ndarray:
    """The divisor of the normalisation: ``std + eps * clip(|mean|, 1e-12, 1)``.

    Computed in the dtype of `std`; equals the reference's ``std + eps`` where
    ``|mean| >= 1``.
    """
    std = np.asarray(std)
    level = np.clip(np.abs(np.asarray(mean, dtype=std.dtype)), LEVEL_FLOOR, 1.0)
    return std + std.dtype.type(eps) * level


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
        scale = normalising_scale(self.mean, self.std)
        scaled = (np.asarray(values, dtype=np.float32) - self.mean[:, None]) / scale[:, None]
        return np.clip(scaled, -self.clip, self.clip)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """(n_series, ..., F) normalised values -> original units (float32)."""
        shape = (values.shape[0],) + (1,) * (values.ndim - 2) + (values.shape[-1],)
        scale = normalising_scale(self.mean, self.std).reshape(shape)
        return np.asarray(values, dtype=np.float32) * scale + self.mean.reshape(shape)
