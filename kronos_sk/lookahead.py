"""Which dates a checkpoint has seen, and a warning when a forecast starts inside them.

A backtest that forecasts from a date the model was trained or validated on reports
memorisation as skill. Every checkpoint this library trains records, per market, the period
of data it was trained and validated on (``data_periods.json`` beside ``config.json``);
released Kronos checkpoints get the periods their maintainers stated (`RELEASED_PERIODS`).
`KronosForecaster.fit` warns with `LookAheadWarning` once when a forecast origin falls inside
one of them; ``warnings.simplefilter("error", LookAheadWarning)`` turns it into an error.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PERIODS_FILE = "data_periods.json"
# The released Kronos models (NeoQuasar/Kronos-mini, -small, -base and their tokenizers):
# "The cut-off date for the training set is February 2024 (inclusive). The validation set
# spans from March to May 2024 (inclusive), and the out-of-sample period begins in June
# 2024." (the maintainer, https://github.com/shiyu-coder/Kronos/issues/204); the start of
# the data is not stated.
RELEASED_NAMES = ("kronos-mini", "kronos-small", "kronos-base", "kronos-tokenizer")


def _wall_clock(when) -> pd.Timestamp:
    """A timestamp without its time zone (periods are stated in local dates)."""
    when = pd.Timestamp(when)
    return when.tz_localize(None) if when.tzinfo else when


class LookAheadWarning(UserWarning):
    """A forecast origin lies inside data the model was trained or validated on."""


@dataclass(frozen=True)
class DataPeriod:
    """A span of one market's data that a checkpoint was trained or validated on.

    Attributes
    ----------
    market : str
    split : {"train", "validation"}
    start, end : str or None
        ISO dates or timestamps, inclusive; None where the source does not say.
    """

    market: str
    split: str
    start: str | None
    end: str | None

    def contains(self, when: pd.Timestamp) -> bool:
        when = _wall_clock(when)
        after = self.start is None or when >= pd.Timestamp(self.start)
        before = self.end is None or when <= pd.Timestamp(self.end)
        return after and before

    def __str__(self) -> str:
        return f"{self.market} {self.split} {self.start or '...'} to {self.end or '...'}"


RELEASED_PERIODS = (DataPeriod("global (released Kronos)", "train", None, "2024-02-29"),
                    DataPeriod("global (released Kronos)", "validation", "2024-03-01",
                               "2024-05-31"))


def data_periods(checkpoint: str | os.PathLike) -> tuple[DataPeriod, ...] | None:
    """The periods a checkpoint (directory or hub id) was trained and validated on.

    Read from its ``data_periods.json``; for the released Kronos checkpoints, named by hub id
    or directory name, `RELEASED_PERIODS`; None where nothing is known.
    """
    path = Path(checkpoint)
    if (path / PERIODS_FILE).is_file():
        try:
            records = json.loads((path / PERIODS_FILE).read_text())
            return tuple(DataPeriod(**record) for record in records)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path / PERIODS_FILE}: not a list of periods with market, "
                             f"split, start and end ({error})") from None
    name = str(checkpoint).rstrip("/").split("/")[-1].lower()
    if any(name.startswith(released) for released in RELEASED_NAMES):
        return RELEASED_PERIODS
    return None


def write_data_periods(directory: str | os.PathLike, periods: tuple[DataPeriod, ...]) -> Path:
    """Write ``data_periods.json`` into a checkpoint directory, each period once (a model
    trained further on the same corpus saw the same periods); returns its path."""
    path = Path(directory) / PERIODS_FILE
    unique = dict.fromkeys(periods)
    path.write_text(json.dumps([asdict(p) for p in unique], indent=2) + "\n")
    return path


def corpus_periods(assets: pd.DataFrame, validation_starts: np.ndarray,
                   ) -> tuple[DataPeriod, ...]:
    """Per market, the train and validation periods of a training corpus.

    Parameters
    ----------
    assets : DataFrame
        `CandleCorpus.assets` (columns market, first, last).
    validation_starts : ndarray of int64
        `CandleCorpus.validation_starts`: per asset, the first validation instant (ns).
    """
    periods = []
    for market, rows in assets.groupby("market", sort=False):
        first = [_wall_clock(t) for t in rows["first"]]
        last = [_wall_clock(t) for t in rows["last"]]
        starts = pd.to_datetime(validation_starts[rows.index.to_numpy()])
        split = starts.min()
        periods.append(DataPeriod(market, "train", str(min(first)),
                                  str(min(max(last), split - pd.Timedelta(1, "ns")))))
        if split <= max(last):
            periods.append(DataPeriod(market, "validation", str(split), str(max(last))))
    return tuple(periods)


def look_ahead(periods: tuple[DataPeriod, ...] | None,
               origins: Mapping[str, pd.Timestamp]) -> dict[str, list[DataPeriod]]:
    """The periods each forecast origin (series name -> last timestamp) falls inside."""
    if not periods:
        return {}
    hits = {name: [p for p in periods if p.contains(origin)] for name, origin in
            origins.items()}
    return {name: found for name, found in hits.items() if found}


def guard_look_ahead(checkpoint: str | os.PathLike | None,
                     origins: Mapping[str, pd.Timestamp]) -> dict[str, list[DataPeriod]]:
    """The series whose origin lies inside the data `checkpoint` was trained or validated
    on (`look_ahead`), with one `LookAheadWarning` naming the first and its periods."""
    contaminated = look_ahead(None if checkpoint is None else data_periods(checkpoint),
                              origins)
    if contaminated:
        name, periods = next(iter(contaminated.items()))
        more = f" (and {len(contaminated) - 1} more series)" if len(contaminated) > 1 else ""
        model = "the bundled model" if Path(checkpoint).parent == Path(__file__).parent / \
            "pretrained" else f"checkpoint {os.fspath(checkpoint)!r}"
        warnings.warn(f"{name}{more}: the forecast origin lies inside data {model} was "
                      f"trained or validated on ({'; '.join(map(str, periods))}): its skill "
                      "there may be memorisation", LookAheadWarning, stacklevel=4)
    return contaminated
