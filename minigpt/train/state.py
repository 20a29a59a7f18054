"""A run's training state, saved in its checkpoints and restored by --resume: the step and
counts, the time spent, the optimizer's state and every random generator the loop draws from,
so a resumed run continues exactly where the uninterrupted one would be."""

from __future__ import annotations

import torch

from minigpt.checkpoint import Checkpoint
from minigpt.errors import CheckpointError, DataError


def capture(trainer) -> dict:
    """The state a checkpoint carries for trainer to be resumed from."""
    spent = trainer.time.spent()
    if trainer.timed and trainer.finished:  # at its end a timed run has spent all its time
        spent = max(spent, trainer.cfg.time_budget)
    state = {
        "step": trainer.step,
        "tokens_seen": trainer.tokens_seen,
        "time_spent": spent,
        "eval_seconds": trainer.time.eval_seconds,
        "optimizer": trainer.optimizer.state_dict(),
        "batch_rng": trainer.batches.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if trainer.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(trainer.device)
    return state


def restore(trainer, state: dict, path=None) -> None:
    """A checkpoint's training state into trainer (its types checked by load_checkpoint); one
    that does not fit this model is a CheckpointError naming the file, before any step."""
    trainer.step = int(state.get("step", 0))
    trainer.tokens_seen = int(state.get("tokens_seen", 0))
    trainer.time.spent_before = float(state.get("time_spent", 0.0))
    trainer.time.eval_seconds = float(state.get("eval_seconds", 0.0))
    if "optimizer" in state:
        _restore_optimizer(trainer.optimizer, state["optimizer"], path)
    generator = trainer.batches.generator
    try:
        if "batch_rng" in state:
            generator.set_state(state["batch_rng"].cpu())
            if trainer.world.rank > 0:  # the checkpoint holds rank 0's; the others draw afresh
                generator.manual_seed(trainer.cfg.seed + trainer.world.rank + 7919 * trainer.step)
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and trainer.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), trainer.device)
    except RuntimeError:
        raise CheckpointError(f"{path}: its training state holds a random generator state "
                              "of the wrong size") from None


def _restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict, path) -> None:
    try:
        optimizer.load_state_dict(saved)
        for group in optimizer.param_groups:  # load_state_dict checks counts only
            for p in group["params"]:
                for name, value in optimizer.state.get(p, {}).items():
                    if name != "step" and (not isinstance(value, torch.Tensor)
                                           or value.shape != p.shape):
                        raise ValueError(f"its {name} does not match a weight of shape "
                                         f"{list(p.shape)}")
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its optimizer state does not fit the model "
                              f"({str(e).strip().splitlines()[0]})") from None


def check_resume_data(checkpoint: Checkpoint, data) -> None:
    """--resume continues on the data the run trained on: refused when the prepared data differs
    (another corpus, or the same file changed since). Checkpoints from before keys were kept pass."""
    recorded = checkpoint.meta.get("data_key")
    if recorded and data.key and recorded != data.key:
        was = checkpoint.meta.get("data") or checkpoint.meta.get("data_source") or "other data"
        raise DataError(f"--resume: {checkpoint.path} trained on {was}, and {data.source} is not "
                        "that data (or it changed since); resume on that data, or start a new "
                        "run with --init")
