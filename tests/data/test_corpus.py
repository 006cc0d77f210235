import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kronos_sk.data import CandleCorpus, TimeSplit
from kronos_sk.data.corpus import NO_VALIDATION

ROWS = 100
GAP_AT = 40  # AAA: 20 extra days between rows 39 and 40
JUMP_AT = 60  # BBB: close jumps by +30% at row 60
BAD_AT = 30  # CCC: high < low at row 30
NAN_AT = 70  # CCC: volume missing at row 70


def candles(asset, n=ROWS, start="2024-01-01", freq="D", tz=None, seed=0, gap_at=None,
            jump_at=None, amount=True):
    """A random walk of valid candles with daily moves of ~1% (far below any jump threshold)."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(start, periods=n, freq=freq, tz=tz)
    if gap_at is not None:
        stamps = stamps[:gap_at].append(stamps[gap_at:] + pd.Timedelta(days=20))
    moves = rng.normal(0.0, 0.01, n)
    if jump_at is not None:
        moves[jump_at] = math.log(1.3)
    close = 100.0 * np.exp(np.cumsum(moves))
    open_ = close * np.exp(rng.normal(0.0, 0.003, n))
    frame = pd.DataFrame({
        "asset": asset,
        "timestamp": stamps,
        "open": open_,
        "high": np.maximum(open_, close) * 1.002,
        "low": np.minimum(open_, close) * 0.998,
        "close": close,
        "volume": rng.uniform(1e3, 2e3, n),
    })
    if amount:
        frame["amount"] = frame["volume"] * frame["close"]
    return frame


def stock_panel():
    ccc = candles("CCC", seed=3)
    ccc.loc[BAD_AT, "high"] = ccc.loc[BAD_AT, "low"] * 0.9
    ccc.loc[NAN_AT, "volume"] = np.nan
    return pd.concat([candles("AAA", seed=1, gap_at=GAP_AT),
                      candles("BBB", seed=2, jump_at=JUMP_AT), ccc], ignore_index=True)


def crypto_panel():
    """Hourly, Shanghai time, no amount column."""
    return pd.concat([candles("BTC", n=150, freq="h", tz="Asia/Shanghai", seed=4, amount=False),
                      candles("ETH", n=120, freq="h", tz="Asia/Shanghai", seed=5, amount=False)],
                     ignore_index=True)


@pytest.fixture
def files(tmp_path):
    stocks, crypto = tmp_path / "stocks.parquet", tmp_path / "crypto.csv"
    pq.write_table(pa.Table.from_pandas(stock_panel(), preserve_index=False), stocks)
    crypto_panel().to_csv(crypto, index=False)
    return stocks, crypto


def test_index_summarises_each_asset_from_keys_only(files):
    corpus = CandleCorpus(list(files), weights={"crypto": 2.0})
    table = corpus.assets
    assert corpus.markets == ("stocks", "crypto")
    assert corpus.market_weights == {"stocks": 1.0, "crypto": 2.0}
    assert table["asset"].tolist() == ["AAA", "BBB", "CCC", "BTC", "ETH"]
    assert table["rows"].tolist() == [ROWS, ROWS, ROWS, 150, 120]
    assert table["amount_derived"].tolist() == [False] * 3 + [True] * 2
    assert table["median_step"].tolist() == [pd.Timedelta("1D")] * 3 + [pd.Timedelta("1h")] * 2
    assert table["first"][0] == pd.Timestamp("2024-01-01")
    assert table["last"][0] == pd.Timestamp("2024-01-01") + pd.Timedelta(days=ROWS - 1 + 20)
    assert table["last"][3] == pd.Timestamp("2024-01-07 05:00", tz="Asia/Shanghai")
    assert len(corpus) == 5


def test_markets_can_merge_files_and_directories_are_scanned(files, tmp_path):
    corpus = CandleCorpus(tmp_path, markets={"stocks": "all", "crypto": "all"})
    assert corpus.markets == ("all",)
    assert sorted(corpus.assets["asset"]) == ["AAA", "BBB", "BTC", "CCC", "ETH"]
    with pytest.raises(ValueError, match="not among"):
        CandleCorpus(tmp_path, markets={"stonks": "x"})


def test_construction_reads_no_value_column_and_load_reads_only_its_asset(tmp_path):
    """Garbage in asset BBB's close column: indexing and loading AAA never touch those bytes."""
    path = tmp_path / "stocks.parquet"
    panel = pd.concat([candles("AAA", seed=1), candles("BBB", seed=2)], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(panel, preserve_index=False), path, row_group_size=ROWS)
    group = pq.ParquetFile(path).metadata.row_group(1)
    close = next(group.column(i) for i in range(group.num_columns)
                 if group.column(i).path_in_schema == "close")
    start = close.dictionary_page_offset or close.data_page_offset
    data = bytearray(path.read_bytes())
    data[start: start + close.total_compressed_size] = b"\xff" * close.total_compressed_size
    path.write_bytes(bytes(data))

    corpus = CandleCorpus(path)
    assert corpus.assets["rows"].tolist() == [ROWS, ROWS]
    np.testing.assert_array_equal(corpus.load("AAA")["close"], panel["close"][:ROWS])
    with pytest.raises(OSError):
        corpus.load("BBB")


