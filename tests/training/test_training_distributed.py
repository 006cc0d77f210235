import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Run by every rank under torchrun; each rank trains the predictor (with gradient
# accumulation, so no_sync is exercised) and reports a hash of its final weights and the
# threads left once the trainer has cleaned up.
SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    from pathlib import Path

    from kronos_sk.training import TrainConfig, Trainer
    from training_helpers import TINY_PREDICTOR, SineCandles

    tmp, tokenizer_dir = Path(sys.argv[1]), sys.argv[2]
    rank = int(os.environ["RANK"])
    # A per-rank out_dir shows which rank wrote what; real runs share one directory.
    config = TrainConfig(task="predictor", model=TINY_PREDICTOR, tokenizer_checkpoint=tokenizer_dir,
                         lr=1e-2, warmup_steps=2, max_steps=20, batch_size=4, grad_accum_steps=2,
                         eval_every=10, save_every=10, log_every=1, device="cpu", num_threads=1,
                         out_dir=str(tmp / f"run{rank}"))
    source = SineCandles(batch_size=4)
    trainer = Trainer(config, source, source.validation)
    try:
        trainer.setup()
        trainer.train()
        digest = hashlib.sha256()
        for key, tensor in sorted(trainer.module.state_dict().items()):
            digest.update(key.encode() + tensor.numpy().tobytes())
        report = {"rank": trainer.env.rank, "world_size": trainer.env.world_size,
                  "step": trainer.step, "hash": digest.hexdigest()}
    finally:
        trainer.cleanup()
    report["threads"] = [(task / "comm").read_text().strip()
                         for task in Path("/proc/self/task").iterdir()]
    (tmp / f"rank{rank}.json").write_text(json.dumps(report))
""")


def test_two_processes_train_in_lockstep(tmp_path, tokenizer_dir):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc_per_node", "2", str(script), str(tmp_path), str(tokenizer_dir)],
            env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun did not finish in 180 s:\n{error.stderr}")
    assert result.returncode == 0, result.stderr[-4000:]

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["world_size"] == 2 and r["step"] == 20 for r in reports)
    assert reports[0]["hash"] == reports[1]["hash"]  # DDP kept the replicas identical
    # Leaving the group stopped gloo's threads, which would otherwise be torn down during
    # interpreter shutdown, where a rank could abort.
    for report in reports:
        assert not [name for name in report["threads"] if "gloo" in name], report["threads"]

    run = tmp_path / "run0"
    assert {"best", "last", "metrics.jsonl", "train_config.json"} <= {p.name for p in run.iterdir()}
    assert not (tmp_path / "run1").exists()  # only the main process writes
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").open()) if "loss" in r]
    assert len(losses) == 20
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3
