#!/usr/bin/env bash
# Regenerate every result of docs/benchmarks.md on a 2-core CPU (about 97 minutes for the
# first six: US 24, crypto 9, A-shares 15, US with 152 rows 2, generation 9, investment 35;
# about 55 more for the 0.2 comparison: US 16, A-shares 16, crypto 14, 152 rows 3, 0.1 cal 6, generation 3).
# Each command writes OUT/<task>.{csv,md}, its plots and OUT/summary.md; a failing command
# does not stop the others. The budgets cap the slowest tasks: the tables say how many
# origins ran.
#
# Speed and memory (docs/benchmarks.md, "Speed and memory", roughly 45 minutes) run last;
# `reproduce.sh speed` runs only them. Run them alone on the machine: other load skews
# their ratios.
cd "$(dirname "$0")/.." || exit 1
status=0
mkdir -p results
speed() {
  echo "+ python benchmarks/$1.py (output in results/$1.txt)"
  PYTHONPATH=. python "benchmarks/$1.py" > "results/$1.txt" 2>&1 || status=1
}
if [ "$1" = speed ]; then
  speed bench_panel
  speed bench_inference
  speed bench_training
  exit $status
fi
run() { echo "+ python -m benchmarks $*"; python -m benchmarks "$@" || status=1; }
run price volatility --config benchmarks/configs/us_daily.toml --out results/us_daily --budget-minutes 22
run price volatility --config benchmarks/configs/crypto_hourly.toml --out results/crypto_hourly --budget-minutes 15
run price volatility --config benchmarks/configs/cn_daily.toml --out results/cn_daily --budget-minutes 22
run price --config benchmarks/configs/us_daily_context152.toml --out results/us_daily_context152
run generation --config benchmarks/configs/generation.toml --out results/generation
run investment --config benchmarks/configs/investment_us.toml --out results/investment_us --budget-minutes 35
# The 0.2 bundled model (leak-free objective) beside 0.1 and with calibration; the baseline
# rows above do not change. 0.1 is read from runs/previous-default (configs/default-model.toml
# says how to extract it from git).
kronos=(--models kronos kronos-cal kronos-0.1 naive-last)
run price volatility --config benchmarks/configs/us_daily.toml --out results/us_daily_0.2 "${kronos[@]}"
run price volatility --config benchmarks/configs/cn_daily.toml --out results/cn_daily_0.2 "${kronos[@]}"
run price volatility --config benchmarks/configs/crypto_hourly.toml --out results/crypto_hourly_0.2 "${kronos[@]}"
run price --config benchmarks/configs/us_daily_context152.toml --out results/us_daily_context152_0.2
run price --config benchmarks/configs/us_daily.toml --out results/us_daily_0.1cal --models kronos-0.1-cal kronos-0.1 naive-last
run generation --config benchmarks/configs/generation.toml --out results/generation_0.2 --models kronos kronos-0.1
run investment --config benchmarks/configs/investment_us.toml --out results/investment_us_0.2 --models kronos naive-drift --budget-minutes 40
# 0.2 fine-tuned with the leak-free objective (kronos-ft): about 3 minutes per market, and
# the investment simulation (22-minute budget).
for market in us_daily cn_daily crypto_hourly; do
  run price --config "benchmarks/configs/$market.toml" --out "results/${market}_ft_0.2" --models kronos-ft naive-last
done
run investment --config benchmarks/configs/investment_us.toml --out results/investment_us_ft_0.2 --models kronos-ft --budget-minutes 22
speed bench_panel
speed bench_inference
speed bench_training
exit $status