def test_csv_value_columns_are_parsed_only_on_load(tmp_path):
    path = tmp_path / "broken.csv"
    frame = candles("AAA").astype({"close": object})
    frame.loc[5, "close"] = "n/a!"
    frame.to_csv(path, index=False)
    corpus = CandleCorpus(path)
    assert corpus.assets["rows"].tolist() == [ROWS]
    with pytest.raises(TypeError, match="'close' is not numeric"):
        corpus.load(0)


def test_load_keeps_the_zone_and_derives_a_missing_amount(files):
    corpus = CandleCorpus(list(files))
    btc = corpus.load("BTC")
    expected = crypto_panel().query("asset == 'BTC'").reset_index(drop=True)
    assert str(btc["timestamp"].dt.tz) == "UTC+08:00"  # CSV keeps the offset, not the name
    assert btc["timestamp"].dt.hour.tolist() == expected["timestamp"].dt.hour.tolist()
    mean_price = expected[["open", "high", "low", "close"]].mean(axis=1)
    np.testing.assert_allclose(btc["amount"], expected["volume"] * mean_price, rtol=1e-12)
    assert btc.attrs == {"asset": "BTC", "market": "crypto", "amount_derived": True,
                         "dropped_rows": 0, "repaired": {}}
    assert corpus.load("AAA").attrs["amount_derived"] is False


def segment_starts(frame):
    """Row positions (in the cleaned frame) where a new segment begins."""
    return np.flatnonzero(np.diff(frame["segment"].to_numpy())) + 1


def test_segments_end_exactly_at_the_gap_the_jump_and_the_bad_rows(files):
    corpus = CandleCorpus(files[0], max_abs_log_return=math.log(1.11))
    aaa, bbb, ccc = (corpus.load(name) for name in ("AAA", "BBB", "CCC"))
    assert segment_starts(aaa).tolist() == [GAP_AT]
    assert segment_starts(bbb).tolist() == [JUMP_AT]
    # The row with a missing value is dropped and the next good row starts a segment; the
    # row with high < low is repaired in place (high and low widened over open and close).
    assert len(ccc) == ROWS - 1 and ccc.attrs["dropped_rows"] == 1
    assert ccc.attrs["repaired"] == {"missing value": 1, "high below low": 1}
    assert segment_starts(ccc).tolist() == [NAN_AT]
    source = candles("CCC", seed=3)
    assert not ccc["timestamp"].isin(source["timestamp"][[NAN_AT]]).any()
    bad = ccc.iloc[BAD_AT]
    assert bad["high"] == max(bad["open"], bad["close"]) == max(
        source.loc[BAD_AT, ["open", "close"]])
    assert bad["low"] == source.loc[BAD_AT, "low"]


def test_jumps_split_only_where_asked(files):
    assert segment_starts(CandleCorpus(files[0]).load("BBB")).tolist() == []
    per_market = CandleCorpus(list(files), max_abs_log_return={"stocks": 0.2})
    assert segment_starts(per_market.load("BBB")).tolist() == [JUMP_AT]
    with pytest.raises(ValueError, match="unknown markets"):
        CandleCorpus(list(files), max_abs_log_return={"bonds": 0.2})


def test_a_wider_gap_factor_keeps_the_gap_inside_a_segment(files):
    # The gap is a 21-day step against a 1-day median.
    assert segment_starts(CandleCorpus(files[0], max_gap_factor=21).load("AAA")).tolist() == []
    assert segment_starts(CandleCorpus(files[0], max_gap_factor=20.9).load("AAA")).tolist() == [
        GAP_AT]


