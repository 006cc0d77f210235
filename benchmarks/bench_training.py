"""Training throughput: predictor tokens/s against the reference training step, same run.

One optimizer step (tokenize the window with the frozen tokenizer, forward, cross-entropy,
backward, AdamW) of this project's predictor against the same step of the reference model
code that sktime 1.2 vendors (`sktime.libs.kronos`: `KronosTokenizer.encode(half=True)`,
`Kronos`, `DualHead.compute_loss`), at the same size, batch, window length and precision,
with the same weights and windows. Sizes: Kronos-small and the bundled default model. The
windows are real (../shared/data), drawn by the `WindowSampler` the recipes use. Also times
the sampler alone, to show that the input pipeline is not the bottleneck.

Each step is timed in a fresh process twice: with glibc's default allocator, and with freed
memory retained in the process, as this project's training engine sets it on CPU
(`kronos_sk.runtime.retain_freed_memory`). The engine column compares ours as the engine
trains with the reference as released.

    python benchmarks/bench_training.py
    python benchmarks/bench_training.py --steps 5 --length 152 --precision fp32 bf16

The reference needs `einops` and `huggingface_hub` (``pip install einops huggingface_hub``).
bf16 is timed only on a CPU with native bf16 (AVX-512 BF16 or AMX); elsewhere it runs ~80x
slower than fp32 and says nothing about either implementation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from _common import SHARED_DATA, machine, peak_rss_bytes
from kronos_sk.checkpoints import DEFAULT_MODEL_DIR
from kronos_sk.data import CandleCorpus, TimeSplit, WindowSampler
from kronos_sk.nn.config import PredictorConfig, TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import native_bf16, retain_freed_memory
from kronos_sk.training import predictor_loss

HORIZON = 24


def sampler(batch_size: int, length: int) -> WindowSampler:
    files = [SHARED_DATA / "us_stocks_daily_2008_2017.parquet",
             SHARED_DATA / "crypto_binance_1h_2024-01_2024-07.parquet"]
    corpus = CandleCorpus(files, max_gap_factor=15.0)
    return WindowSampler(corpus, length - HORIZON, HORIZON, batch_size,
                         time_split=TimeSplit(cutoff="2016-01-01"), assets_per_block=64,
                         steps_per_block=1000)


def sizes() -> dict[str, tuple[TokenizerConfig, PredictorConfig]]:
    out = {"Kronos-small": (TokenizerConfig(), PredictorConfig())}
    tok = json.loads((DEFAULT_MODEL_DIR / "tokenizer" / "config.json").read_text())
    pred = json.loads((DEFAULT_MODEL_DIR / "predictor" / "config.json").read_text())
    out["default model"] = (TokenizerConfig.from_dict(tok), PredictorConfig.from_dict(pred))
    return out


def reference_modules(tokenizer: KronosTokenizer, predictor: KronosPredictor):
    """The vendored reference tokenizer and predictor with the same weights."""
    from sktime.libs.kronos.kronos import Kronos, KronosTokenizer as ReferenceTokenizer

    t, p = tokenizer.config, predictor.config
    reference_tokenizer = ReferenceTokenizer(
        t.d_in, t.d_model, t.n_heads, t.ff_dim, t.n_enc_layers, t.n_dec_layers,
        t.ffn_dropout_p, t.attn_dropout_p, t.resid_dropout_p,
        t.s1_bits, t.s2_bits, t.beta, t.gamma0, t.gamma, t.zeta, t.group_size)
    reference_tokenizer.load_state_dict(tokenizer.state_dict())
    # The same dropouts as ours (Kronos-small's released ones; the default model has none).
    reference = Kronos(p.s1_bits, p.s2_bits, p.n_layers, p.d_model, p.n_heads, p.ff_dim,
                       p.ffn_dropout_p, p.attn_dropout_p, p.resid_dropout_p,
                       p.token_dropout_p, p.learn_te)
    reference.load_state_dict(predictor.state_dict())
    return reference_tokenizer.eval(), reference


def ours_step(tokenizer, model):
    def loss(batch):
        return predictor_loss(model, tokenizer, batch["values"], batch["stamps"],
                              batch["context"])[0]
    return loss


def reference_step(tokenizer, model):
    """The reference fine-tuning loss: all targets scored, as the released recipe does."""
    def loss(batch):
        with torch.no_grad():
            s1, s2 = tokenizer.encode(batch["values"], half=True)
        s1_logits, s2_logits = model(s1[:, :-1], s2[:, :-1], batch["stamps"][:, :-1])
        return model.head.compute_loss(s1_logits, s2_logits, s1[:, 1:], s2[:, 1:])[0]
    return loss


def time_training(model, loss_fn, batches, precision: str, steps: int, warmup: int) -> float:
    """Tokens/s of `steps` optimizer steps after `warmup` steps."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(batch):
        with autocast:
            loss = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:warmup]:
        step(batch)
    start = time.perf_counter()
    for batch in batches[warmup:warmup + steps]:
        step(batch)
    seconds = time.perf_counter() - start
    return steps * batches[0]["values"].shape[0] * (batches[0]["values"].shape[1] - 1) / seconds


