"""Training and validation windows drawn from a
[`CandleCorpus`][kronos_sk.data.corpus.CandleCorpus].

A window is up to ``lookback + horizon`` consecutive rows of one segment of one asset, all in
the same split; where fewer rows are left in a segment (a short segment, or its end), the
window is shorter, down to ``min_context + horizon`` rows, and padded at its end.

Each window gets its own context length ``c``, drawn uniformly in
``[min_context, min(lookback, length - horizon)]``. The whole window is normalised with the mean
and population std of its first ``c`` rows only, and the training objective scores only the
targets at positions ``c`` and later. So no scored target is normalised with statistics of
itself or of later rows, exactly as at inference, and training covers every context length
from `min_context` to `lookback` that a user may give.

With ``targets="horizon"`` a window ends `horizon` rows after its context, so the objective
scores only the steps a forecast of `horizon` steps asks for, each right after a context
normalised by its own rows, as at inference (by default, the targets hundreds of rows after
a short context, far outside its scale, dominate the score).

Every batch is a dict of numpy arrays:

- ``"values"``: (B, L, 6) float32, features in ``FEATURE_COLUMNS`` order, in the space of
  the samplers' ``value_transform`` (see
  [`to_model_space`][kronos_sk.data.normalize.to_model_space]), normalised and clipped to
  ``[-clip, clip]``; L = lookback + horizon.
- ``"stamps"``: (B, L, 5) int64, calendar features from
[`time_features`][kronos_sk.data.calendar.time_features]
  (wall-clock time of each file's zone).
- ``"context"``: (B,) int64, the rows whose statistics normalised each window; the
  objective scores targets at positions ``context`` and later.
- ``"length"``: (B,) int64, the real rows of each window; later rows repeat the last real
  one and are never scored.
- ``"mean"``, ``"std"``: (B, 6) float32, context statistics in that space;
  ``values * scale + mean``, with `scale` from
  [`normalising_scale`][kronos_sk.data.normalize.normalising_scale],
  undoes the normalisation up to clipping.
- ``"asset"``, ``"market"``: (B,) object arrays of names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .calendar import time_features
from .corpus import CandleCorpus, Split, TimeSplit
from .normalize import DEFAULT_CLIP, Normalizer, to_model_space
from .schema import FEATURE_COLUMNS

Batch = dict[str, np.ndarray]

_VOLUME_COLUMNS = (FEATURE_COLUMNS.index("volume"), FEATURE_COLUMNS.index("amount"))
# Independent random streams for block choice and batch draws (SeedSequence entropy words).
_BLOCK_STREAM, _BATCH_STREAM, _VALIDATION_STREAM = 0, 1, 2
DEFAULT_MIN_CONTEXT = 32
_TARGETS = ("all", "horizon")  # the rows a window keeps after its context (WindowSampler)
_CACHED_BLOCKS = 2  # the current block and the previous one, for ranks slightly out of step
_VALIDATION_CHUNK = 64  # assets read together while iterating validation windows


class _Pool:
    """The rows of some loaded assets end to end, and where their windows start.

    Attributes
    ----------
    values : ndarray of shape (R, 6), float32
    stamps : ndarray of shape (R, 5), uint8
        Calendar features; all are below 256, so a byte each keeps a block small.
    starts : ndarray of shape (W,), int64
        First row of every window, grouped by asset.
    lengths : ndarray of shape (W,), int64
        Rows of every window (the full window length, or fewer at a segment's end).
    bounds : ndarray of shape (A + 1,), int64
        Asset ``a`` owns ``starts[bounds[a]:bounds[a + 1]]``.
    assets, markets : ndarray of shape (A,), object
    """

    def __init__(self, frames: Sequence[pd.DataFrame],
                 windows: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        starts = [start for start, _ in windows]
        offsets = np.r_[0, np.cumsum([len(frame) for frame in frames])][:-1]
        self.values = np.concatenate(
            [frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float32) for frame in frames])
        self.stamps = np.concatenate(
            [time_features(pd.DatetimeIndex(frame["timestamp"])).astype(np.uint8)
             for frame in frames])
        self.starts = np.concatenate(
            [start + offset for start, offset in zip(starts, offsets)]).astype(np.int64)
        self.lengths = np.concatenate([length for _, length in windows]).astype(np.int64)
        self.bounds = np.r_[0, np.cumsum([len(start) for start in starts])].astype(np.int64)
        self.assets = np.array([frame.attrs["asset"] for frame in frames], dtype=object)
        self.markets = np.array([frame.attrs["market"] for frame in frames], dtype=object)


def _window_starts(
    frame: pd.DataFrame, length: int, min_length: int, validation_start: int, split: Split,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `frame` where a window in `split` may start, and each window's length.

    A window has `length` rows, or all rows left in its segment (and split) where fewer are
    left, but at least `min_length`. With ``stride > 1``, only every stride-th full window
    counted back from the end of each segment (the last one ends on its last row), plus one
    window from the start of a segment too short for a full one.
    """
    rows = len(frame)
    segment = frame["segment"].to_numpy()
    new_segment = np.r_[True, segment[1:] != segment[:-1]] if rows else np.zeros(0, bool)
    segment_end = np.r_[np.flatnonzero(np.diff(segment)) + 1, rows][segment]
    ticks = pd.DatetimeIndex(frame["timestamp"]).as_unit("ns").asi8
    first_validation = np.searchsorted(ticks, validation_start)
    row = np.arange(rows)
    if split == "train":
        limit = np.minimum(segment_end, first_validation)
        usable = row + min_length <= limit
    else:
        limit = segment_end
        usable = (row >= first_validation) & (row + min_length <= limit)
    full = row + length <= limit
    if stride > 1:
        first = new_segment | (row == first_validation)
        usable &= np.where(full, (limit - length - row) % stride == 0, first)
    starts = np.flatnonzero(usable)
    return starts, np.minimum(length, limit[starts] - starts)


def _gather(
    pool: _Pool, windows: np.ndarray, owners: np.ndarray, contexts: np.ndarray, length: int,
    masked: np.ndarray, clip: float, value_transform: str, lengths: np.ndarray | None = None,
) -> Batch:
    """Cut `windows` (positions in the pool) out and normalise each by its context rows.

    `lengths` (default: the windows' own) are the real rows kept; later ones repeat the last.
    """
    rows = pool.starts[windows]
    lengths = pool.lengths[windows] if lengths is None else lengths
    index = rows[:, None] + np.minimum(np.arange(length), lengths[:, None] - 1)  # (B, L)
    raw = pool.values[index]  # (B, L, 6), a copy
    for column in _VOLUME_COLUMNS:
        raw[masked, :, column] = 0.0
    raw = to_model_space(raw, value_transform)
    in_context = (np.arange(length) < contexts[:, None])[..., None]  # (B, L, 1)
    count = contexts[:, None].astype(np.float64)
    mean = np.where(in_context, raw, 0.0).sum(axis=1) / count
    spread = np.where(in_context, raw - mean[:, None], 0.0)
    std = np.sqrt((spread ** 2).sum(axis=1) / count)
    normalizer = Normalizer(mean.astype(np.float32), std.astype(np.float32), clip)
    return {
        "values": normalizer.transform(raw),
        "stamps": pool.stamps[index].astype(np.int64),
        "context": contexts.astype(np.int64),
        "length": lengths.copy(),
        "mean": normalizer.mean,
        "std": normalizer.std,
        "asset": pool.assets[owners],
        "market": pool.markets[owners],
    }


def _draw_contexts(rng: np.random.Generator, lengths: np.ndarray, min_context: int,
                   lookback: int, horizon: int) -> np.ndarray:
    """Context rows per window, uniform in ``[min_context, min(lookback, length - horizon)]``."""
    return rng.integers(min_context, np.minimum(lookback, lengths - horizon) + 1)


def _draw_shared_context(rng: np.random.Generator, lengths: np.ndarray, min_context: int,
                         lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """One context length for a whole batch (a window too short for it takes its longest).

    Returns the context rows and the real rows (context + `horizon`) of each window.
    """
    contexts = np.minimum(rng.integers(min_context, lookback + 1), lengths - horizon)
    return contexts, contexts + horizon


class WindowSampler:
    """Random training windows, reproducible from the step number alone.

    Parameters
    ----------
    corpus : CandleCorpus
    lookback, horizon : int
        Longest context and fewest targets per window; a window has ``lookback + horizon``
        rows, or fewer (at least ``min_context + horizon``) where its segment ends sooner.
    batch_size : int
        Windows per batch, per rank.
    min_context : int, default=32
        Shortest context drawn; each window's context is uniform in
        ``[min_context, min(lookback, length - horizon)]`` (see the module docstring).
    seed : int, default=0
    split : {"train", "validation"}, default="train"
    time_split : TimeSplit or mapping of str to TimeSplit, default=TimeSplit()
        One rule, or one per market with ``"*"`` as the default (see
        [`CandleCorpus.validation_starts`][kronos_sk.data.corpus.CandleCorpus.validation_starts]).
        The default puts every row in train.
    assets_per_block : int, default=64
        Assets drawn (with replacement) for each block; only they are read.
    steps_per_block : int, default=200
        Consecutive steps that draw from one block.
    mask_fraction : float, default=0.05
        Share of windows whose volume and amount are zeroed before normalising, as at
        inference without volume.
    clip : float, default=DEFAULT_CLIP
    value_transform : {"none", "log"}, default="none"
        The space the tokenizer reads values in (its config's ``value_transform``).
    targets : {"all", "horizon"}, default="all"
        The real rows of a window: "all" keeps every row after the context (up to
        ``lookback + horizon``); "horizon" keeps only the `horizon` rows after it, the
        forecast a user asks for, and the windows of a batch then share one context length,
        uniform in ``[min_context, lookback]`` (a window too short for it takes its longest),
        so the batch is cut to that context plus `horizon` rows.
    rank, world_size : int, default=0, 1
        This process's rank among `world_size` data-parallel processes.

    Notes
    -----
    The sampler keeps no state that matters: ``batch(step)`` depends only on the arguments
    above and `step`. Block ``j = step // steps_per_block`` draws its assets with a generator
    seeded by ``(seed, j)``, each with probability proportional to its market's weight times
    its estimated windows
    ([`CandleCorpus.window_counts`][kronos_sk.data.corpus.CandleCorpus.window_counts]), and loads
    them. Batch `step`
    then draws with a generator seeded by ``(seed, step, rank)``: for each window an asset
    slot of the block uniformly, then one of that asset's windows uniformly, so a window's
    chance is about proportional to its market's weight. Resuming at step k therefore
    reproduces the same batches with nothing saved but k; every rank reads the same block but
    draws its own windows. Memory holds at most two loaded blocks.

    Examples
    --------
    >>> sampler = WindowSampler(corpus, 512, 32, 64, time_split=TimeSplit(cutoff="2016-01-01"))
    ... # doctest: +SKIP
    >>> sampler.batch(0)["values"].shape  # doctest: +SKIP
    (64, 544, 6)
    """

    def __init__(
        self,
        corpus: CandleCorpus,
        lookback: int,
        horizon: int,
        batch_size: int,
        *,
        min_context: int = DEFAULT_MIN_CONTEXT,
        seed: int = 0,
        split: Split = "train",
        time_split: TimeSplit | Mapping[str, TimeSplit] = TimeSplit(),
        assets_per_block: int = 64,
        steps_per_block: int = 200,
        mask_fraction: float = 0.05,
        clip: float = DEFAULT_CLIP,
        value_transform: str = "none",
        targets: str = "all",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        for name, value in (("lookback", lookback), ("horizon", horizon),
                            ("batch_size", batch_size), ("assets_per_block", assets_per_block),
                            ("steps_per_block", steps_per_block), ("world_size", world_size)):
            _check_int(name, value, 1)
        _check_min_context(min_context, lookback)
        _check_int("seed", seed, 0)
        _check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size = {world_size}, got {rank}")
        if split not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
        if not 0.0 <= mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction must be in [0, 1], got {mask_fraction!r}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        check_targets(targets)
        self.corpus = corpus
        self.lookback, self.horizon, self.batch_size = lookback, horizon, batch_size
        self.min_context = min_context
        self.seed, self.split, self.time_split = seed, split, time_split
        self.assets_per_block, self.steps_per_block = assets_per_block, steps_per_block
        self.mask_fraction, self.clip = mask_fraction, clip
        self.value_transform, self.targets = value_transform, targets
        self.rank, self.world_size = rank, world_size

        self._length = lookback + horizon
        self._min_length = min_context + horizon
        self._validation_starts = corpus.validation_starts(time_split)
        market_weight = corpus.assets["market"].map(corpus.market_weights).to_numpy(float)
        weight = market_weight * corpus.window_counts(
            self._min_length, time_split=time_split, split=split)
        if not weight.sum() > 0:
            raise ValueError(
                f"the corpus has no {split} windows of {self._min_length} rows "
                "(min_context + horizon) in markets of positive weight; shorten the windows, "
                "raise max_gap_factor or move the time split"
            )
        self._probability = weight / weight.sum()
        self._blocks: OrderedDict[int, tuple[_Pool, np.ndarray]] = OrderedDict()

    def batch(self, step: int) -> Batch:
        """The batch of training step `step` for this rank (see the module docstring)."""
        _check_int("step", step, 0)
        pool, slots = self._block(step // self.steps_per_block)
        rng = np.random.default_rng([self.seed, _BATCH_STREAM, step, self.rank])
        owners = slots[rng.integers(len(slots), size=self.batch_size)]
        window = rng.integers(pool.bounds[owners], pool.bounds[owners + 1])
        masked = rng.random(self.batch_size) < self.mask_fraction
        if self.targets == "horizon":
            contexts, lengths = _draw_shared_context(rng, pool.lengths[window],
                                                     self.min_context, self.lookback,
                                                     self.horizon)
            return _gather(pool, window, owners, contexts, int(lengths.max()), masked,
                           self.clip, self.value_transform, lengths)
        contexts = _draw_contexts(rng, pool.lengths[window], self.min_context, self.lookback,
                                  self.horizon)
        return _gather(pool, window, owners, contexts, self._length, masked, self.clip,
                       self.value_transform)

    def _block(self, block: int) -> tuple[_Pool, np.ndarray]:
        """The loaded assets of `block` and its slots (pool asset per draw, with repeats)."""
        if block in self._blocks:
            self._blocks.move_to_end(block)
            return self._blocks[block]
        rng = np.random.default_rng([self.seed, _BLOCK_STREAM, block])
        picks = rng.choice(len(self._probability), size=self.assets_per_block,
                           p=self._probability)
        positions, slots = np.unique(picks, return_inverse=True)
        frames = self.corpus.load_many(positions.tolist())
        windows = [_window_starts(frame, self._length, self._min_length,
                                  self._validation_starts[p], self.split)
                   for frame, p in zip(frames, positions)]
        pool = _Pool(frames, windows)
        # Jumps and bad rows, seen only now, can leave a drawn asset without windows.
        slots = slots[np.diff(pool.bounds)[slots] > 0]
        if len(slots) == 0:
            raise ValueError(
                f"block {block}: none of the {len(positions)} assets drawn has a {self.split} "
                f"window of {self._min_length} rows once jumps and bad rows are cut out; raise "
                "assets_per_block or shorten the windows"
            )
        self._blocks[block] = (pool, slots)
        if len(self._blocks) > _CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return pool, slots


class SeriesWindows:
    """Random training windows cut from series held in memory (estimators' fit and pretrain).

    Same batch format, drawn contexts and normalisation as
    [`WindowSampler`][kronos_sk.data.windows.WindowSampler] (statistics of each window's
    context only, optional volume masking); ``batch(step, rank, world_size)`` is a pure
    function of its arguments, so training resumes exactly.

    Parameters
    ----------
    series : sequence of (values, stamps) pairs
        values (T_i, 6) float array in ``FEATURE_COLUMNS`` order, stamps (T_i, 5) int array.
        Series shorter than ``min_context + horizon`` rows are skipped.
    lookback, horizon, batch_size : int
    min_context : int, default=32
    seed : int, default=0
    mask_fraction : float, default=0.0
    clip : float, default=DEFAULT_CLIP
    value_transform : {"none", "log"}, default="none"
    """

    def __init__(self, series: Sequence[tuple[np.ndarray, np.ndarray]], lookback: int,
                 horizon: int, batch_size: int, *, min_context: int = DEFAULT_MIN_CONTEXT,
                 seed: int = 0, mask_fraction: float = 0.0, clip: float = DEFAULT_CLIP,
                 value_transform: str = "none") -> None:
        _check_int("lookback", lookback, 1)
        _check_int("horizon", horizon, 1)
        _check_int("batch_size", batch_size, 1)
        _check_min_context(min_context, lookback)
        self.lookback, self.horizon, self.batch_size = lookback, horizon, batch_size
        self.min_context = min_context
        self.seed, self.mask_fraction, self.clip = seed, mask_fraction, clip
        self.value_transform = value_transform
        length, min_length = lookback + horizon, min_context + horizon
        kept = [(np.asarray(v, np.float32), np.asarray(s)) for v, s in series
                if len(v) >= min_length]
        if not kept:
            longest = max((len(v) for v, _ in series), default=0)
            raise ValueError(f"no series holds a window of min_context + horizon = {min_length} "
                             f"rows (the longest has {longest})")
        pool = _Pool.__new__(_Pool)
        pool.values = np.concatenate([v for v, _ in kept])
        pool.stamps = np.concatenate([s for _, s in kept]).astype(np.uint8)
        offsets = np.r_[0, np.cumsum([len(v) for v, _ in kept])]
        # Every row with at least min_length rows after it starts a window, as long as
        # `length` or the rest of its series.
        firsts = [np.arange(len(v) - min_length + 1) for v, _ in kept]
        starts = [offset + first for offset, first in zip(offsets, firsts)]
        pool.starts = np.concatenate(starts).astype(np.int64)
        pool.lengths = np.concatenate(
            [np.minimum(length, len(v) - first) for (v, _), first in zip(kept, firsts)])
        pool.bounds = np.r_[0, np.cumsum([len(x) for x in starts])].astype(np.int64)
        pool.assets = np.arange(len(kept)).astype(object)
        pool.markets = np.full(len(kept), "memory", dtype=object)
        self._pool = pool

    @property
    def n_windows(self) -> int:
        return len(self._pool.starts)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> Batch:
        """Batch `step` for `rank`: windows drawn uniformly from all windows."""
        _check_int("step", step, 0)
        rng = np.random.default_rng([self.seed, _BATCH_STREAM, step, rank])
        window = rng.integers(self.n_windows, size=self.batch_size)
        owners = np.searchsorted(self._pool.bounds, window, side="right") - 1
        masked = rng.random(self.batch_size) < self.mask_fraction
        contexts = _draw_contexts(rng, self._pool.lengths[window], self.min_context,
                                  self.lookback, self.horizon)
        return _gather(self._pool, window, owners, contexts, self.lookback + self.horizon,
                       masked, self.clip, self.value_transform)


def validation_batches(
    corpus: CandleCorpus,
    lookback: int,
    horizon: int,
    batch_size: int,
    *,
    time_split: TimeSplit | Mapping[str, TimeSplit],
    min_context: int = DEFAULT_MIN_CONTEXT,
    stride: int | None = None,
    max_windows: int | None = None,
    clip: float = DEFAULT_CLIP,
    value_transform: str = "none",
    targets: str = "all",
) -> Iterator[Batch]:
    """Every validation window once, in a fixed order, in batches.

    Parameters
    ----------
    corpus : CandleCorpus
    lookback, horizon, batch_size : int
    time_split : TimeSplit or mapping of str to TimeSplit
        As for [`WindowSampler`][kronos_sk.data.windows.WindowSampler].
    min_context : int, default=32
        As for [`WindowSampler`][kronos_sk.data.windows.WindowSampler]; the contexts are
        drawn the same way, from a generator of fixed seed, so every call yields the same
        batches.
    stride : int, default=None
        Rows between window starts within a segment, counted back from its last row so that
        the last window ends there; None means `horizon` (the horizons tile the segment).
    max_windows : int, default=None
        Keep at most this many windows, shared as evenly as possible across markets (a market
        with fewer gives its remainder to the others) and spread evenly within each market.
        This reads the validation assets twice.
    clip : float, default=DEFAULT_CLIP
    value_transform : {"none", "log"}, default="none"
    targets : {"all", "horizon"}, default="all"
        As for [`WindowSampler`][kronos_sk.data.windows.WindowSampler], except that the
        contexts stay drawn per window: "horizon" only ends each window `horizon` rows after
        its context (the later rows repeat the last kept one), so both settings validate on
        the same windows and contexts.

    Yields
    ------
    dict
        Batches in the format of the module docstring, without masking; the last may be
        smaller than `batch_size`. Windows come in corpus asset order, then by time. Nothing
        when no asset has a validation window.
    """
    for name, value in (("lookback", lookback), ("horizon", horizon),
                        ("batch_size", batch_size)):
        _check_int(name, value, 1)
    _check_min_context(min_context, lookback)
    stride = horizon if stride is None else stride
    _check_int("stride", stride, 1)
    if max_windows is not None:
        _check_int("max_windows", max_windows, 1)
    check_targets(targets)
    length, min_length = lookback + horizon, min_context + horizon
    validation_start = corpus.validation_starts(time_split)
    last = np.array([stamp.value for stamp in corpus.assets["last"]], dtype=np.int64)
    positions = np.flatnonzero(last >= validation_start)
    chunks = _chunks(positions, corpus.assets["path"].to_numpy())

    def windows() -> Iterator[tuple[list[pd.DataFrame], list[tuple[np.ndarray, np.ndarray]]]]:
        for chunk in chunks:
            frames = corpus.load_many(chunk.tolist())
            yield frames, [_window_starts(frame, length, min_length, validation_start[p],
                                          "validation", stride)
                           for frame, p in zip(frames, chunk)]

    def parts() -> Iterator[Batch]:
        keep = None
        if max_windows is not None:
            counts = [len(s) for _, found in windows() for s, _ in found]
            markets = corpus.assets["market"].to_numpy()[positions]
            keep = _even_selection(np.repeat(markets, counts), max_windows)
        seen = 0
        rng = np.random.default_rng(_VALIDATION_STREAM)
        for frames, found in windows():
            pool = _Pool(frames, found)
            chosen = np.arange(len(pool.starts))
            if keep is not None:
                chosen = chosen[keep[seen: seen + len(chosen)]]
                seen += len(pool.starts)
            owners = np.repeat(np.arange(len(frames)), np.diff(pool.bounds))
            for i in range(0, len(chosen), batch_size):
                window = chosen[i: i + batch_size]
                lengths = pool.lengths[window]
                contexts = _draw_contexts(rng, lengths, min_context, lookback, horizon)
                if targets == "horizon":
                    lengths = np.minimum(lengths, contexts + horizon)
                yield _gather(pool, window, owners[window], contexts, length,
                              np.zeros(len(window), bool), clip, value_transform, lengths)

    return _rebatch(parts(), batch_size)


def _chunks(positions: np.ndarray, paths: np.ndarray) -> list[np.ndarray]:
    """Split asset positions into runs from one file of at most _VALIDATION_CHUNK assets."""
    new_file = np.flatnonzero(paths[positions][1:] != paths[positions][:-1]) + 1
    return [run[i: i + _VALIDATION_CHUNK]
            for run in np.split(positions, new_file) if len(run)
            for i in range(0, len(run), _VALIDATION_CHUNK)]


def _even_selection(markets: np.ndarray, total: int) -> np.ndarray:
    """Mask keeping at most `total` items, shared evenly across markets and spread within."""
    names, market = np.unique(markets, return_inverse=True)
    available = np.bincount(market, minlength=len(names))
    quota = np.zeros(len(names), dtype=np.int64)
    left = min(total, int(available.sum()))
    while left > 0:
        open_ = np.flatnonzero(quota < available)
        share = max(left // len(open_), 1)
        for m in open_:
            give = min(share, available[m] - quota[m], left)
            quota[m] += give
            left -= give
    keep = np.zeros(len(markets), dtype=bool)
    for m in range(len(names)):
        members = np.flatnonzero(market == m)
        spread = ((np.arange(quota[m]) + 0.5) * len(members) / max(quota[m], 1)).astype(np.int64)
        keep[members[spread]] = True
    return keep


def _rebatch(parts: Iterable[Batch], batch_size: int) -> Iterator[Batch]:
    """Regroup batches of at most `batch_size` windows into batches of exactly that size."""
    buffer: list[Batch] = []
    size = 0
    for part in parts:
        buffer.append(part)
        size += len(part["asset"])
        if size >= batch_size:
            merged = {key: np.concatenate([b[key] for b in buffer]) for key in part}
            yield {key: array[:batch_size] for key, array in merged.items()}
            rest = {key: array[batch_size:] for key, array in merged.items()}
            size = len(rest["asset"])
            buffer = [rest] if size else []
    if size:
        yield {key: np.concatenate([b[key] for b in buffer]) for key in buffer[0]}


def check_targets(targets: object, name: str = "targets") -> None:
    """Raise ValueError naming `name` unless `targets` is one of the samplers' settings."""
    if targets not in _TARGETS:
        raise ValueError(f"{name} must be " + " or ".join(map(repr, _TARGETS))
                         + f", got {targets!r}")


def _check_min_context(min_context: object, lookback: int) -> None:
    _check_int("min_context", min_context, 1)
    if min_context > lookback:
        raise ValueError(f"min_context must be <= lookback = {lookback}, got {min_context}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
