"""Write a compact copy of the shared candle files for a training run on a lent GPU.

The device tool carries at most 64 MiB (the repository included), so the corpus it takes
is a subset: every file keeps its name (the recipe's ``[data.markets]`` still applies), files
under ``--keep-whole-mib`` are copied whole, and the larger ones keep one share of their
assets, drawn with a fixed seed and the same for every file, so that the total stays under
``--max-mib``. Values are written as float32 (about 7 significant digits) with zstd, and
``compact.json`` records the share and the files kept whole (their markets are
over-represented by ``1 / share``; `scripts/train_on_device.sh` scales their weights)::

    python scripts/build_compact_corpus.py runs/compact-corpus --max-mib 34

prints each file's assets and rows kept, and the total size.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MIB = 2 ** 20


def compact_table(table: pa.Table) -> pa.Table:
    """`table` with its float64 columns cast to float32."""
    columns = {name: (column.cast(pa.float32()) if column.type == pa.float64() else column)
               for name, column in zip(table.column_names, table.columns)}
    return pa.table(columns)


def asset_subset(table: pa.Table, share: float, seed: int) -> pa.Table:
    """The rows of a `share` of `table`'s assets, drawn with `seed`."""
    assets = np.unique(table["asset"].to_numpy(zero_copy_only=False))
    count = max(1, round(share * len(assets)))
    kept = np.random.default_rng(seed).choice(assets, size=count, replace=False)
    mask = np.isin(table["asset"].to_numpy(zero_copy_only=False), kept)
    return table.filter(pa.array(mask))


def write(table: pa.Table, path: Path) -> int:
    pq.write_table(table, path, compression="zstd", compression_level=9)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="directory to write (must not exist)")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data directory")
    parser.add_argument("--max-mib", type=float, default=34.0)
    parser.add_argument("--keep-whole-mib", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = sorted(args.data.glob("*.parquet"))
    if not files:
        raise SystemExit(f"no .parquet files in {args.data}")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it or name another directory")
    args.out.mkdir(parents=True)
    whole = [f for f in files if f.stat().st_size <= args.keep_whole_mib * MIB]
    split = [f for f in files if f not in whole]
    used = sum(write(compact_table(pq.read_table(f)), args.out / f.name) for f in whole)
    tables = {f: compact_table(pq.read_table(f)) for f in split}
    share = min(1.0, (args.max_mib * MIB - used) / max(1, sum(f.stat().st_size for f in split)))
    for _ in range(4):  # the source sizes only estimate the compact ones: shrink until it fits
        sizes = {f: write(asset_subset(t, share, args.seed), args.out / f.name)
                 for f, t in tables.items()}
        total = used + sum(sizes.values())
        if total <= args.max_mib * MIB:
            break
        share *= 0.97 * args.max_mib * MIB / total
    else:
        shutil.rmtree(args.out)
        raise SystemExit(f"could not fit {args.data} into {args.max_mib} MiB; raise --max-mib")
    (args.out / "compact.json").write_text(json.dumps(
        {"share": share, "whole": [f.stem for f in whole]}) + "\n")
    for f in files:
        kept = pq.read_table(args.out / f.name, columns=["asset"])["asset"].to_numpy()
        print(f"{f.name}: {len(np.unique(kept))} assets, {len(kept)} rows, "
              f"{(args.out / f.name).stat().st_size / MIB:.1f} MiB")
    print(f"total {total / MIB:.1f} MiB; larger files keep {share:.1%} of their assets")


if __name__ == "__main__":
    main()
