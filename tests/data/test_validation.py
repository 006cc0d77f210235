import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_sk.data import (FEATURE_COLUMNS, RULES, assemble_features, repair_candles,
                            validate_candles, validate_panel)
from kronos_sk.data.validation import check_cells, check_values


def make_candles(n=6, tz=None):
    """Valid hourly candles starting 2024-01-01 00:00, so row k is stamped k:00."""
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz=tz, name="timestamp")
    close = 10.0 + 0.1 * np.arange(n)
    open_ = close - 0.05
    return pd.DataFrame(
        {
            "open": open_,
            "high": close + 0.2,
            "low": open_ - 0.2,
            "close": close,
            "volume": 100.0 + np.arange(n),
            "amount": 1000.0 + np.arange(n),
        },
        index=index,
    )


def set_row(frame, pos, **values):
    for column, value in values.items():
        frame.iloc[pos, frame.columns.get_loc(column)] = value
    return frame


def make_panel():
    """Asset 'A' with 4 hourly rows, asset 'B' with 3, sharing timestamps."""
    a, b = make_candles(4), make_candles(3)
    index = pd.MultiIndex.from_arrays(
        [["A"] * 4 + ["B"] * 3, a.index.append(b.index)], names=["asset", "timestamp"]
    )
    return pd.DataFrame(np.vstack([a.to_numpy(), b.to_numpy()]), index=index, columns=a.columns)


def raises(error, text):
    """pytest.raises matching `text` literally."""
    return pytest.raises(error, match=re.escape(text))


# --- the clean copy -----------------------------------------------------------------------


def test_returns_float64_canonical_columns_with_the_original_index():
    frame = make_candles()
    frame = frame[["close", "amount", "low", "open", "high", "volume"]].assign(extra="x")
    frame["volume"] = frame["volume"].astype(np.int64)
    result = validate_candles(frame)
    assert list(result.columns) == list(FEATURE_COLUMNS)
    assert (result.dtypes == np.float64).all()
    pd.testing.assert_index_equal(result.index, frame.index)
    np.testing.assert_array_equal(result["volume"], frame["volume"].astype(float))


def test_volume_and_amount_are_optional():
    result = validate_candles(make_candles()[["open", "high", "low", "close"]])
    assert list(result.columns) == ["open", "high", "low", "close"]


@pytest.mark.parametrize("stamps_in_column", [False, True])
def test_caller_frame_is_not_modified(stamps_in_column):
    frame = make_candles().rename(columns={"open": "Open", "volume": "vol"})
    if stamps_in_column:
        frame = frame.reset_index()
    frame["close"] = frame["close"].astype(np.float32)
    frame["note"] = "x"
    original = frame.copy(deep=True)
    result = validate_candles(frame)
    pd.testing.assert_frame_equal(frame, original)
    result.iloc[:, :] = -1.0  # the result shares no memory with the input
    pd.testing.assert_frame_equal(frame, original)


def test_aliases_and_case_insensitive_names():
    frame = make_candles()
    frame.columns = ["O", " High ", "l", "CLOSE", "Vol", "Turnover"]
    result = validate_candles(frame)
    assert list(result.columns) == list(FEATURE_COLUMNS)
    np.testing.assert_array_equal(result["amount"], frame["Turnover"])


@pytest.mark.parametrize("column", ["timestamp", "Timestamps", "DATE", "datetime", " time "])
def test_timestamps_in_a_column_move_to_the_index(column):
    candles = make_candles()
    frame = candles.reset_index(drop=True).assign(**{column: candles.index})
    result = validate_candles(frame)
    pd.testing.assert_index_equal(result.index, candles.index.rename(column))
    assert list(result.columns) == list(FEATURE_COLUMNS)


def test_several_timestamp_columns_are_ambiguous():
    frame = make_candles().reset_index(drop=True)
    frame["date"] = frame["time"] = make_candles().index
    with raises(ValueError, "several timestamp columns ['date', 'time']"):
        validate_candles(frame)


