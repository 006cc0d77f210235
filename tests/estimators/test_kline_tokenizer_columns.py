"""KLineTokenizer reads arrays, and returns outputs, in the fitted column order."""

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from kronos_sk import KLineTokenizer, KronosForecaster


def test_the_fitted_column_order_holds_for_frames_arrays_and_outputs(compat_dir,
                                                                     compat_candles):
    X = compat_candles.iloc[:120][["open", "high", "low", "close", "amount", "volume"]]
    tokenizer = KLineTokenizer(tokenizer=str(compat_dir / "tokenizer")).fit(X)
    assert list(tokenizer.feature_names_in_) == list(X.columns)
    ids = tokenizer.transform(X)
    np.testing.assert_array_equal(tokenizer.transform(X.to_numpy()), ids)
    decoded = tokenizer.inverse_transform(ids)
    # Column 4 is amount, as in X: of the size of X's amount (~20 x its volume here).
    assert 0.5 < np.median(decoded[:, 4] / X["amount"].to_numpy()) < 2
    # In a scikit-learn Pipeline, arrays flow between the steps.
    as_array = FunctionTransformer(lambda frame: frame.to_numpy())
    piped = make_pipeline(as_array, KLineTokenizer(tokenizer=str(compat_dir / "tokenizer")))
    np.testing.assert_array_equal(piped.fit(X).transform(X), ids)


def test_a_lone_value_column_is_the_series(compat_dir, compat_candles):
    y = compat_candles.iloc[:64][["close"]].rename(columns={"close": "value"})
    forecaster = KronosForecaster(model=str(compat_dir / "model"),
                                  tokenizer=str(compat_dir / "tokenizer"), max_context=128,
                                  n_samples=4, random_state=0)
    predicted = forecaster.fit(y).predict(fh=[1, 2])
    assert list(predicted.columns) == ["value"] and np.isfinite(predicted.to_numpy()).all()
    assert (predicted["value"] - y["value"].iloc[-1]).abs().max() < 0.05 * y["value"].iloc[-1]
