"""DDP on CPU (gloo): two processes train like one process with the same global batch.

Each rank of a 2-process run gets a batch of B sequences; a single process gets a batch of 2B made
of the same sequences (rank 0's, then rank 1's). The mean loss over 2B rows is the mean of the two
ranks' means, and DDP averages the two ranks' gradients, so both runs take the same steps: their
logged losses agree to float rounding. Tolerance: 1e-4 absolute on every logged loss (we see
differences around 1e-6: the gradients are summed in another order).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import Corpus, prepare_data

STEPS = 10
B = 4
TOLERANCE = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixed_batch(data: torch.Tensor, block_size: int, step: int, rank: int):
    """The B windows rank `rank` trains on at step `step`: fixed, whatever the process layout."""
    gen = torch.Generator().manual_seed(1000 * step + rank)
    starts = torch.randint(len(data) - block_size - 1, (B,), generator=gen)
    chunk = torch.stack([data[s:s + block_size + 1] for s in starts.tolist()])
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


def train_losses(rank: int, world_size: int, text: str, out: str | None = None) -> dict:
    """Train STEPS steps on text; world_size 1 takes both ranks' batches at once."""
    from minigpt.train import distributed

    torch.set_num_threads(1)
    device = distributed.setup(torch.device("cpu"))
    try:
        result = _train(rank, world_size, device, text)
        distributed.teardown(together=True)  # as minigpt train does after a run that ended well
    finally:
        distributed.teardown()
    if out is not None:
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    return result


def _train(rank: int, world_size: int, device: torch.device, text: str) -> dict:
    import minigpt.data.batches as batches_module
    import minigpt.train.trainer as train_module
    from minigpt.train.config import preset

    cfg = preset("tiny").with_overrides(
        block_size=32, n_embd=32, n_head=2, n_layer=2, batch_size=B * (2 // world_size),
        max_steps=STEPS, warmup_steps=2, eval_interval=STEPS, eval_iters=2, log_interval=1,
        sample_tokens=0)
    corpus = Corpus(text, "test", "test text")
    trainer = train_module.Trainer(cfg, prepare_data(corpus, cfg), device=device,
                                   dtype="fp32")  # exact comparison: no bf16 rounding
    real_get_batch = batches_module.get_batch

    def arranged_batch(data, batch_size, block_size, generator, device):
        if generator is not trainer.batch_generator:  # evaluation: unchanged
            return real_get_batch(data, batch_size, block_size, generator, device)
        ranks = [rank] if world_size == 2 else [0, 1]
        parts = [fixed_batch(data, block_size, trainer.step, r) for r in ranks]
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    batches_module.get_batch = arranged_batch
    try:
        events = list(trainer.run())
    finally:
        batches_module.get_batch = real_get_batch
    return {"losses": [e["loss"] for e in events if e["type"] == "step"],
            "weights": trainer.model.transformer.h[0].attn.c_attn.weight[:4, :4].tolist(),
            "world_size": events[0]["world_size"],
            "tokens_seen": trainer.tokens_seen}


def _spawned(rank: int, port: int, out: str, text: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    train_losses(rank, 2, text, out)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, english_text):
    # the text travels with the processes: each would parse the standard library for it again
    mp.spawn(_spawned, args=(free_port(), str(tmp_path), english_text), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    single = train_losses(0, 1, english_text)

    assert len(single["losses"]) == STEPS
    assert ranks[0]["world_size"] == 2 and single["world_size"] == 1
    # the loss each rank logs is the mean over ranks, so both tell the same story
    assert ranks[0]["losses"] == pytest.approx(ranks[1]["losses"], abs=1e-7)
    assert ranks[0]["losses"] == pytest.approx(single["losses"], abs=TOLERANCE)
    # (evaluation uses each process's own batch size, so its losses are not compared; the weights are)
    torch.testing.assert_close(torch.tensor(ranks[0]["weights"]), torch.tensor(single["weights"]),
                               atol=TOLERANCE, rtol=0)
    assert ranks[0]["tokens_seen"] == single["tokens_seen"]  # the global batch is counted
    assert single["losses"][-1] < single["losses"][0] - 0.3  # it really trained


@pytest.mark.slow
def test_torchrun_writes_one_run_directory_from_rank_0(tmp_path, english_text):
    """`torchrun --nproc_per_node=2 -m minigpt train`: one events.jsonl, one checkpoint."""
    (tmp_path / "corpus.txt").write_text(english_text[:40_000], encoding="utf-8")
    # this checkout's minigpt, whichever one is installed
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           "-m", "minigpt", "train", "--data", "corpus.txt", "--preset", "tiny", "--steps", "10",
           "--eval-interval", "5",
           "--device", "cpu", "--out", str(tmp_path / "run"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("minigpt train") == 1, proc.stdout  # rank 1 prints nothing
    from minigpt.checkpoint import load_checkpoint
    from minigpt.runs.log import read_events

    events = read_events(tmp_path / "run")
    start = next(e for e in events if e["type"] == "start")
    assert start["world_size"] == 2
    # rank 0 prepared the data, once; rank 1 waited for it
    assert [e["type"] for e in events].count("prepared") == 1
    assert [e["step"] for e in events if e["type"] == "eval"] == [0, 5, 10]
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "finished"
    assert load_checkpoint(tmp_path / "run").step == 10
    # rank 0 alone holds the run's lock and writes
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "events.jsonl",
                                                                      "model.pt"]
    assert (tmp_path / "run" / ".lock").read_text().strip() == str(start["pid"])
