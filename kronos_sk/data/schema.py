"""Column names of candlestick data and how user column names map onto them."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
FEATURE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")

# Lower-case alias -> canonical name. "turnover" and "value" mean traded value (quote currency),
# as in Chinese market data, not share turnover.
COLUMN_ALIASES: dict[str, str] = {
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "vol": "volume",
    "amt": "amount",
    "turnover": "amount",
    "value": "amount",
}


def canonical_columns(columns: Iterable[Hashable]) -> dict[str, str]:
    """Map user column names to canonical feature names.

    Names are matched case-insensitively after stripping whitespace, either directly
    against `FEATURE_COLUMNS` or through `COLUMN_ALIASES`.

    Parameters
    ----------
    columns : iterable of hashable
        The user's column names, e.g. ``frame.columns``.

    Returns
    -------
    dict
        ``{user_name: canonical_name}`` for the recognised columns only; unknown and
        non-string names are left out.

    Raises
    ------
    ValueError
        If two user columns map to the same canonical name.

    Examples
    --------
    >>> canonical_columns(["Open", " HIGH ", "l", "Close", "Vol", "foo"])
    {'Open': 'open', ' HIGH ': 'high', 'l': 'low', 'Close': 'close', 'Vol': 'volume'}
    """
    mapping: dict[str, str] = {}
    owner: dict[str, str] = {}
    for column in columns:
        if not isinstance(column, str):
            continue
        key = column.strip().lower()
        canonical = key if key in FEATURE_COLUMNS else COLUMN_ALIASES.get(key)
        if canonical is None:
            continue
        if canonical in owner:
            raise ValueError(
                f"columns {owner[canonical]!r} and {column!r} both map to {canonical!r}; "
                "drop or rename one of them"
            )
        owner[canonical] = column
        mapping[column] = canonical
    return mapping