def test_tz_aware_index_is_kept_and_named_in_messages():
    frame = make_candles(tz="Asia/Shanghai")
    pd.testing.assert_index_equal(validate_candles(frame).index, frame.index)
    frame = set_row(frame, 2, close=np.nan)
    with raises(ValueError, "column 'close' at row 2 (2024-01-01 02:00:00+08:00) is NaN"):
        validate_candles(frame)


def test_float_noise_in_the_envelope_passes():
    frame = make_candles()
    frame["high"] = frame[["open", "close"]].max(axis=1) * (1 - 1e-12)
    frame["low"] = frame[["open", "close"]].min(axis=1) * (1 + 1e-12)
    validate_candles(frame)


def test_zero_volume_passes():
    validate_candles(set_row(make_candles(), 1, volume=0.0, amount=0.0))


def test_non_datetime_index_is_accepted_when_not_required():
    frame = make_candles().reset_index(drop=True)
    result = validate_candles(frame, require_datetime_index=False)
    pd.testing.assert_index_equal(result.index, frame.index)


# --- errors: one per case -----------------------------------------------------------------


def test_not_a_dataframe():
    with raises(TypeError, "candles: expected a pandas DataFrame, got ndarray"):
        validate_candles(make_candles().to_numpy())


def test_non_numeric_column():
    frame = make_candles()
    frame["close"] = frame["close"].astype(object)
    frame.iloc[3, frame.columns.get_loc("close")] = "10.3x"
    with raises(TypeError, "column 'close' has non-numeric dtype object; "
                           "row 3 (2024-01-01 03:00:00) holds '10.3x'"):
        validate_candles(frame)


def test_non_numeric_text_column_names_the_bad_cell():
    # Read from a CSV, a column with one bad cell is all text: the numbers before it are fine.
    frame = make_candles(60)
    frame["volume"] = frame["volume"].astype(str)
    frame.iloc[50, frame.columns.get_loc("volume")] = "n/a"
    with raises(TypeError, "column 'volume' has non-numeric dtype "):
        validate_candles(frame)
    with raises(TypeError, "row 50 (2024-01-03 02:00:00) holds 'n/a'"):
        validate_candles(frame)


def test_non_datetime_index():
    frame = make_candles()
    frame.index = frame.index.astype(str)
    with raises(TypeError, "the index must hold datetimes (a DatetimeIndex), got dtype str; "
                           "convert it with pd.to_datetime"):
        validate_candles(frame)


def test_empty_input():
    with raises(ValueError, "candles: is empty (0 rows)"):
        validate_candles(make_candles().iloc[:0])


def test_missing_price_columns():
    frame = make_candles().drop(columns=["high", "low"])
    with raises(ValueError, "missing required column(s) ['high', 'low']; "
                            "found columns ['open', 'close', 'volume', 'amount']"):
        validate_candles(frame)


def test_nan():
    frame = set_row(make_candles(), 3, volume=np.nan)
    with raises(ValueError, "candles: column 'volume' at row 3 (2024-01-01 03:00:00) is NaN"):
        validate_candles(frame)


@pytest.mark.parametrize("value, text", [(np.inf, "inf"), (-np.inf, "-inf")])
def test_infinite_value(value, text):
    frame = set_row(make_candles(), 4, amount=value)
    with raises(ValueError, f"column 'amount' at row 4 (2024-01-01 04:00:00) is {text}"):
        validate_candles(frame)


def test_high_below_body():
    frame = set_row(make_candles(20), 17, open=10.2, close=10.0, high=9.5, low=9.0)
    with raises(ValueError, "candles: column 'high' at row 17 (2024-01-01 17:00:00) is 9.5, "
                            "below max(open, close) = 10.2"):
        validate_candles(frame)


def test_low_above_body():
    frame = set_row(make_candles(), 2, open=10.2, close=10.0, high=10.5, low=10.1)
    with raises(ValueError, "column 'low' at row 2 (2024-01-01 02:00:00) is 10.1, "
                            "above min(open, close) = 10.0"):
        validate_candles(frame)


