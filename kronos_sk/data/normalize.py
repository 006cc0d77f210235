"""Per-series normalisation with statistics of the lookback (context) part only.

The reference divides by ``std + 1e-5``. That floor swamps the spread of a series quoted
in tiny units (a token priced 1e-5 has a context std near 1e-7), so its normalised values
are nearly flat and the forecasts de-normalise to noise of the size of the price itself.
Here the floor is ``1e-5 * |mean|`` for a column whose mean is below 1 in magnitude, which
makes the normalisation independent of the unit below 1 and leaves every column of mean 1 or
more exactly as the reference normalises it.

A checkpoint says in which space its tokenizer reads values (the tokenizer config's
``value_transform``): ``"none"``, the released models', normalises the candles as they are;
``"log"`` normalises log prices and ``log1p`` of volume and amount, so every decoded price is
positive by construction and a context's scale is a ratio, alike for every asset. The
statistics are then those of the transformed context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .schema import FEATURE_COLUMNS

STD_EPSILON = 1e-5
DEFAULT_CLIP = 5.0
LEVEL_FLOOR = 1e-12  # keeps the floor positive for a column whose mean is 0
N_PRICE_COLUMNS = 4  # open, high, low, close lead every feature table
CLOSE = FEATURE_COLUMNS.index("close")


def to_model_space(values: np.ndarray, transform: str) -> np.ndarray:
    """Candles (..., F) -> the space the tokenizer normalises, as float32 (for "log" a new
    array; for "none" the values themselves where they are float32 already).

    ``"log"``: log of the price columns, ``log1p`` of the others; prices must be positive
    and volumes >= 0 (`check_model_space`).
    """
    if transform != "log":
        return np.asarray(values, dtype=np.float32)
    out = np.array(values, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(out[..., :N_PRICE_COLUMNS], out=out[..., :N_PRICE_COLUMNS])
        np.log1p(out[..., N_PRICE_COLUMNS:], out=out[..., N_PRICE_COLUMNS:])
    return out


def from_model_space(values: np.ndarray, transform: str) -> np.ndarray:
    """The inverse of `to_model_space`, in place on a float32 array, which it returns."""
    if transform == "log":
        np.exp(values[..., :N_PRICE_COLUMNS], out=values[..., :N_PRICE_COLUMNS])
        np.expm1(values[..., N_PRICE_COLUMNS:], out=values[..., N_PRICE_COLUMNS:])
    return values


def check_model_space(values: np.ndarray, transform: str, name: str,
                      rows: Sequence | None = None) -> None:
    """Refuse a context (T, F) with a value `transform` cannot take, in one line.

    ``"log"`` needs prices > 0 and volumes (and amounts) >= 0. The message names `name`,
    the first bad row (its label in `rows`, else its position) and its close where that is
    bad (a flat series' value), else its first bad column; NaN is left to the callers' own
    checks.
    """
    if transform != "log":
        return
    values = np.asarray(values)
    bad = np.zeros(values.shape, dtype=bool)
    bad[:, :N_PRICE_COLUMNS] = values[:, :N_PRICE_COLUMNS] <= 0
    bad[:, N_PRICE_COLUMNS:] = values[:, N_PRICE_COLUMNS:] < 0
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        column = CLOSE if bad[row, CLOSE] else int(np.argmax(bad[row]))  # a flat row: its close
        raise ValueError(
            f"{name}: row {row if rows is None else rows[row]} of the context has "
            f"{FEATURE_COLUMNS[column]} = {float(values[row, column])!r}; this model reads "
            "log prices (value_transform='log') and needs prices > 0 and volumes >= 0")


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
        In the space of `value_transform`.
    clip : float
        Normalised values are clipped to [-clip, clip].
    value_transform : {"none", "log"}, default="none"
        See the module docstring.
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float = DEFAULT_CLIP
    value_transform: str = "none"

    @classmethod
    def fit(cls, contexts: list[np.ndarray], clip: float = DEFAULT_CLIP,
            value_transform: str = "none") -> Normalizer:
        """Statistics of each (T_i, F) context, computed in float32 like the reference."""
        rows = [to_model_space(context, value_transform) for context in contexts]
        return cls(np.stack([row.mean(axis=0) for row in rows]),
                   np.stack([row.std(axis=0) for row in rows]), clip, value_transform)

    def rows(self, rows: list[int]) -> Normalizer:
        """The statistics of some series only."""
        return Normalizer(self.mean[rows], self.std[rows], self.clip, self.value_transform)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(n_series, T, F) values -> normalised and clipped float32."""
        scale = normalising_scale(self.mean, self.std)
        scaled = (to_model_space(values, self.value_transform) - self.mean[:, None]) \
            / scale[:, None]
        return np.clip(scaled, -self.clip, self.clip)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """(n_series, ..., F) normalised values -> original units (float32)."""
        shape = (values.shape[0],) + (1,) * (values.ndim - 2) + (values.shape[-1],)
        scale = normalising_scale(self.mean, self.std).reshape(shape)
        model_space = np.asarray(values, dtype=np.float32) * scale + self.mean.reshape(shape)
        return from_model_space(model_space, self.value_transform)
