"""A checkpoint's own spread (``spread``, ``drift`` and ``candles`` in inference.json): read
once, applied by every face to valid paths, never to the raw decoding."""

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from kronos_sk import KronosForecaster, KronosPipeline
from kronos_sk.calibration import (DRIFT_GRID, MIN_SHAPE_ROWS, apply_spread, fit_drift,
                                   keep_drift, shape_candles, widen_paths)
from kronos_sk.checkpoints import CheckpointError, Spread, model_context, model_spread
from kronos_sk.metrics import realized_volatility

SETTINGS = dict(n_samples=16, random_state=0)


@pytest.fixture(scope="module")
def widened(compat_dir, tmp_path_factory):
    """The fixture predictor with a spread of 1.5 and half its drift in its inference.json."""
    model = tmp_path_factory.mktemp("spread") / "model"
    shutil.copytree(compat_dir / "model", model)
    (model / "inference.json").write_text(
        '{"max_context": 128, "spread": 1.5, "tail": 0.3, "ramp": 0.5, "drift": 0.5}')
    return model


def test_the_spread_is_read_from_inference_json_and_checked(compat_dir, widened, tmp_path):
    assert model_spread(widened) == Spread(1.5, 0.3, 0.5, 0.5) and model_context(widened) == 128
    assert model_spread(compat_dir / "model") == Spread()  # released checkpoints: as sampled
    model = tmp_path / "model"
    shutil.copytree(compat_dir / "model", model)
    for text, message in (('{"spread": 0}', "spread must be a positive number, got 0"),
                          ('{"spread": "wide"}', "spread must be a positive number"),
                          ('{"tail": -0.1}', r"tail must be a number >= 0, got -0\.1"),
                          ('{"ramp": 0}', "ramp must be a positive number, got 0"),
                          ('{"drift": 1.5}', r"drift must be a number in \[0, 1\], got 1\.5"),
                          ('{"drift": true}', r"drift must be a number in \[0, 1\], got True"),
                          ('{"candles": 1}', "candles must be true or false, got 1"),
                          ('{"gap_move": 0.2}', r"unknown key\(s\) \['gap_move'\]"),
                          ('{"spreads": 1.2}', r"unknown key\(s\) \['spreads'\]"),
                          ('[512]', "expected a JSON object, got list")):
        (model / "inference.json").write_text(text)
        with pytest.raises(CheckpointError, match=message):
            model_spread(model)
    (model / "inference.json").write_text('{"spread": 1.2, "tail": 0.5}')  # written before ramps
    assert model_spread(model) == Spread(1.2, 0.5, 1.0, 1.0)
    (model / "inference.json").write_text('{"candles": true}')
    assert model_spread(model) == Spread(candles=True)
    assert Spread(candles=True).adjusts


def test_widened_paths_keep_the_mean_and_the_steps_and_spread_at_the_horizon(compat_candles):
    rng = np.random.default_rng(0)
    steps = rng.normal(0, 0.01, size=(3, 200, 10))
    close = 20 * np.exp(np.cumsum(steps, axis=-1))
    paths = np.repeat(close[..., None], 6, axis=-1)
    paths[..., 4:] = 1000.0
    out = widen_paths(paths.copy(), Spread(1.5), np.array([True, True, True]))
    np.testing.assert_allclose(out[..., 3].mean(axis=1), close.mean(axis=1), rtol=1e-12)
    log_spread = np.log(out[..., -1, 3]).std(axis=1) / np.log(close[..., -1]).std(axis=1)
    np.testing.assert_allclose(log_spread, 1.5, rtol=0.02)
    # A tail widens the outer quantiles more than the inner ones.
    tailed = np.log(widen_paths(paths.copy(), Spread(1.5, 0.5), np.ones(3, bool))[..., -1, 3])
    plain = np.log(out[..., -1, 3])

    def ratio(values):
        q = np.quantile(values, [0.05, 0.25, 0.75, 0.95], axis=1)
        return (q[3] - q[0]) / (q[2] - q[1])
    assert (ratio(tailed) > 1.1 * ratio(plain)).all()
    # The square-root ramp widens from the first step on; the linear one leaves it alone.
    rooted = widen_paths(paths.copy(), Spread(1.5, 0.0, 0.5), np.ones(3, bool))
    first = [np.log(p[..., 0, 3]).std(axis=1) / np.log(close[..., 0]).std(axis=1)
             for p in (out, rooted)]
    assert (first[0] < 1.05).all() and (first[1] > 1.15).all()
    np.testing.assert_allclose(np.log(rooted[..., -1, 3]).std(axis=1)
                               / np.log(close[..., -1]).std(axis=1), 1.5, rtol=0.02)
    # Paths go further, not faster: the mean squared step (realized volatility, first step
    # included) is kept, where a drift added to every step would raise it by
    # (1.5^2 - 1) / 10 = 12.5 %.
    for widened in (out, rooted, widen_paths(paths.copy(), Spread(0.7, 0.8), np.ones(3, bool)),
                    widen_paths(paths.copy(), Spread(0.7, 0.8, 0.5), np.ones(3, bool))):
        kept = realized_volatility(widened[..., 3], 20).mean(axis=1) / realized_volatility(
            close, 20).mean(axis=1)
        np.testing.assert_allclose(kept, 1.0, atol=0.02)
    np.testing.assert_allclose(out[..., 4], 1000.0, rtol=1e-12)  # volume as sampled