def test_high_below_low():
    frame = set_row(make_candles(), 1, open=10.0, close=10.0, high=9.0, low=11.0)
    with raises(ValueError, "column 'high' at row 1 (2024-01-01 01:00:00) is 9.0, "
                            "below low = 11.0"):
        validate_candles(frame)


@pytest.mark.parametrize("value", [0.0, -2.5])
def test_non_positive_price(value):
    frame = set_row(make_candles(), 5, low=value)
    with raises(ValueError, f"column 'low' at row 5 (2024-01-01 05:00:00) is {value!r}, "
                            "but prices must be positive"):
        validate_candles(frame)


@pytest.mark.parametrize("column", ["volume", "amount"])
def test_negative_volume_or_amount(column):
    frame = set_row(make_candles(), 2, **{column: -1.0})
    with raises(ValueError, f"column '{column}' at row 2 (2024-01-01 02:00:00) is -1.0, "
                            f"but {column} must not be negative"):
        validate_candles(frame)


def test_duplicate_timestamps():
    frame = make_candles()
    frame.index = frame.index[[0, 1, 2, 2, 4, 5]]
    with raises(ValueError, "duplicate timestamp: row 3 (2024-01-01 02:00:00) repeats "
                            "row 2 (2024-01-01 02:00:00)"):
        validate_candles(frame)


def test_unsorted_timestamps():
    frame = make_candles()
    frame.index = frame.index[[0, 1, 3, 2, 4, 5]]
    with raises(ValueError, "timestamps are not sorted: row 3 (2024-01-01 02:00:00) comes after "
                            "row 2 (2024-01-01 03:00:00)"):
        validate_candles(frame)


def test_missing_timestamp():
    frame = make_candles()
    frame.index = pd.DatetimeIndex([*frame.index[:4], pd.NaT, frame.index[5]])
    with raises(ValueError, "the timestamp at row 4 (NaT) is missing"):
        validate_candles(frame)


def test_mixed_time_zones():
    frame = make_candles(3)
    frame.index = pd.Index([pd.Timestamp("2024-01-01 00:00", tz="UTC"),
                            pd.Timestamp("2024-01-01 02:00", tz="Europe/Berlin"),
                            pd.Timestamp("2024-01-01 02:00", tz="UTC")], dtype=object)
    with raises(ValueError, "the index mixes time zones: row 1 (2024-01-01 02:00:00+01:00) is "
                            "in time zone Europe/Berlin but row 0 (2024-01-01 00:00:00+00:00) "
                            "is in time zone UTC"):
        validate_candles(frame)


def test_tz_naive_and_tz_aware_mixture():
    frame = make_candles(2)
    frame.index = pd.Index([pd.Timestamp("2024-01-01 00:00"),
                            pd.Timestamp("2024-01-01 01:00", tz="UTC")], dtype=object)
    with raises(ValueError, "row 1 (2024-01-01 01:00:00+00:00) is in time zone UTC but "
                            "row 0 (2024-01-01 00:00:00) is tz-naive"):
        validate_candles(frame)


def test_fewer_rows_than_min_rows():
    with raises(ValueError, "candles: has 6 rows, fewer than min_rows = 7"):
        validate_candles(make_candles(), min_rows=7)
    validate_candles(make_candles(), min_rows=6)


def test_name_prefixes_every_message():
    with raises(ValueError, "context: is empty"):
        validate_candles(make_candles().iloc[:0], name="context")


def test_the_first_bad_row_is_reported():
    frame = set_row(make_candles(), 4, close=np.nan)
    frame = set_row(frame, 2, high=1.0)
    with raises(ValueError, "column 'high' at row 2 (2024-01-01 02:00:00) is 1.0"):
        validate_candles(frame)


# --- panels -------------------------------------------------------------------------------


