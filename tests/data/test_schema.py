import pytest

from kronos_sk.data import COLUMN_ALIASES, FEATURE_COLUMNS, PRICE_COLUMNS, canonical_columns


def test_column_constants():
    assert PRICE_COLUMNS == ("open", "high", "low", "close")
    assert FEATURE_COLUMNS == ("open", "high", "low", "close", "volume", "amount")
    assert set(COLUMN_ALIASES.values()) <= set(FEATURE_COLUMNS)


def test_canonical_names_are_case_insensitive_and_stripped():
    columns = ["Open", " HIGH ", "low", "Close\t", "VOLUME", "Amount"]
    assert canonical_columns(columns) == {
        "Open": "open",
        " HIGH ": "high",
        "low": "low",
        "Close\t": "close",
        "VOLUME": "volume",
        "Amount": "amount",
    }


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("o", "open"),
        ("H", "high"),
        ("l", "low"),
        ("C", "close"),
        ("v", "volume"),
        ("Vol", "volume"),
        ("amt", "amount"),
        ("Turnover", "amount"),
        (" value ", "amount"),
    ],
)
def test_aliases(alias, canonical):
    assert canonical_columns([alias]) == {alias: canonical}


def test_unknown_and_non_string_columns_are_ignored():
    assert canonical_columns(["close", "adj close", "symbol", 0, None]) == {"close": "close"}


def test_two_columns_mapping_to_one_name_are_rejected():
    with pytest.raises(ValueError, match=r"columns 'vol' and 'Volume' both map to 'volume'"):
        canonical_columns(["open", "vol", "Volume"])
