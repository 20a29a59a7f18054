"""One-file checkpoints: weights, configuration, tokenizer and (for resuming) the training state.

Saving never destroys the previous checkpoint: the file is written beside the target, flushed to
disk, then renamed over it, so a kill, a full disk or an error mid-write leaves the previous one
whole; Ctrl-C and SIGTERM wait until the write is done; weights with a NaN or an infinity are
refused. Loading uses torch.load with weights_only=True, which unpickles only tensors and plain
data: a file cannot run code.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minigpt.data.tokenizer import Tokenizer, tokenizer_from_dict
from minigpt.errors import CheckpointError, MinigptError
from minigpt.model.config import GPTConfig
from minigpt.model.lora import saved_state
from minigpt.rules import Real, Whole
from minigpt.runs import control
from minigpt.runs.files import CHECKPOINT_NAME
from minigpt.train.config import TrainConfig

FORMAT = "minigpt-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    model_config: GPTConfig
    state_dict: dict
    tokenizer: Tokenizer
    train_config: TrainConfig | None = None
    train_state: dict | None = None  # optimizer, step, RNG states: present in training checkpoints
    meta: dict = field(default_factory=dict)  # data source, step, losses, ...
    path: Path | None = None
    # a LoRA run's adapters kept apart from the base's weights in state_dict (train --lora-keep;
    # model/lora.py): <layer>.lora_A.weight and .lora_B.weight; its settings are train_config's
    adapters: dict | None = None

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    def merged(self) -> Checkpoint:
        """The checkpoint as an ordinary model: its adapters, if it keeps any, folded into the
        weights (W + alpha / r B A), what every command that runs the model reads."""
        if self.adapters is None:
            return self
        from dataclasses import replace

        from minigpt.model.lora import merge_state

        state = merge_state(self.state_dict, self.adapters, self.train_config.lora_alpha)
        return replace(self, state_dict=state, adapters=None)

    def build_model(self, device: str | torch.device = "cpu", adapters: bool = True):
        """The model, holding this checkpoint's tensors themselves (no copy) in float32 on
        `device`: a model built on the meta device takes them over (load_state_dict's assign).
        Adapters kept apart are merged into it; adapters=False: the base model alone."""
        from minigpt.model.gpt import empty_model

        state = self.merged().state_dict if adapters else self.state_dict
        model = empty_model(self.model_config, "meta")
        try:
            model.load_state_dict(state, assign=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{self.path}: weights do not match its configuration ({first})") from None
        if self.model_config.tie_weights:  # each name got its own Parameter: one again
            model.lm_head.weight = model.transformer.wte.weight
        return model.to(device=device, dtype=torch.float32)


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory holding one named CHECKPOINT_NAME."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.is_file():
            raise CheckpointError(f"no {CHECKPOINT_NAME} in run directory {path}")
    elif not p.exists():
        raise CheckpointError(f"no such checkpoint: {path}")
    elif not p.is_file():
        raise CheckpointError(f"not a file: {path}")
    return p


def save_checkpoint(path: str | os.PathLike, model, tokenizer: Tokenizer,
                    train_config: TrainConfig | None = None, train_state: dict | None = None,
                    meta: dict | None = None) -> Path:
    path = Path(path)
    model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: save the original module
    model = getattr(model, "module", model)  # a DDP-wrapped model
    # a model with LoRA adapters: merged into the weights, or (--lora-keep) kept apart
    weights, adapters = saved_state(model, keep=bool(train_config and train_config.lora_keep))
    bad = first_non_finite({**weights, **(adapters or {})})
    if bad is not None:
        raise CheckpointError(f"refusing to save {path}: the weights hold NaN or infinite values "
                              f"(in {bad}); the previous checkpoint is kept")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "model": weights,
        "adapters": adapters,
        "tokenizer": tokenizer.to_dict(),
        "train_config": train_config.to_dict() if train_config else None,
        "train_state": train_state,
        "meta": meta or {},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _signals_held():  # a Ctrl-C lands after the write, never half-way through it
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_orphans(path)
            with open(tmp, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file
        except (OSError, RuntimeError) as e:
            raise CheckpointError(_write_failure(path, e)) from None
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # its folder is not there, or not a folder: nothing to remove
                pass
    return path


def first_non_finite(state_dict: dict) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
            # the least and the greatest: both finite only if every value is (a NaN makes both
            # NaN); one pass that allocates nothing, much faster than isfinite(tensor).all()
            # (benchmarks/RESULTS.md, "Figures first written elsewhere")
            if not bool(torch.isfinite(torch.stack(torch.aminmax(tensor))).all()):
                return name
    return None


def _write_failure(path: Path, error: BaseException) -> str:
    """One line for a save that failed: what the system said, and that nothing was lost. torch.save
    reports a failed write as a RuntimeError whose context is the OSError that caused it."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__context__
    kept = "the previous checkpoint is intact" if path.exists() else "nothing was written"
    if cause is None:
        return f"could not save {path} ({str(error).strip().splitlines()[0]}); {kept}"
    if cause.errno == errno.ENOSPC:
        return f"no space left on device while saving {path}; {kept}"
    return f"cannot save {path}: {cause.strerror or cause}; {kept}"


def _remove_orphans(path: Path) -> None:
    """Delete the temporary files of saves that were killed half-way (.<name>.<pid>.tmp), where
    the process that wrote them is gone."""
    from minigpt.runs.log import process_alive

    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        pid = orphan.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
            orphan.unlink(missing_ok=True)


@contextmanager
def _signals_held():
    """Hold back Ctrl-C and SIGTERM for the duration of the block, then deliver them. Python runs
    signal handlers in the main thread only, so elsewhere this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = control.ENDING
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in caught:
            signal.raise_signal(sig)


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    mmap: bool = False, error: type[MinigptError] = CheckpointError,
                    shown: str | os.PathLike | None = None):
    """torch.load with weights_only=True: tensors and plain data, never code. Every way it can
    fail is one `error` naming the file (`shown`, else path). mmap: memory-map where the file's
    format allows (the legacy pre-zip format does not), so tensors are read as they are used."""
    shown = path if shown is None else shown
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
            except RuntimeError as e:
                if not (mmap and "mmap" in str(e)):
                    raise
                return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            # torch's safe unpickler says the same for damaged bytes and for code it refused
            raise error(
                f"refusing to load {shown}: it is not plain weights and data (it is corrupt, "
                "or holds Python objects that could run code)"
            ) from None
        raise error(f"cannot load {shown}: unreadable data") from None
    except PermissionError as e:
        raise error(f"cannot read {shown}: {e.strerror}") from None
    except Exception:  # hostile or damaged bytes can make the unpickler raise almost anything
        raise error(f"cannot load {shown}: it is truncated or corrupt") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """A checkpoint, checked whole: any record that a hand edit or a hostile file got wrong (a
    setting out of range, weights that do not fit the configuration, a step that is not a
    number...) is one CheckpointError naming the file, here, so no command meets it later."""
    p = resolve_checkpoint_path(path)
    payload = safe_torch_load(p, map_location, shown=path)

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minigpt checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')}; this minigpt reads {VERSION}"
        )
    try:
        model_config = GPTConfig.from_dict(payload["model_config"])
        train_config = (TrainConfig.from_dict(payload["train_config"])
                        if payload.get("train_config") is not None else None)
        tokenizer = tokenizer_from_dict(payload["tokenizer"])
        state_dict = check_weights(payload["model"], model_config)
        train_state = check_train_state(payload.get("train_state"))
        meta = check_meta(payload.get("meta"))
        adapters = check_adapters(payload.get("adapters"), model_config, train_config)
    except KeyError as e:
        raise CheckpointError(f"{path} is incomplete: it has no {e}") from None
    except MinigptError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if train_config is not None and train_config.model != model_config:
        raise CheckpointError(f"{path}: its training settings describe another model than its "
                              "weights' configuration")
    if tokenizer.vocab_size > model_config.vocab_size:
        # ids past the model's vocabulary have no embedding; a smaller tokenizer is fine (an
        # imported GPT-2's vocabulary may be padded past it) and generation keeps within it
        raise CheckpointError(f"{path}: its tokenizer has {tokenizer.vocab_size} tokens, more "
                              f"than the model's vocabulary of {model_config.vocab_size}")
    return Checkpoint(model_config, state_dict, tokenizer, train_config, train_state, meta, p,
                      adapters)


def check_weights(state, config: GPTConfig) -> dict:
    """The state dict, if it holds exactly the tensors, and shapes, that the configuration's model
    has; shapes are compared on the meta device, so a hostile size allocates nothing."""
    if not isinstance(state, dict):
        raise CheckpointError(f"its weights are not a mapping of names to tensors "
                              f"(got {type(state).__name__})")
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"its weight {name!r} is not a tensor")
        if not tensor.is_floating_point():
            raise CheckpointError(f"its weight {name} is not floating point ({tensor.dtype})")
    # checked before building the model to compare with: even on the meta device, a hostile
    # file's billion layers take long to build, and sizes past 2**63 elements overflow
    layers = {name.split(".")[2] for name in state if name.startswith("transformer.h.")}
    if len(layers) != config.n_layer:
        raise CheckpointError(f"its weights have {len(layers)} layers, its configuration says "
                              f"n_layer {config.n_layer}")
    wte = state.get("transformer.wte.weight")
    if wte is not None and tuple(wte.shape) != (config.vocab_size, config.n_embd):
        raise CheckpointError(f"its weight transformer.wte.weight has shape {list(wte.shape)}, its "
                              f"configuration needs {[config.vocab_size, config.n_embd]}")
    from minigpt.model.gpt import empty_model

    try:
        expected = {name: t.shape for name, t in empty_model(config, "meta").state_dict().items()}
    except RuntimeError as e:
        raise CheckpointError(f"its configuration cannot be built ({e})") from None
    return _as_expected(state, expected, "weights")


def _as_expected(state: dict, expected: dict, what: str) -> dict:
    """state, if it holds exactly the tensors named in expected, of their shapes, all finite."""
    missing = [name for name in expected if name not in state]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"its {what} lack {', '.join(missing[:3])}{more}, which its "
                              "configuration needs")
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        more = f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""
        raise CheckpointError(f"its {what} have {', '.join(unexpected[:3])}{more}, which its "
                              "configuration has no place for")
    for name, shape in expected.items():
        if state[name].shape != shape:
            raise CheckpointError(f"its {what[:-1]} {name} has shape {list(state[name].shape)}, its "
                                  f"configuration needs {list(shape)}")
    bad = first_non_finite(state)
    if bad is not None:  # written by an older minigpt, or by hand: it cannot compute anything
        raise CheckpointError(f"its {what} hold NaN or infinite values (in {bad}): the run that "
                              "wrote it diverged; use an earlier checkpoint")
    return state


def check_adapters(adapters, config: GPTConfig, train_config: TrainConfig | None) -> dict | None:
    """A --lora-keep checkpoint's adapters, if they are exactly those its LoRA settings give the
    model (rank, targets), finite; shapes compared on the meta device."""
    if adapters is None:
        return None
    if not isinstance(adapters, dict) or not all(
            isinstance(name, str) and isinstance(t, torch.Tensor) and t.is_floating_point()
            for name, t in adapters.items()):
        raise CheckpointError("its adapters are not a mapping of names to floating-point tensors")
    if train_config is None or train_config.lora_r is None:
        raise CheckpointError("it holds LoRA adapters but no LoRA settings (lora_r)")
    from minigpt.model.gpt import empty_model
    from minigpt.model.lora import add_lora, split_state

    model = add_lora(empty_model(config, "meta"), train_config.lora_r, train_config.lora_alpha,
                     train_config.lora_targets)
    expected = {name: t.shape for name, t in split_state(model)[1].items()}
    return _as_expected(adapters, expected, "adapters")


def check_train_state(state) -> dict | None:
    """What train/state.restore reads, of the types it reads; whether the optimizer state fits the
    model is known only once the optimizer exists (state.restore checks that)."""
    if state is None:
        return None
    if not isinstance(state, dict):
        raise CheckpointError(f"its training state is not a mapping (got {type(state).__name__})")
    for key in ("step", "tokens_seen"):
        if key in state:
            Whole(0).check(f"training state {key}", state[key], CheckpointError)
    for key in ("time_spent", "eval_seconds"):
        if key in state:
            Real(0).check(f"training state {key}", state[key], CheckpointError)
    optimizer = state.get("optimizer")
    if optimizer is not None and not (isinstance(optimizer, dict)
                                      and isinstance(optimizer.get("state"), dict)
                                      and isinstance(optimizer.get("param_groups"), list)):
        raise CheckpointError("its optimizer state is not an optimizer's state dict")
    for key in ("batch_rng", "torch_rng", "cuda_rng"):
        value = state.get(key)
        if value is not None and not (isinstance(value, torch.Tensor)
                                      and value.dtype == torch.uint8):
            raise CheckpointError(f"its training state {key} is not a random generator's state")
    return state


def check_meta(meta) -> dict:
    """The facts `info` shows and `train --resume` reads, of the types they need."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"its meta record is not a mapping (got {type(meta).__name__})")
    for key in ("step", "tokens_seen"):
        if key in meta:
            Whole(0).check(f"meta {key}", meta[key], CheckpointError)
    for key in ("train_loss", "val_loss"):  # nan is possible: a run that diverged saves it
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise CheckpointError(f"its meta {key} is not a number: {value!r}")
    for key in ("data", "data_source", "source", "imported_from"):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            raise CheckpointError(f"its meta {key} is not text: {value!r}")
    return meta