def test_panel_with_unequal_lengths_passes():
    panel = make_panel()
    result = validate_panel(panel, min_rows=3)
    pd.testing.assert_index_equal(result.index, panel.index)
    assert list(result.columns) == list(FEATURE_COLUMNS)
    assert (result.dtypes == np.float64).all()


def test_panel_interleaved_by_time_passes():
    validate_panel(make_panel().sort_index(level="timestamp"))


def test_panel_needs_a_two_level_index():
    with raises(TypeError, "a panel needs a 2-level MultiIndex (asset, timestamp), "
                           "got DatetimeIndex with 1 level(s)"):
        validate_panel(make_candles())


def test_panel_timestamp_level_must_be_datetime():
    panel = make_panel()
    panel.index = panel.index.set_levels(panel.index.levels[1].astype(str), level=1)
    with raises(TypeError, "the timestamp level must hold datetimes"):
        validate_panel(panel)


def test_panel_duplicate_timestamp_names_the_asset():
    panel = make_panel()
    stamps = panel.index.get_level_values(1)[[0, 1, 2, 3, 4, 4, 6]]
    panel.index = pd.MultiIndex.from_arrays([panel.index.get_level_values(0), stamps])
    with raises(ValueError, "duplicate timestamp: row 5 (asset 'B', 2024-01-01 00:00:00) "
                            "repeats row 4 (asset 'B', 2024-01-01 00:00:00)"):
        validate_panel(panel)


def test_panel_unsorted_timestamps_name_the_asset():
    panel = make_panel()
    stamps = panel.index.get_level_values(1)[[1, 0, 2, 3, 4, 5, 6]]
    panel.index = pd.MultiIndex.from_arrays([panel.index.get_level_values(0), stamps])
    with raises(ValueError, "timestamps are not sorted: row 1 (asset 'A', 2024-01-01 00:00:00) "
                            "comes after row 0 (asset 'A', 2024-01-01 01:00:00)"):
        validate_panel(panel)


def test_panel_value_error_names_the_asset():
    panel = set_row(make_panel(), 5, high=9.0, low=12.0)
    with raises(ValueError, "column 'high' at row 5 (asset 'B', 2024-01-01 01:00:00) is 9.0, "
                            "below low = 12.0"):
        validate_panel(panel)


def test_panel_min_rows_applies_per_asset():
    with raises(ValueError, "asset 'B' has 3 rows, fewer than min_rows = 4"):
        validate_panel(make_panel(), min_rows=4)


def test_panel_missing_asset_name_is_named():
    panel = make_panel()
    assets = panel.index.get_level_values(0).to_numpy(dtype=object)
    assets[5] = np.nan
    panel.index = pd.MultiIndex.from_arrays([assets, panel.index.get_level_values(1)],
                                            names=panel.index.names)
    with raises(ValueError, "the asset name at row 5 (asset nan, 2024-01-01 01:00:00) is "
                            "missing"):
        validate_panel(panel)


def test_real_cn_index_panel_passes(cn_index_file: Path):
    path = cn_index_file
    frame = pd.read_parquet(path).set_index(["asset", "timestamp"])
    result = validate_panel(frame, min_rows=100)
    assert len(result) == len(frame)
    assert list(result.columns) == list(FEATURE_COLUMNS)


# --- model features -----------------------------------------------------------------------


def test_assemble_features_passes_all_six_columns_through_as_float32():
    candles = validate_candles(make_candles())
    features = assemble_features(candles)
    assert features.dtype == np.float32
    assert features.shape == (6, 6)
    np.testing.assert_array_equal(features, candles.to_numpy().astype(np.float32))


def test_assemble_features_without_volume_zeroes_volume_and_amount():
    # Reference quirk: a given amount column is zeroed too when volume is absent.
    candles = validate_candles(make_candles().drop(columns=["volume"]))
    features = assemble_features(candles)
    np.testing.assert_array_equal(features[:, :4], candles.to_numpy()[:, :4].astype(np.float32))
    assert (features[:, 4:] == 0).all()


