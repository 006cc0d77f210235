"""Candlestick data: column schema, input validation, model features and calendars.

Depends on numpy and pandas only.
"""

from .calendar import future_index, time_features
from .corpus import CandleCorpus, TimeSplit
from .schema import COLUMN_ALIASES, FEATURE_COLUMNS, PRICE_COLUMNS, canonical_columns
from .validation import (RULES, TIMESTAMP_COLUMNS, RepairedCandles, assemble_features,
                         repair_candles, validate_candles, validate_panel)
from .windows import SeriesWindows, WindowSampler, validation_batches

__all__ = [
    "COLUMN_ALIASES",
    "CandleCorpus",
    "FEATURE_COLUMNS",
    "PRICE_COLUMNS",
    "RULES",
    "RepairedCandles",
    "TIMESTAMP_COLUMNS",
    "SeriesWindows",
    "TimeSplit",
    "WindowSampler",
    "assemble_features",
    "canonical_columns",
    "future_index",
    "repair_candles",
    "time_features",
    "validate_candles",
    "validate_panel",
    "validation_batches",
]