def test_every_face_adjusts_valid_paths_by_the_checkpoints_spread(compat_dir, widened,
                                                                  compat_candles):
    tokenizer, context = compat_dir / "tokenizer", compat_candles.iloc[:100]
    plain = KronosPipeline.from_pretrained(compat_dir / "model", tokenizer, max_context=128)
    pipe = KronosPipeline.from_pretrained(widened, tokenizer)
    assert pipe.spread == Spread(1.5, 0.3, 0.5, 0.5)
    sampled = plain.sample(context, horizon=8, **SETTINGS).paths
    paths = pipe.sample(context, horizon=8, **SETTINGS).paths
    last = context["close"].to_numpy()[-1:]
    np.testing.assert_allclose(paths, apply_spread(sampled.copy(), pipe.spread,
                                                   np.array([True]), last), rtol=1e-6)
    # The point forecast moves from the last close by half the sampled mean's move.
    np.testing.assert_allclose(paths[0, ..., 3].mean(axis=0),
                               last + 0.5 * (sampled[0, ..., 3].mean(axis=0) - last), rtol=1e-5)
    raw = pipe.sample(context, horizon=8, valid_candles=False, **SETTINGS).paths
    np.testing.assert_array_equal(raw, plain.sample(context, horizon=8, valid_candles=False,
                                                    **SETTINGS).paths)
    future = pd.date_range(context.index[-1], periods=9, freq="5min")[1:]
    forecaster = KronosForecaster(model=widened, tokenizer=tokenizer, **SETTINGS).fit(context)
    np.testing.assert_allclose(forecaster.sample(fh=future).to_numpy().reshape(16, 8, 6),
                               pipe.sample(context, future=future, **SETTINGS).paths[0],
                               rtol=1e-6)