def test_gap_factor_per_market_with_a_default(files):
    corpus = CandleCorpus(files[0], max_gap_factor={"stocks": 21})
    assert segment_starts(corpus.load("AAA")).tolist() == []
    corpus = CandleCorpus(files[0], max_gap_factor={"*": 20.9})
    assert segment_starts(corpus.load("AAA")).tolist() == [GAP_AT]
    assert corpus.window_counts(10, time_split=TimeSplit(), split="train").sum() > 0
    with pytest.raises(ValueError, match="unknown markets"):
        CandleCorpus(files[0], max_gap_factor={"bonds": 21})
    with pytest.raises(ValueError, match="max_gap_factor must be > 1"):
        CandleCorpus(files[0], max_gap_factor={"stocks": 0.5})


def test_asset_references(files):
    corpus = CandleCorpus(list(files))
    assert corpus.load(3).attrs["asset"] == "BTC"
    assert corpus.load(("stocks", "BBB")).attrs["asset"] == "BBB"
    with pytest.raises(KeyError, match="not in the corpus"):
        corpus.load("XYZ")
    with pytest.raises(IndexError):
        corpus.load(5)


def test_same_asset_in_two_markets_needs_the_market_to_load(tmp_path):
    for name in ("a", "b"):
        pq.write_table(pa.Table.from_pandas(candles("AAA"), preserve_index=False),
                       tmp_path / f"{name}.parquet")
    corpus = CandleCorpus(tmp_path)
    with pytest.raises(KeyError, match="pass \\(market, asset\\)"):
        corpus.load("AAA")
    assert corpus.load(("b", "AAA")).attrs["market"] == "b"
    with pytest.raises(ValueError, match="more than one file"):
        CandleCorpus(tmp_path, markets={"a": "x", "b": "x"})


def test_cutoff_is_read_in_each_files_zone(files):
    corpus = CandleCorpus(list(files))
    starts = corpus.validation_starts(TimeSplit(cutoff="2024-01-03 12:00"))
    assert starts[0] == pd.Timestamp("2024-01-03 12:00").value
    assert starts[3] == pd.Timestamp("2024-01-03 12:00", tz="Asia/Shanghai").value
    # An aware cutoff is one instant everywhere it applies.
    aware = corpus.validation_starts({"crypto": TimeSplit(cutoff="2024-01-03 04:00+00:00"),
                                      "*": TimeSplit()})
    assert aware[3] == pd.Timestamp("2024-01-03 12:00", tz="Asia/Shanghai").value
    assert aware[0] == NO_VALIDATION
    with pytest.raises(ValueError, match="naive"):
        corpus.validation_starts(TimeSplit(cutoff="2024-01-03 04:00+00:00"))


def test_last_counts_back_from_each_files_end(files):
    corpus = CandleCorpus(list(files))
    starts = corpus.validation_starts(TimeSplit(last="10D"))
    stocks_last = corpus.assets["last"][0]
    assert starts[0] == (stocks_last - pd.Timedelta("10D")).value + 1
    # Both rules: the earlier start wins.
    both = corpus.validation_starts(TimeSplit(cutoff="2024-01-02", last="10D"))
    assert both[0] == pd.Timestamp("2024-01-02").value


def test_split_rules_per_market_must_cover_every_market(files):
    corpus = CandleCorpus(list(files))
    with pytest.raises(ValueError, match=r"no rule for markets \['crypto'\]"):
        corpus.validation_starts({"stocks": TimeSplit(cutoff="2024-02-01")})
    with pytest.raises(ValueError, match="unknown markets"):
        corpus.validation_starts({"bonds": TimeSplit(), "*": TimeSplit()})
    with pytest.raises(ValueError):
        TimeSplit(last="not an offset")


def test_window_counts_estimate_from_the_index(files):
    corpus = CandleCorpus(files[0])
    length = 10
    everything = corpus.window_counts(length, time_split=TimeSplit(), split="train")
    # AAA: segments of 40 and 60 rows; BBB and CCC: one segment (jumps, bad rows not seen).
    assert everything.tolist() == [31 + 51, 91, 91]
    cutoff = TimeSplit(cutoff=str(pd.Timestamp("2024-01-01") + pd.Timedelta(days=GAP_AT + 20 + 30)))
    train = corpus.window_counts(length, time_split=cutoff, split="train")
    validation = corpus.window_counts(length, time_split=cutoff, split="validation")
    # AAA: 30 rows of its second segment before the cutoff, 30 at or after it.
    assert train[0] == pytest.approx(31 + 21, abs=1)
    assert validation[0] == pytest.approx(21, abs=1)
    assert corpus.window_counts(ROWS + 1, time_split=TimeSplit(), split="train").sum() == 0