def test_assemble_features_derives_amount_in_float64():
    candles = pd.DataFrame(
        {"open": [0.1], "high": [0.7], "low": [0.05], "close": [0.3], "volume": [3.3]},
        index=pd.DatetimeIndex(["2024-01-01"]),
    )
    features = assemble_features(validate_candles(candles))
    # 3.3 * mean(0.1, 0.7, 0.05, 0.3) = 3.3 * 0.2875 = 0.94875; float32 arithmetic gives
    # 0.9487501 instead.
    assert features[0, 5] == np.float32(0.94875)
    np.testing.assert_array_equal(features[0, :5], np.float32([0.1, 0.7, 0.05, 0.3, 3.3]))


# --- repair mode ----------------------------------------------------------------------------
def broken_candles():
    """Twelve hourly candles, rows 1-9 each breaking one rule of RULES (row 0 and 10-11 clean);
    the last two timestamps are swapped and row 3 repeats row 2's timestamp."""
    frame = make_candles(12)
    set_row(frame, 1, close=np.nan)
    set_row(frame, 4, volume=np.inf)
    set_row(frame, 5, open=0.0)
    set_row(frame, 6, amount=-3.0)
    set_row(frame, 7, high=frame["low"].iloc[7] - 0.5)  # high below low (and below the body)
    set_row(frame, 8, high=frame["close"].iloc[8] - 0.01)  # high below close only
    set_row(frame, 9, low=frame["open"].iloc[9] + 0.01)  # low above open only
    stamps = frame.index.to_numpy().copy()
    stamps[3] = stamps[2]
    stamps[10], stamps[11] = stamps[11], stamps[10]
    frame.index = pd.DatetimeIndex(stamps, name="timestamp")
    return frame


def test_repair_counts_each_rule_and_names_the_kept_rows():
    frame = broken_candles()
    given = frame.copy()
    repair = repair_candles(frame)
    pd.testing.assert_frame_equal(frame, given)  # the input is not modified
    assert repair.counts == {
        "unsorted timestamps": 1, "duplicate timestamp": 1, "missing value": 1,
        "infinite value": 1, "non-positive price": 1, "negative volume or amount": 1,
        "high below low": 1, "high below max(open, close)": 1, "low above min(open, close)": 1}
    assert set(repair.counts) <= set(RULES)
    # Dropped: 1 (NaN), 3 (repeats 2), 4 (inf), 5 (zero open); 11 now comes before 10.
    assert repair.kept.tolist() == [0, 2, 6, 7, 8, 9, 11, 10]
    out = repair.candles
    assert out.index.is_monotonic_increasing and not out.index.has_duplicates
    assert out.index.equals(frame.index[repair.kept])
    validate_candles(out)  # what repair returns passes the raise mode


def test_repair_fixes_values_as_the_table_says():
    frame = broken_candles()
    out = repair_candles(frame).candles
    row = {pos: out.iloc[i] for i, pos in enumerate(repair_candles(frame).kept)}
    assert row[6]["amount"] == 0.0 and row[6]["volume"] == frame["volume"].iloc[6]
    for pos in (7, 8):  # high raised to the top of the body
        assert row[pos]["high"] == max(frame["open"].iloc[pos], frame["close"].iloc[pos])
    assert row[7]["low"] == frame["low"].iloc[7]  # already below the body
    assert row[9]["low"] == min(frame["open"].iloc[9], frame["close"].iloc[9])
    for pos in (0, 2, 10, 11):  # clean rows pass through unchanged
        np.testing.assert_array_equal(row[pos].to_numpy(), frame.iloc[pos].to_numpy())


def test_repair_of_clean_candles_changes_nothing():
    frame = make_candles(8)
    repair = repair_candles(frame)
    assert repair.counts == {} and repair.kept.tolist() == list(range(8))
    pd.testing.assert_frame_equal(repair.candles, validate_candles(frame), check_freq=False)