def test_kept_drift_moves_the_mean_towards_the_last_close_and_keeps_each_paths_spread():
    rng = np.random.default_rng(1)
    close = 20 * np.exp(0.003 * np.arange(1, 11) + np.cumsum(rng.normal(0, 0.01, (3, 50, 10)),
                                                             axis=-1))
    paths = np.stack([close, close * 1.01, close * 0.98, close, np.full_like(close, 1e3),
                      close * 1e3], axis=-1)
    last = np.array([20.0, 20.0, 20.0])
    positive = np.array([True, True, False])
    out = keep_drift(paths.copy(), 0.3, last, positive)
    target = last[:, None] + 0.3 * (close.mean(axis=1) - last[:, None])
    np.testing.assert_allclose(out[..., 3].mean(axis=1), target, rtol=1e-12)
    # About the new mean the paths spread by k = sqrt((1 - 0.3^2 / 50) / (1 - 1 / 50)): in
    # log prices for positive series (every price and the amount of a path scaled alike)...
    k = np.sqrt((1 - 0.09 / 50) / (1 - 1 / 50))
    np.testing.assert_allclose(np.log(out[:2, ..., :4]).std(axis=1),
                               k * np.log(paths[:2, ..., :4]).std(axis=1), rtol=1e-9)
    np.testing.assert_allclose(out[:2, ..., 5] / out[:2, ..., 3], 1e3, rtol=1e-12)
    np.testing.assert_allclose(out[:2, ..., 1] / out[:2, ..., 3], 1.01, rtol=1e-12)
    # ... in prices elsewhere, each path's four prices shifted alike; volume never moves.
    np.testing.assert_allclose(out[2, ..., 3].std(axis=0), k * close[2].std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(out[2, ..., 1] - out[2, ..., 3], 0.01 * close[2], rtol=1e-9)
    np.testing.assert_array_equal(out[..., 4], paths[..., 4])
    # The whole drift, or one path (no mean of its own), leaves the paths as sampled.
    np.testing.assert_array_equal(keep_drift(paths.copy(), 1.0, last, positive), paths)
    np.testing.assert_array_equal(keep_drift(paths[:, :1].copy(), 0.3, last, positive),
                                  paths[:, :1])
    with pytest.raises(ValueError, match=r"share must be in \[0, 1\], got 1\.2"):
        keep_drift(paths.copy(), 1.2, last, positive)


def test_the_mean_paths_candles_keep_the_drift_share_of_their_moves():
    rng = np.random.default_rng(3)
    close = 20 * np.exp(0.003 * np.arange(1, 11) + np.cumsum(rng.normal(0, 0.01, (4, 50, 10)),
                                                             axis=-1))
    steps = np.arange(10)
    ratios = np.exp(np.stack([0.004 * np.sin(steps), 0.015 + 0.003 * np.cos(steps),
                              -0.015 + 0.003 * np.sin(2 * steps)]))  # open, high, low / close
    paths = np.stack([*(close * ratio for ratio in ratios), close, np.full_like(close, 1e3),
                      close * 1e3], axis=-1)
    paths[3, 0, :, 0] = paths[3, 0, :, 1]  # one path opens at its high, one at its low
    paths[3, 1, :, 0] = paths[3, 1, :, 2]
    paths[3, 2, :, 1] = np.maximum(paths[3, 2, :, 0], paths[3, 2, :, 3])  # and one has no wick
    last = np.full(4, 20.0)
    positive = np.array([True, True, False, True])
    out = apply_spread(paths.copy(), Spread(drift=0.3), positive, last)
    # The close is keep_drift's; the mean's open, high and low about it keep 0.3 of their
    # moves about their average over the horizon (in log prices where prices are positive,
    # in prices elsewhere): every path's open moved by one factor (shift) per step, its
    # wicks beyond the body scaled by one factor per step and side.
    np.testing.assert_array_equal(out[..., 3], keep_drift(paths.copy(), 0.3, last,
                                                          positive)[..., 3])
    mean = out.mean(axis=1)
    sampled = np.log(ratios).T  # (H, 3): every path's, so the mean's
    kept = sampled.mean(axis=0) + 0.3 * (sampled - sampled.mean(axis=0))
    np.testing.assert_allclose(np.log(mean[:2, :, :3] / mean[:2, :, 3:4]),
                               np.broadcast_to(kept, (2, 10, 3)), atol=1e-12)
    drawn = (paths[2, ..., :3] - paths[2, ..., 3:4]).mean(axis=0)  # each path shifted alike
    np.testing.assert_allclose(mean[2, :, :3] - mean[2, :, 3:4],
                               drawn.mean(axis=0) + 0.3 * (drawn - drawn.mean(axis=0)),
                               rtol=1e-9)
    # Candles stay candles, and a bar without a wick keeps none.
    assert (out[..., 1] >= np.maximum(out[..., 0], out[..., 3])).all()
    assert (out[..., 2] <= np.minimum(out[..., 0], out[..., 3])).all()
    np.testing.assert_array_equal(out[3, 2, :, 1], np.maximum(out[3, 2, :, 0], out[3, 2, :, 3]))
    assert (out[3, 3, :, 1] > np.maximum(out[3, 3, :, 0], out[3, 3, :, 3])).all()
    # Each path keeps its candles about the mean's.
    np.testing.assert_allclose(np.log(out[:2, :, :, :3] / out[:2, :, :, 3:4]).std(axis=1), 0,
                               atol=1e-12)
    # One path, or the whole drift, is left as sampled.
    np.testing.assert_array_equal(apply_spread(paths[:, :1].copy(), Spread(drift=0.3), positive,
                                               last), paths[:, :1])
    np.testing.assert_array_equal(apply_spread(paths.copy(), Spread(), positive, last), paths)


def test_the_drift_share_is_fitted_to_what_the_drift_foretells():
    rng = np.random.default_rng(2)
    drift = rng.normal(0, 0.03, (400, 1, 1)) * np.arange(1, 11) / 10  # each window's own
    close = 50 * np.exp(drift + np.cumsum(rng.normal(0, 0.005, (400, 20, 10)), axis=-1))
    paths = np.repeat(close[..., None], 6, axis=-1)
    last = np.full(400, 50.0)
    # Truth that follows the drift keeps all of it; truth that ignores it keeps the least.
    followed = np.repeat((50 * np.exp(drift[:, 0] + rng.normal(0, 0.01, (400, 10))))[..., None],
                         6, axis=-1)
    ignored = np.repeat((50 * np.exp(rng.normal(0, 0.01, (400, 10))))[..., None], 6, axis=-1)
    assert fit_drift(paths, followed, last) == 1.0
    assert fit_drift(paths, ignored, last) == DRIFT_GRID[0] == 0.1
    assert fit_drift(paths[:, :1], ignored, last) == 1.0  # one path: nothing to draw in


def _candles(rng, close, previous_close, gap, wick):
    """Candles (..., 6) about `close`: opens `gap` (log sd) from the close before, wicks of
    about `wick` beyond the body, volume 1e3 and amount close * 1e3."""
    opens = previous_close * np.exp(rng.normal(0, gap, close.shape))
    highs = np.maximum(opens, close) * np.exp(np.abs(rng.normal(0, wick, close.shape)))
    lows = np.minimum(opens, close) * np.exp(-np.abs(rng.normal(0, wick, close.shape)))
    return np.stack([opens, highs, lows, close, np.full_like(close, 1e3), close * 1e3], axis=-1)


def _parts(candles, previous_close, space):
    """Open gaps, upper and lower wicks and close moves of candles (..., >= 4) in `space`."""
    o, h, l, c = np.moveaxis(space(candles[..., :4]), -1, 0)
    return (o - space(previous_close), h - np.maximum(o, c), np.minimum(o, c) - l,
            c - space(previous_close))


def _rank_correlation(a, b):
    return pd.Series(np.ravel(a)).corr(pd.Series(np.ravel(b)), method="spearman")


def test_candles_get_the_gaps_and_wicks_of_their_context():
    rng = np.random.default_rng(5)
    n_paths, horizon, rows = 60, 10, 300
    context_close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (5, rows)), axis=1))
    previous = np.concatenate([context_close[:, :1], context_close[:, :-1]], axis=1)
    contexts = [_candles(rng, context_close[0], previous[0], 0.0, 0.004),  # opens at the close
                _candles(rng, context_close[1], previous[1], 0.003, 0.003)[50:],  # shorter
                _candles(rng, context_close[2], previous[2], 0.003, 0.003) - [50, 50, 50, 50, 0,
                                                                              0],
                _candles(rng, context_close[3], previous[3], 0.003, 0.003)[-MIN_SHAPE_ROWS:],
                _candles(rng, context_close[4], previous[4], 0.003, 0.02)]  # wicks longer
    shift = np.array([0, 0, 50, 0, 0])  # series 2 is drawn 50 higher, then shifted down
    start = np.array([c[-1, 3] for c in contexts]) + shift
    close = start[:, None, None] * np.exp(np.cumsum(rng.normal(0, 0.01, (5, n_paths, horizon)),
                                                    axis=-1))
    before = np.concatenate([np.broadcast_to(start[:, None, None], (5, n_paths, 1)),
                             close[..., :-1]], axis=-1)
    paths = _candles(rng, close, before, 0.008, 0.008)
    paths[2, ..., :4] -= 50  # prices around zero: additively
    last = start - shift
    before = before - shift[:, None, None]
    positive = np.array([True, True, False, True, True])
    out = shape_candles(paths.copy(), contexts, last, positive)
    # Closes, volume and amount do not move; candles stay candles.
    np.testing.assert_array_equal(out[..., 3:], paths[..., 3:])
    assert (out[..., 1] >= np.maximum(out[..., 0], out[..., 3])).all()
    assert (out[..., 2] <= np.minimum(out[..., 0], out[..., 3])).all()
    # A market that opens at the previous close: every path does, from the last close on.
    np.testing.assert_allclose(out[0, :, 0, 0], last[0], rtol=1e-12)
    np.testing.assert_allclose(out[0, :, 1:, 0], out[0, :, :-1, 3], rtol=1e-12)
    # The others, in log prices where prices are positive, in prices elsewhere: gaps
    # distributed as the context's; wicks scaled by one factor until their median over the
    # median close move is the context's, where it was larger.
    for series, space in ((1, np.log), (2, lambda x: x), (4, np.log)):
        context = contexts[series]
        wanted = _parts(context[1:], context[:-1, 3], space)
        got = _parts(out[series], before[series], space)
        sampled = _parts(paths[series], before[series], space)
        assert ks_2samp(got[0].ravel(), wanted[0]).statistic < 0.08  # Kolmogorov-Smirnov
        assert ks_2samp(sampled[0].ravel(), wanted[0]).statistic > 0.2

        def wick_ratio(parts):
            return np.median(np.concatenate([parts[1].ravel(), parts[2].ravel()])) / np.median(
                np.abs(parts[3]))

        if series == 4:  # the context's wicks are the longer: the paths' stay as sampled
            assert wick_ratio(sampled) < wick_ratio(wanted)
            np.testing.assert_allclose(got[1:3], sampled[1:3], rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_allclose(wick_ratio(got), wick_ratio(wanted), rtol=1e-9)
            factors = np.concatenate([(got[1] / sampled[1]).ravel(),
                                      (got[2] / sampled[2]).ravel()])
            np.testing.assert_allclose(factors, factors[0], rtol=1e-6)
    # A context of MIN_SHAPE_ROWS rows is too short to measure: left as sampled.
    np.testing.assert_array_equal(out[3], paths[3])
    # The sample is seeded by the paths' order: the same paths always get the same candles
    # (these in float32 as well: rounding swaps none of their gaps' scores).
    np.testing.assert_array_equal(shape_candles(paths.copy(), contexts, last, positive), out)
    single = shape_candles(paths.astype(np.float32), contexts, last, positive)
    np.testing.assert_allclose(single, out, rtol=1e-5)
    with pytest.raises(ValueError, match="one context per series: got 0 contexts for 5 series"):
        apply_spread(paths.copy(), Spread(candles=True), positive, last)


def _log_candles(rng, shape, shared, own):
    """Log candles (..., 4) whose gaps (sd 0.003) and intraday moves (sd 0.006) are
    independent, their prices then off by a decoding error: one of sd `shared` for the whole
    candle plus one of sd `own` per price."""
    gap, intraday = rng.normal(0, 0.003, shape), rng.normal(0, 0.006, shape)
    close = np.cumsum(gap + intraday, axis=-1)
    opens = close - intraday
    highs = np.maximum(opens, close) + np.abs(rng.normal(0, 0.004, shape))
    lows = np.minimum(opens, close) - np.abs(rng.normal(0, 0.004, shape))
    candles = np.stack([opens, highs, lows, close], axis=-1)
    return candles + rng.normal(0, shared, shape)[..., None] + rng.normal(0, own, candles.shape)


def test_gaps_follow_the_close_move_as_much_as_the_contexts_do():
    """Paths whose gaps do not lean on the intraday move get, series by series, the rank
    correlation of gap and intraday move of their context, which leans with it in one
    series and against it in the other."""
    rng = np.random.default_rng(11)
    horizon = 10

    def to_prices(values):  # volume and amount of 1
        return np.concatenate([np.exp(values), np.ones(values.shape[:-1] + (2,))], axis=-1)

    def gap_and_intraday(candles, previous_close):
        gap, _, _, move = _parts(candles, previous_close, np.log)
        return gap, move - gap

    intraday = rng.normal(0, 0.006, (2, 400))
    gap = np.array([[0.4], [-0.4]]) * intraday + rng.normal(0, 0.003, intraday.shape)
    close = np.log(50) + np.cumsum(gap + intraday, axis=1)
    candles = np.stack([close - intraday, close + 0.002, close - intraday - 0.002, close], -1)
    candles[..., 1:3] = np.stack([candles[..., :4].max(-1) + 0.002,
                                  candles[..., :4].min(-1) - 0.002], -1)
    leaning = [to_prices(c) for c in candles]
    start = np.exp(close[:, -1])
    drawn = to_prices(_log_candles(rng, (2, 200, horizon), 0.004, 0.001)
                      + close[:, -1, None, None, None])
    shaped = shape_candles(drawn.copy(), leaning, start, np.ones(2, bool))
    previous = np.concatenate([np.broadcast_to(start[:, None, None], (2, 200, 1)),
                               drawn[..., :-1, 3]], axis=2)
    for series in range(2):
        target = _rank_correlation(gap[series, 1:], intraday[series, 1:])
        assert abs(target) > 0.3
        assert abs(_rank_correlation(*gap_and_intraday(drawn[series], previous[series]))) < 0.1
        assert _rank_correlation(*gap_and_intraday(shaped[series], previous[series])) == \
            pytest.approx(target, abs=0.08)


def test_shaped_candles_are_applied_by_every_face_with_the_spread(
        compat_dir, compat_candles, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(compat_dir / "model", model)
    (model / "inference.json").write_text(
        '{"max_context": 128, "drift": 0.5, "candles": true}')
    tokenizer, context = compat_dir / "tokenizer", compat_candles.iloc[:100]
    plain = KronosPipeline.from_pretrained(compat_dir / "model", tokenizer, max_context=128)
    pipe = KronosPipeline.from_pretrained(model, tokenizer)
    sampled = plain.sample(context, horizon=8, **SETTINGS).paths
    paths = pipe.sample(context, horizon=8, **SETTINGS).paths
    last = context["close"].to_numpy()[-1:]
    # The candles are shaped before the mean path's candle moves are drawn in, so that the
    # point forecast's open, high and low keep the drift share of their moves.
    assert pipe.spread == Spread(drift=0.5, candles=True)
    np.testing.assert_allclose(paths, apply_spread(sampled.copy(), pipe.spread,
                                                   np.array([True]), last,
                                                   [context.to_numpy()]), rtol=1e-6)
    drawn = apply_spread(sampled.copy(), Spread(drift=0.5), np.array([True]), last)
    np.testing.assert_allclose(paths[..., 3], drawn[..., 3], rtol=1e-6)  # closes as drawn
    mean = np.log(paths[0, ..., :4].astype(np.float64)).mean(axis=0)
    offset = mean[:, :3] - mean[:, 3:]  # the mean path's open, high, low about its close
    shaped = np.log(shape_candles(keep_drift(sampled.astype(np.float64), 0.5, last,
                                             np.array([True])), [context.to_numpy()], last,
                                  np.array([True]))[0, ..., :4]).mean(axis=0)
    moves = shaped[:, :3] - shaped[:, 3:]
    kept = moves.mean(axis=0) + 0.5 * (moves - moves.mean(axis=0))
    # Highs and lows as well, each path's wicks scaled alike; float32 paths.
    np.testing.assert_allclose(offset, kept, atol=1e-6)
    assert (paths[..., 1] >= np.maximum(paths[..., 0], paths[..., 3])).all()
    future = pd.date_range(context.index[-1], periods=9, freq="5min")[1:]
    forecaster = KronosForecaster(model=model, tokenizer=tokenizer, **SETTINGS).fit(context)
    np.testing.assert_allclose(forecaster.sample(fh=future).to_numpy().reshape(16, 8, 6),
                               paths[0], rtol=1e-6)
