"""Write the bundled model's card from its training run and its benchmark runs.

Reads ``RUN/recipe.json`` and ``RUN/{tokenizer,predictor}/metrics.jsonl`` of the training
run, and ``price.csv`` / ``volatility.csv`` of the benchmark runs in ``--results`` (the
directories named in `BENCHMARKS`, each comparing the new model with the previous one
in one run), and writes the same Markdown to ``kronos_sk/pretrained/MODEL_CARD.md`` (shown
by ``kronos-sk info``) and ``docs/model-card.md``::

    python scripts/write_model_card.py --run runs/default-model-0.2 --results docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from kronos_sk._files import write_atomically

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (ROOT / "kronos_sk" / "pretrained" / "MODEL_CARD.md", ROOT / "docs" / "model-card.md")
# Benchmark run directory -> (market, context) of its rows in the card.
BENCHMARKS = {
    "us_daily_0.2": ("US stocks, daily", "90 rows"),
    "cn_daily_0.2": ("A-shares, daily", "90 rows"),
    "crypto_hourly_0.2": ("crypto, hourly", "80 rows"),
    "us_daily_context152_0.2": ("US stocks, daily", "152 rows"),
}
MODELS = {"kronos-0.1": "0.1", "kronos": "0.2", "kronos-cal": "0.2 + calibration"}


def records(path: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return ([r for r in rows if "loss" in r and "val_loss" not in r],
            [r for r in rows if "val_loss" in r])


def number(value, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def training_rows(run: Path, recipe: dict) -> list[str]:
    lines = ["| | tokenizer | predictor |", "|---|---|---|"]
    cells: dict[str, list[str]] = {}
    for stage in ("tokenizer", "predictor"):
        train, val = records(run / stage / "metrics.jsonl")
        settings = recipe[stage]
        best = min(val, key=lambda r: r["val_loss"]) if val else None
        cells[stage] = [
            f"{train[-1]['step']} steps, batch {settings['batch_size']}, lr {settings['lr']:g}, "
            f"{settings['precision']}",
            f"{train[0]['loss']:.3f} → {sum(r['loss'] for r in train[-10:]) / 10:.3f}",
            "–" if best is None else f"{best['val_loss']:.3f} (step {best['step']})",
            f"{sum(r['tokens_per_s'] for r in train) / len(train):,.0f}",
            f"{(run / stage / 'best' / 'model.safetensors').stat().st_size / 1e6:.1f} MB",
        ]
    names = ("optimisation", "training loss (first → mean of last 10 logs)",
             "best validation loss", "tokens/s (2 threads, shared machine)",
             "weights (float32)")
    for k, name in enumerate(names):
        lines.append(f"| {name} | {cells['tokenizer'][k]} | {cells['predictor'][k]} |")
    return lines


def benchmark_rows(results: Path) -> list[str]:
    lines = [
        "| market (context) | model | MAE / random walk | 80 % band covers | 90 % band covers "
        "| CRPS | cross-sectional RankIC | reversion slope (realised) | mean abs return "
        "(realised) | volatility MAE / naive-rv |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run, (market, context) in BENCHMARKS.items():
        price_file = results / run / "price.csv"
        if not price_file.is_file():
            continue
        price = pd.read_csv(price_file, index_col=0)
        volatility_file = results / run / "volatility.csv"
        volatility = (pd.read_csv(volatility_file, index_col=0)
                      if volatility_file.is_file() else None)
        walk = price.loc["naive-last", "mae_norm"]
        for model, label in MODELS.items():
            if model not in price.index:
                continue
            row = price.loc[model]
            vol = "–"
            if volatility is not None and model in volatility.index \
                    and "naive-rv" in volatility.index:
                vol = number(volatility.loc[model, "mae"] / volatility.loc["naive-rv", "mae"], 2)
            lines.append(
                f"| {market} ({context}) | {label} | {row['mae_norm'] / walk:.3f} | "
                f"{number(row['coverage_80'], 2)} | {number(row['coverage_90'], 2)} | "
                f"{number(row['crps'])} | {number(row['cs_rank_ic'])} | "
                f"{number(row['reversion_slope'])} ({number(row['realised_slope'])}) | "
                f"{number(row['abs_return'])} ({number(row['realised_abs_return'])}) | {vol} |")
    return lines


def card(run: Path, results: Path) -> str:
    recipe = json.loads((run / "recipe.json").read_text())
    data = recipe["data"]
    gaps = data["max_gap_factor"]
    lines = [
        "# Model card: the bundled kronos-sk default model (0.2)",
        "",
        "A small Kronos tokenizer + predictor pair trained on the real K-line panels of",
        "`../shared/data` on a 2-core CPU, sized for fast zero-shot inference on a CPU.",
        "`KronosForecaster()`, `KLineTokenizer()` and `kronos-sk` use it when no checkpoint is",
        "given; it loads offline from `kronos_sk/pretrained/` (released checkpoint layout). It",
        "is a small model trained briefly: a working default and a baseline, not a match for",
        "the released Kronos models.",
        "",
        "## What changed from 0.1",
        "",
        "0.1 was trained with a leaky objective: each 152-row window was normalised with the",
        "statistics of its first 128 rows and every position was scored, so 127 of the 151",
        "targets had been normalised with statistics of themselves and of later rows. It",
        "learned to pull every path back towards the window mean with too narrow a spread.",
        "0.2 starts from the 0.1 weights and is trained further with the leak-free objective",
        "(`kronos_sk.data.windows`): each window draws its own context length between",
        f"{data['min_context']} and {data['lookback']} rows, is normalised with those rows'",
        "statistics only, and only the later targets are scored. Its window is",
        f"{data['lookback'] + data['horizon']} rows instead of 152.",
        "",
        "## Training data and preprocessing",
        "",
        f"- Files: every panel in `../shared/data` (markets: "
        f"{', '.join(data['markets'].values())}).",
        f"- Windows: up to {data['lookback'] + data['horizon']} rows (shorter where a segment",
        f"  ends sooner, down to {data['min_context'] + data['horizon']}), clipped to ±5 after",
        f"  normalising; volume and amount masked (zeroed) in {data['mask_fraction']:.0%} of",
        "  windows; amount derived as volume × mean price where a file has none.",
        f"- Segments: no window crosses a gap longer than {gaps} median steps (per market), a",
        "  split/ex-rights jump (A-shares: |log return| > log 1.11; the file is unadjusted) or a",
        "  bad row. The 5-minute A-share file now bridges its lunch breaks, nights and",
        "  weekends and contributes windows.",
        "- Validation: 2016-01-01 onwards of each daily market, the last 30 days of each",
        "  intraday file; training uses only the rows before.",
        "- Sampling weights per market: " + ", ".join(f"{m} {w:g}" for m, w in
                                                       data["weights"].items()) + ".",
        "",
        "## Training",
        "",
        "Sizes as 0.1 (tokenizer d_model 128, 2 + 2 blocks; predictor d_model 256, 4 blocks,",
        "4 heads, ff 512; 10 + 10 bits). The 0.2 stages:",
        "",
        *training_rows(run, recipe),
        "",
        "Tokenizer loss: MSE of the coarse and the full reconstruction plus the BSQ loss",
        "(negative: its entropy terms). Predictor loss: mean of the coarse and fine",
        "next-token cross-entropies of the scored targets (ln 1024 = 6.93 for a uniform",
        "guess). AdamW, warm-up and cosine decay, early stopping on the validation loss.",
        "Trained on the CPU (Intel Sapphire Rapids with AMX, bf16 autocast for the",
        "predictor); no GPU was used. Reproduce with the commands at the top of",
        "`configs/default-model.toml`.",
        "",
        "## Before and after: zero-shot on the benchmark validation periods",
        "",
        "From `docs/benchmarks.md` (50 assets x 20 origins per market, 20 paths, the same",
        "origins for every model of a row group). MAE of the mean path on z-scored prices",
        "relative to the random walk's (1 = as good); band coverage of the normalised close",
        "(nominal 0.80 / 0.90); reversion slope: least-squares slope of the predicted",
        "horizon return on z = (last close - context mean) / context std, next to the",
        "realised returns' slope (a model that reverts to the context mean has a clearly",
        "more negative slope); volatility: MAE of the realized variance over the horizon",
        "relative to the naive estimate (below 1 beats it).",
        "",
        *benchmark_rows(results),
        "",
        "## Inference",
        "",
        f"Use a predictor window of {data['lookback'] + data['horizon']} tokens (the training",
        "window; `max_context=None` picks it) and any context from "
        f"{data['min_context']} rows up; sample",
        "several paths (`n_samples`). For calibrated intervals pass",
        "`calibration=\"conformal\"` (see the user guide).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/default-model-0.2")
    parser.add_argument("--results", default="docs/benchmarks")
    args = parser.parse_args()
    text = card(Path(args.run), Path(args.results))
    for target in TARGETS:
        write_atomically(target, lambda tmp: tmp.write_text(text))
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
