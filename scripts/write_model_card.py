"""Write the bundled model's card from a finished run and its evaluation.

Reads ``RUN/recipe.json``, ``RUN/{tokenizer,predictor}/metrics.jsonl`` and
``RUN/evaluation.json`` (from ``scripts/evaluate_default_model.py``) and writes the same
Markdown to ``kronos_sk/pretrained/MODEL_CARD.md`` (shown by ``kronos-sk info``) and
``docs/model-card.md``::

    python scripts/write_model_card.py --run runs/default-model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kronos_sk._files import write_atomically

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (ROOT / "kronos_sk" / "pretrained" / "MODEL_CARD.md", ROOT / "docs" / "model-card.md")


def records(path: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return ([r for r in rows if "loss" in r and "val_loss" not in r],
            [r for r in rows if "val_loss" in r])


def number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def card(run: Path) -> str:
    recipe = json.loads((run / "recipe.json").read_text())
    evaluation = json.loads((run / "evaluation.json").read_text())
    data = recipe["data"]
    lines = [
        "# Model card: the bundled kronos-sk default model",
        "",
        "A small Kronos tokenizer + predictor pair pre-trained from scratch on the real K-line",
        "panels of `../shared/data`, on one CPU thread, sized for fast zero-shot inference on a",
        "CPU. `KronosForecaster()`, `KLineTokenizer()` and `kronos-sk` use it when no checkpoint",
        "is given; it loads offline from `kronos_sk/pretrained/` (released checkpoint layout).",
        "It is a small model trained briefly: a working default and a baseline, not a match for",
        "the released Kronos models.",
        "",
        "## Training data and preprocessing",
        "",
        f"- Files: every panel in `../shared/data` (markets: {', '.join(data['markets'].values())}).",
        f"- Windows: lookback {data['lookback']} + horizon {data['horizon']} rows, normalised with",
        "  the mean and std of the lookback rows only, clipped to ±5; volume and amount masked",
        f"  (zeroed) in {data['mask_fraction']:.0%} of windows; amount derived as volume × mean",
        "  price where a file has none.",
        f"- Segments: no window crosses a gap longer than {data['max_gap_factor']} median steps,",
        "  a split/ex-rights jump (A-shares: |log return| > log 1.11; the file is unadjusted) or",
        "  a bad row. With that gap factor the 5-minute A-share file breaks at every lunch break",
        "  and night into 24-bar pieces, shorter than a window, so it contributed nothing (the",
        "  corpus now takes a per-market gap factor for the next run).",
        "- Validation: 2016-01-01 onwards of each daily market, the last 30 days of each",
        "  intraday file; training uses only the rows before.",
        "- Sampling weights per market: " + ", ".join(f"{m} {w:g}" for m, w in
                                                       data["weights"].items()) + ".",
        "",
        "## Networks and training",
        "",
        "| | tokenizer | predictor |",
        "|---|---|---|",
    ]
    stages = {stage: recipe[stage] for stage in ("tokenizer", "predictor")}
    model = {stage: stages[stage]["model"] for stage in stages}
    sizes = {stage: (run / stage / "best" / "model.safetensors").stat().st_size
             for stage in stages}
    lines += [
        f"| d_model / heads / ff | {model['tokenizer']['d_model']} / "
        f"{model['tokenizer']['n_heads']} / {model['tokenizer']['ff_dim']} | "
        f"{model['predictor']['d_model']} / {model['predictor']['n_heads']} / "
        f"{model['predictor']['ff_dim']} |",
        f"| layers | {model['tokenizer']['n_enc_layers'] - 1} encoder + "
        f"{model['tokenizer']['n_dec_layers'] - 1} decoder blocks | "
        f"{model['predictor']['n_layers']} blocks |",
        f"| bits (coarse + fine) | {model['tokenizer']['s1_bits']} + "
        f"{model['tokenizer']['s2_bits']} | {model['predictor']['s1_bits']} + "
        f"{model['predictor']['s2_bits']} |",
        f"| weights (float32) | {sizes['tokenizer'] / 1e6:.1f} MB | "
        f"{sizes['predictor'] / 1e6:.1f} MB |",
    ]
    for stage in stages:
        train, val = records(run / stage / "metrics.jsonl")
        settings = stages[stage]
        stages[stage] = (train, val, settings)
    row = {}
    for stage, (train, val, settings) in stages.items():
        best = min(val, key=lambda r: r["val_loss"]) if val else None
        row[stage] = (f"{train[-1]['step']} steps, batch {settings['batch_size']}, "
                      f"lr {settings['lr']:g}, {settings['precision']}",
                      f"{train[0]['loss']:.3f} → {sum(r['loss'] for r in train[-10:]) / 10:.3f}",
                      "–" if best is None else f"{best['val_loss']:.3f} (step {best['step']})",
                      f"{sum(r['tokens_per_s'] for r in train) / len(train):,.0f}")
    for k, name in enumerate(("optimisation", "training loss (first → mean of last 10 logs)",
                              "best validation loss", "tokens/s (1 thread)")):
        lines.append(f"| {name} | {row['tokenizer'][k]} | {row['predictor'][k]} |")
    lines += [
        "",
        "Tokenizer loss: MSE of the coarse and the full reconstruction plus the BSQ loss",
        "(commitment and entropy terms, hence negative values). Predictor loss: mean of the",
        "coarse and fine next-token cross-entropies (ln 1024 = 6.93 for a uniform guess), the",
        "fine head conditioned on coarse ids sampled from the model's own distribution.",
        "AdamW with warm-up and cosine decay, early stopping on the validation loss (it did not",
        "trigger). Wall time on one CPU thread (the session's other core was in use part of the",
        "time): tokenizer 13 min, predictor 43 min, plus about a minute per stage to index the",
        "corpus and read the validation windows. Reproduce with",
        "`kronos-sk pretrain --config configs/default-model.toml`.",
        "",
        "## Tokenizer: reconstruction and codebook use (validation windows)",
        "",
        "Errors in normalised units (the window's lookback std); perplexity of the empirical",
        "id distribution out of 1024 ids per subtoken.",
        "",
        "| market | MAE | MSE | MAE coarse only | coarse ids used | coarse perplexity | "
        "fine ids used | fine perplexity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for market, values in evaluation["tokenizer"].items():
        usage = evaluation["codebook"].get(market, {})
        coarse, fine = usage.get("coarse", {}), usage.get("fine", {})
        lines.append(
            f"| {market} | {number(values.get('mae'))} | {number(values.get('mse'))} | "
            f"{number(values.get('coarse_mae'))} | {number(coarse.get('used_fraction'), 2)} | "
            f"{number(coarse.get('perplexity'), 0)} | {number(fine.get('used_fraction'), 2)} | "
            f"{number(fine.get('perplexity'), 0)} |")
    lines += [
        "",
        "## Zero-shot forecasts: IC and RankIC on validation windows",
        "",
        "Signal: the predicted horizon return (mean path's last close / last context close - 1,",
        f"{evaluation['settings']['n_samples']} paths, temperature 1, top-p 0.9) against the",
        "realised one; next to momentum (return over the lookback) and",
        "short-term reversal (minus the last 5-bar return). Cross-sectional markets: mean IC",
        "over origin dates (t-statistics are optimistic: horizons overlap); others: pooled.",
        "",
        "| market | windows | Kronos IC | Kronos RankIC | momentum RankIC | reversal RankIC |",
        "|---|---|---|---|---|---|",
    ]
    for market, values in evaluation["forecast"].items():
        kronos = values["kronos"]
        lines.append(
            f"| {market}{' (per date)' if values.get('cross_sectional') else ''} | "
            f"{kronos.get('n', 0)} | {number(kronos.get('ic'))} | "
            f"{number(kronos.get('rank_ic'))} | {number(values['momentum'].get('rank_ic'))} | "
            f"{number(values['reversal'].get('rank_ic'))} |")
    lines += [
        "",
        "These are a few hundred windows per market from one validation period: read them as",
        "indications, not as a benchmark (see `docs/benchmarks.md` for the backtests).",
        "",
        "## Inference",
        "",
        f"Use a predictor window of {data['lookback'] + data['horizon']} tokens (the training",
        "window; `max_context=None` picks it), any context length (the tokenizer sees all of it,",
        "the predictor its last window) and sample several paths (`n_samples`, `top_p=0.9`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/default-model")
    args = parser.parse_args()
    text = card(Path(args.run))
    for target in TARGETS:
        write_atomically(target, lambda tmp: tmp.write_text(text))
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