def test_repair_still_raises_for_what_no_row_repair_fixes():
    with raises(ValueError, "candles: missing required column(s) ['low']"):
        repair_candles(make_candles().drop(columns="low"))
    with raises(TypeError, "candles: the index must hold datetimes"):
        repair_candles(make_candles().reset_index(drop=True))
    frame = set_row(make_candles(3), 0, close=np.nan)
    with raises(ValueError, "candles: has 2 rows after repair (1 missing value), fewer than "
                            "min_rows = 3"):
        repair_candles(frame, min_rows=3)


def test_raise_mode_breaks_ties_in_rule_table_order():
    # Row 7 breaks "high below low" and "high below max(open, close)": the first is named.
    with raises(ValueError, "column 'high' at row 0 (2024-01-01 07:00:00) is 9.95, below low "
                            "= 10.45"):
        validate_candles(broken_candles().iloc[7:8])


def test_check_values_applies_the_rules_of_the_columns_present():
    index = pd.RangeIndex(3)
    check_values(np.array([[-1.0, 2.0]] * 3), ["x", "y"], index, "X")  # no sign rule for x
    with raises(ValueError, "X: column 'close' at row 1 is -1.0, but prices must be positive"):
        check_values(np.array([[1.0], [-1.0], [2.0]]), ["close"], index, "X")
    with raises(ValueError, "X: column 'y' at row 2 is inf"):
        check_values(np.array([[1.0, 1.0], [1.0, 1.0], [1.0, np.inf]]), ["x", "y"], index, "X")


def test_check_cells_names_text_and_missing_cells_with_the_users_column():
    frame = make_candles(4).rename(columns={"close": "Close"})
    check_cells(frame, "y")
    text = frame.astype({"open": object})
    text.iloc[2, 0] = "n/a"
    with raises(TypeError, "y: column 'open' has non-numeric dtype object; row 2 "
                           "(2024-01-01 02:00:00) holds 'n/a'"):
        check_cells(text, "y")
    with raises(ValueError, "y: column 'Close' at row 3 (2024-01-01 03:00:00) is NaN"):
        check_cells(set_row(frame.copy(), 3, Close=np.nan), "y")
    check_cells(set_row(frame.copy(), 3, Close=-5.0), "y")  # signs are not its business


def test_check_cells_names_backward_and_repeated_stamps_within_each_series():
    stamps = pd.date_range("2024-01-01", periods=3, freq="D")
    panel = pd.DataFrame({"close": np.arange(1.0, 7.0)},
                         index=pd.MultiIndex.from_product([["a", "b"], stamps]))
    check_cells(panel, "y")
    check_cells(panel.swaplevel().sort_index().swaplevel(), "y")  # series interleaved: fine
    with raises(ValueError, "y: timestamps are not sorted: row 5 (asset 'b', 2024-01-02 "
                            "00:00:00) comes after row 4 (asset 'b', 2024-01-03 00:00:00)"):
        check_cells(panel.iloc[[0, 1, 2, 3, 5, 4]], "y")
    with raises(ValueError, "y: duplicate timestamp: row 1 (2) repeats row 0 (2)"):
        check_cells(pd.Series([1.0, 2.0], index=[2, 2]), "y")
    with raises(ValueError, "y: timestamps are not sorted: row 1 (2024-01) comes after"):
        months = pd.PeriodIndex(["2024-02", "2024-01"], freq="M")
        check_cells(pd.Series([1.0, 2.0], index=months), "y")


def test_the_user_guide_lists_every_rule_with_its_repair():
    text = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text()
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", text, re.M)
    assert {rule: repair for rule, repair in rows if rule in RULES} == RULES


def test_check_cells_leaves_frames_of_whole_series_to_their_converter():
    nested = pd.DataFrame({"var_0": [pd.Series([1.0, np.nan]), pd.Series([2.0, 3.0])]})
    check_cells(nested, "y")  # sktime's "nested_univ" panels: sktime converts them first
    with raises(TypeError, "(candles are numbers, not text or categorical values)"):
        check_cells(pd.DataFrame({"x": ["a", "b"]}), "y")
