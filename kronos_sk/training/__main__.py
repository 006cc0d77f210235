"""Run a training recipe from the command line.

One process (CPU or one GPU)::

    python -m kronos_sk.training pretrain --config configs/default-model.toml
    python -m kronos_sk.training pretrain --config configs/default-model.toml --set resume=true
    python -m kronos_sk.training finetune --config my-finetune.toml --set predictor.lr=1e-5

Several GPUs (one process each)::

    torchrun --standalone --nproc_per_node 4 -m kronos_sk.training pretrain \\
        --config configs/default-model.toml

``--set key=value`` overrides one setting of the file (dotted keys, TOML values); see
`kronos_sk.training.recipe` for the file's shape.
"""

from __future__ import annotations

import argparse
import logging
import sys

COMMANDS = ("finetune", "pretrain")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the recipe, print the best checkpoint of each stage.

    Returns the exit status: 0, or 2 after a one-line message on bad usage or input.
    """
    parser = argparse.ArgumentParser(prog="python -m kronos_sk.training",
                                     description="Train a Kronos tokenizer and predictor.")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--config", required=True, help="recipe TOML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one setting, e.g. "
                        "predictor.max_steps=100 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # The `kronos-sk` command runs the recipe and reports any failure in one line, exit 2.
    from kronos_sk.cli import main as cli_main
    return cli_main([args.command, "--config", args.config,
                     *(f"--set={item}" for item in args.overrides)])


if __name__ == "__main__":
    sys.exit(main())
