"""The forecaster's kept paths, and the numpy and skpro reductions of paths.

Paths are a pure function of the fitted context, the fh timestamps and the sampling
settings. `PathCache` keeps the last generation of each forecaster under a key of the latter
two, so that every prediction method on one fh reads one generation; the forecaster drops
the entry whenever its context changes (fit, update, pretrain). The calibrated view of the
paths is kept beside them and recomputed when the calibration changes.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from kronos_sk import metrics


class KeptPaths(NamedTuple):
    key: tuple
    raw: np.ndarray  # (n_series, S, H, 6) as generated, read-only
    steps: np.ndarray  # (n_series, len(fh)) steps 1.. of the fh timestamps of each series
    grids: list  # the future stamps of each series' steps 1..H
    redrawn: np.ndarray  # (n_series, 2) paths redrawn / replaced by the positive-price rule
    paths: np.ndarray  # `raw` as returned: calibrated when a calibration is set
    calibration: object  # the calibration `paths` were made with, or None


class PathCache:
    """The last generation of each live forecaster, kept outside its ``__dict__``.

    A cache is not state: sktime checks that predict leaves the state unchanged, and pickles
    and copies should not carry it. Entries go with their forecaster (sktime estimators
    compare by value, so they cannot be weak dictionary keys; entries are keyed by id).
    """

    def __init__(self) -> None:
        self._entries: dict[int, KeptPaths] = {}
        self._watched: set[int] = set()  # owners with a finalizer: one each, however often

    def get(self, owner: object) -> KeptPaths | None:
        return self._entries.get(id(owner))

    def paths(self, owner: object, key: tuple, generate: Callable[[], tuple],
              calibration=None) -> KeptPaths:
        """The kept paths of `owner` under `key`, generated afresh when the key differs.

        `generate()` returns (raw paths, steps, grids, redrawn); `calibration` (with
        ``apply``) or None gives the paths as returned.
        """
        kept = self.get(owner)
        if kept is None or kept.key != key:
            kept = None
            self.drop(owner)  # free the previous paths before sampling the next
            raw, steps, grids, redrawn = generate()
            raw.flags.writeable = steps.flags.writeable = False
            kept = KeptPaths(key, raw, steps, grids, redrawn, raw, None)
        if kept.calibration is not calibration:
            paths = kept.raw if calibration is None else calibration.apply(kept.raw)
            paths.flags.writeable = False
            kept = kept._replace(paths=paths, calibration=calibration)
        self._put(owner, kept)
        return kept

    def _put(self, owner: object, entry: KeptPaths) -> None:
        if id(owner) not in self._watched:
            self._watched.add(id(owner))
            weakref.finalize(owner, self._forget, id(owner))
        self._entries[id(owner)] = entry

    def _forget(self, key: int) -> None:
        self._entries.pop(key, None)
        self._watched.discard(key)

    def drop(self, owner: object) -> None:
        self._entries.pop(id(owner), None)

    def __contains__(self, owner: object) -> bool:
        return id(owner) in self._entries


def path_covariance(values: np.ndarray) -> np.ndarray:
    """Covariance over the paths between horizon steps, per series and column.

    (n, S, F, k) values -> (n, k, F, F) float64, normalised by S like the marginal
    variances (skpro's `Empirical`), so that its diagonal is `predict_var`'s.
    """
    centred = values - values.mean(axis=1, keepdims=True, dtype=np.float64)
    return np.einsum("nsfk,nsgk->nkfg", centred, centred) / values.shape[1]


def empirical(samples: pd.DataFrame, values: np.ndarray, index: pd.Index, columns: pd.Index):
    """skpro's `Empirical` over the paths, without skpro's per-entry sorting.

    skpro sorts the samples of every (row, column) through pandas lookups when built, which
    takes seconds for a panel. Where it can defer that (`skip_init_sorted`), its sorted
    cache is filled here from one numpy sort of `values` (n, S, F, k) instead; the test
    suite checks that this distribution equals one skpro builds itself.
    """
    from skpro.distributions import Empirical

    if "skip_init_sorted" not in inspect.signature(Empirical).parameters:
        return Empirical(spl=samples, index=index, columns=columns)
    dist = Empirical(spl=samples, index=index, columns=columns, skip_init_sorted=True)
    if not hasattr(dist, "_sorted_initialized"):  # another skpro: let it sort lazily
        return dist
    S = values.shape[1]
    ordered = np.moveaxis(np.sort(values, axis=1), 1, -1)  # (n, F, k, S)
    rows = ordered.reshape(len(index), len(columns), S)
    weights = np.ones(S)
    dist._sorted = {ix: dict(zip(columns, row)) for ix, row in zip(index, rows)}
    dist._weights = {ix: dict.fromkeys(columns, weights) for ix in index}
    dist._sorted_initialized = True
    return dist


def realized_volatility(closes: np.ndarray, last: np.ndarray, horizons: np.ndarray,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Sum of squared log returns of each path's closes over its series' steps 1..H.

    closes (n, S, H_max), the last observed close of each series (n,), each series' H (n,)
    -> (rv (n, S), whether a series has a path with a close <= 0 (n,)), by
    `kronos_sk.metrics.realized_volatility` (the first return from the last observed
    close); NaN for a series with a close <= 0.
    """
    rv = np.full(closes.shape[:2], np.nan)
    bad = np.zeros(len(closes), dtype=bool)
    for H in np.unique(horizons):  # usually one group: the same last step for all
        rows = np.flatnonzero(horizons == H)
        bad[rows] = (closes[rows, :, :H] <= 0).any(axis=(1, 2)) | (last[rows] <= 0)
        fine = rows[~bad[rows]]
        rv[fine] = metrics.realized_volatility(closes[fine, :, :H], last[fine, None])
    return rv, bad


def volatility_table(closes: np.ndarray, horizons: np.ndarray, last: list, labels: list,
                     names: list, quantiles) -> pd.DataFrame:
    """`predict_volatility`'s frame: the mean and quantiles over paths of each series'
    realized volatility, one row per label; a path with a close <= 0 is named by series."""
    rv, bad = realized_volatility(closes, np.asarray(last, np.float64), horizons)
    if bad.any():
        raise ValueError("realized volatility needs positive closes; a sampled path of "
                         f"{names[int(np.flatnonzero(bad)[0])]} has a close <= 0")
    levels = metrics.sample_quantiles(rv, list(quantiles), axis=1)  # one sort for all
    table = {"mean": rv.mean(1), **{f"q{q:g}": level for q, level in zip(quantiles, levels)}}
    return pd.DataFrame(table, index=pd.Index(labels))


def redrawn_frame(counts: np.ndarray, names: list) -> pd.DataFrame:
    """The positive-price rule's (n_series, 2) counts as a frame by series name."""
    return pd.DataFrame(counts, columns=["redrawn", "replaced"],
                        index=pd.Index(names, name="series"))