def windows(args) -> list[dict[str, torch.Tensor]]:
    """The timed batches, the same in every process."""
    source = sampler(args.batch_size, args.length)
    raw = [source.batch(k) for k in range(args.warmup + args.steps)]
    return [{key: torch.from_numpy(b[key]) for key in ("values", "stamps", "context")}
            for b in raw]


def sampler_rate(args, n: int = 100) -> float:
    """Tokens/s of the window sampler alone, after its first block is read."""
    source = sampler(args.batch_size, args.length)
    source.batch(0)
    start = time.perf_counter()
    for k in range(1, n + 1):
        source.batch(k)
    return n * args.batch_size * (args.length - 1) / (time.perf_counter() - start)


def time_one(args) -> None:
    """Worker: time one implementation at one size, precision and allocator; print JSON."""
    name, precision, implementation, allocator = args.one
    batches = windows(args)
    torch.manual_seed(0)  # the same weights in every process
    tok_config, pred_config = sizes()[name]
    tokenizer = KronosTokenizer(tok_config).eval()
    predictor = KronosPredictor(pred_config)
    if implementation == "ours":
        model, loss_fn = predictor, ours_step(tokenizer, predictor)
    else:
        ref_tokenizer, model = reference_modules(tokenizer, predictor)
        loss_fn = reference_step(ref_tokenizer, model)
    if allocator == "retained" and not retain_freed_memory():
        raise SystemExit("freed memory can be retained with glibc only")
    rate = time_training(model, loss_fn, batches, precision, args.steps, args.warmup)
    print(json.dumps({"tokens_per_s": rate, "peak_gib": peak_rss_bytes() / 2 ** 30}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=512, help="window rows")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return time_one(args)
    loader_rate = sampler_rate(args)
    precisions = [p for p in args.precision if p == "fp32" or native_bf16()]
    print(f"{machine()}; windows of {args.length} rows, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup}, each in a fresh process")
    print(f"window sampler: {loader_rate:,.0f} tokens/s\n")
    print(f"{'':22}| {'glibc default allocator':^31} | {'freed memory retained':^31} |")
    print(f"{'model':13} {'prec':>4}    | {'ours tok/s':>10} {'reference':>10} {'ours/ref':>8} | "
          f"{'ours tok/s':>10} {'reference':>10} {'ours/ref':>8} | {'engine/ref':>10}")
    passed = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size",
              str(args.batch_size), "--length", str(args.length)]
    for name in sizes():
        for precision in precisions:
            rate = {}
            for allocator in ("default", "retained"):
                for implementation in ("ours", "reference"):
                    out = subprocess.run(
                        [sys.executable, __file__, *passed, "--one", name, precision,
                         implementation, allocator], capture_output=True, text=True)
                    if out.returncode:
                        raise SystemExit(f"{name} {precision} {implementation} {allocator} "
                                         f"failed:\n{out.stderr[-2000:]}")
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    rate[allocator, implementation] = result["tokens_per_s"]
                    rate[allocator, implementation, "peak"] = result["peak_gib"]
            cells = []
            for allocator in ("default", "retained"):
                ours, ref = rate[allocator, "ours"], rate[allocator, "reference"]
                cells.append(f"{ours:10,.0f} {ref:10,.0f} {ours / ref:7.2f}x")
            engine = rate["retained", "ours"] / rate["default", "reference"]
            peaks = "/".join(f"{rate[a, i, 'peak']:.1f}" for a in ("default", "retained")
                             for i in ("ours", "reference"))
            print(f"{name:13} {precision:>4}    | {cells[0]} | {cells[1]} | {engine:9.2f}x"
                  f"   peak GiB {peaks}", flush=True)
    print("\nours/ref: tokens/s of this project's training step over the reference's, both "
          "with the same allocator (target >= 1.5x at fp32).\nengine/ref: ours as the "
          "training engine runs it (freed memory retained) over the reference as released "
          "(glibc's default allocator).\npeak GiB: each process's peak resident memory, "
          "ours/reference with the default allocator, then retained.")


if __name__ == "__main__":
    main()
