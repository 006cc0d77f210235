"""The bundled default model: `tokenizer/` and `predictor/` in the released checkpoint layout.

`MODEL_CARD.md` says how it was trained and how well it does; `predictor/inference.json`
holds the predictor window it was trained on and how its paths are adjusted (its drift
share, spread and candle shaping). `KronosForecaster()`, `KLineTokenizer()` and the
`kronos-sk` command use it when no checkpoint is given.
"""
