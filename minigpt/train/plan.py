"""Planning a run: what `minigpt train` and `minigpt ablate` do, decided before any time goes
into the data.

    plan_training(...)        a new run, --resume or --init: the settings, the data, where the run
                              is written, the model it starts from; each refusal one MinigptError
    with plan.claim():        the run directory's writer lock; a trained model is never overwritten
    plan.trainer(data, ...)   the Trainer: new, resumed or fine-tuning

    plan_ablation(...)        the variants, the baseline's recipe and budget, checked
    with plan.claim():        the ablation's folder (new, or --out) made and locked
    plan.runner(data, ...)    the AblationRunner

The command line parses its options into plan_training's arguments, prepares the data the plan
names (plan.data, with plan.tokenizer) and shows the run; the TUI's runs are `minigpt train`
children, planned here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.checkpoint import Checkpoint, load_checkpoint
from minigpt.data.prepare import PreparedData
from minigpt.data.tokenizer import Tokenizer
from minigpt.errors import CheckpointError, ConfigError, DataError, RunDirectoryError
from minigpt.rules import Whole
from minigpt.runs.files import CHECKPOINT_NAME, new_run_dir, run_of_checkpoint
from minigpt.runs.log import refuse_another_run, run_lock
from minigpt.train import distributed
from minigpt.train.config import TrainConfig, check_run_length, default_preset_name, preset
from minigpt.train.trainer import Trainer
from minigpt.units import format_duration

# what --resume may change: how long the run goes on, and how often it is evaluated
RESUME_MAY_CHANGE = ("max_steps", "time_budget", "eval_interval")


@dataclass
class TrainingPlan:
    cfg: TrainConfig
    data: str | None  # the data to train on, as --data names it (None: the built-in corpus)
    # the run: a run directory, or a named run's events file (events.run_files); None: this
    # process writes nothing (DDP rank > 0)
    run_dir: Path | None
    checkpoint_path: Path | None
    resume: Checkpoint | None = None  # the run that --resume continues
    init: Checkpoint | None = None  # the model that --init fine-tunes, fit to cfg's context

    @property
    def tokenizer(self) -> Tokenizer | None:
        """What the data is prepared with: the saved model's own when there is one; None builds a
        tokenizer from the data."""
        given = self.resume or self.init
        return given.tokenizer if given else None

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the run directory (one writer) for the block, before any time goes into the data:
        refused while another run writes to it, and when a new run would overwrite a model."""
        with run_lock(self.run_dir) if self.run_dir is not None else nullcontext():
            path = self.checkpoint_path
            if self.resume is None and path is not None and path.exists():
                raise RunDirectoryError(f"{path} already exists: --resume {path} continues its "
                                        "run; to start a new one, choose another --out")
            if self.run_dir is not None and not self._continues_its_own_run():
                refuse_another_run(self.run_dir)
            yield

    def _continues_its_own_run(self) -> bool:
        """A resumed run writing its own checkpoint (however the path is spelled: a link, the
        folder): its events go on in its own log. Into another file beside it, it would be a
        second run in that log."""
        return (self.resume is not None and self.resume.path is not None
                and self.resume.path.resolve() == self.checkpoint_path.resolve())

    def trainer(self, data: PreparedData, device: torch.device, dtype: str = "auto",
                compile: bool = False) -> Trainer:
        options = dict(device=device, run_dir=self.run_dir, checkpoint_path=self.checkpoint_path,
                       dtype=dtype, compile=compile)
        if self.resume is not None:
            return Trainer.resume(self.resume, data, self.cfg, **options)
        if self.init is not None:
            return Trainer.finetune(self.init, self.cfg, data, **options)
        return Trainer(self.cfg, data, **options)


def plan_training(device: torch.device, data: str | None = None, preset_name: str | None = None,
                  overrides: dict | None = None, out: Path | None = None, name: str | None = None,
                  resume: Path | None = None, init: Path | None = None, sft: str | None = None,
                  dpo: str | None = None) -> TrainingPlan:
    """The plan for `minigpt train`'s options. overrides: settings by TrainConfig name (None for
    one not given); a run is as long as max_steps or time_budget (seconds), not both. out: a
    checkpoint file (x.pt: its events beside it as x.events.jsonl, unless it is named model.pt,
    whose folder is the run's) or a run directory; else the resumed run's own file, else a new
    directory under checkpoints/ (named `name`, else by date and time). sft, dpo: instruction
    tuning on conversations (a file, or "tasks": the built-in ones) or preference tuning on
    pairs, of the model --init names."""
    overrides = overrides or {}
    check_run_length(overrides.get("max_steps"), overrides.get("time_budget"))
    objective = _objective(init, resume, data, sft, dpo)
    if overrides.get("beta") is not None and objective != "dpo":
        raise ConfigError("--beta is DPO's strength: give it with --dpo")
    if resume is None:
        _check_lora(overrides, init)
    checkpoint = start = None
    if resume is not None and init is not None:
        raise ConfigError("--resume continues a run, --init starts a new one from a model: "
                          "give one of them")
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        cfg, data = _resumed(checkpoint, resume, data, preset_name, overrides)
    elif init is not None:
        from minigpt.train import finetune

        start = load_checkpoint(init).merged()  # adapters kept apart: folded in, to tune on
        if objective == "sft":  # the chat template's tokens, and rows for them
            start = finetune.with_chat_tokens(start)
        recipe = {"sft": finetune.SFT, "dpo": finetune.DPO}.get(objective, finetune.FINETUNE)
        if preset_name:
            recipe = preset(preset_name).with_overrides(objective=recipe.objective)
        cfg = finetune.finetune_config(start, recipe, overrides)
        start = finetune.fit_to_context(start, cfg.model)
        data = sft or dpo or data
    else:
        cfg = preset(preset_name or default_preset_name(device.type)).with_overrides(**overrides)

    if not distributed.is_main():  # under DDP the other processes write nothing
        run_dir = checkpoint_path = None
    elif out is not None:
        checkpoint_path = out if out.suffix == ".pt" else out / CHECKPOINT_NAME
        run_dir = run_of_checkpoint(checkpoint_path)
    elif checkpoint is not None:
        checkpoint_path = checkpoint.path
        run_dir = run_of_checkpoint(checkpoint_path)
    else:
        run_dir = new_run_dir(name=name)
        checkpoint_path = run_dir / CHECKPOINT_NAME
    return TrainingPlan(cfg, data, run_dir, checkpoint_path, resume=checkpoint, init=start)


def _objective(init, resume, data, sft, dpo) -> str:
    """What the run learns, from its options; a combination that cannot be is a ConfigError."""
    if sft is not None and dpo is not None:
        raise ConfigError("--sft tunes on conversations, --dpo on preferences: give one of them")
    if sft is None and dpo is None:
        return "lm"
    option = "--sft" if sft is not None else "--dpo"
    if resume is not None:
        raise ConfigError(f"--resume continues a run on its own data: {option} starts a new one "
                          "(with --init)")
    if init is None:
        raise ConfigError(f"{option} tunes a trained model: name it with --init MODEL (a "
                          "checkpoint of minigpt train, or of import-gpt2)")
    if data is not None:
        raise ConfigError(f"{option} names the run's data; --data is for a corpus of text")
    return "sft" if sft is not None else "dpo"


LORA_OPTIONS = {"lora_alpha": "--lora-alpha", "lora_targets": "--lora-targets",
                "lora_keep": "--lora-keep"}


def _check_lora(overrides: dict, init: Path | None) -> None:
    """LoRA's options for a new run: a rank that can be (before anything else is said of
    them), the others only with it, and a model to adapt."""
    r = overrides.get("lora_r")
    if r is not None:
        TrainConfig.check_setting("lora_r", r)
    else:
        given = [option for name, option in LORA_OPTIONS.items()
                 if overrides.get(name) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} LoRA's: "
                              "give the adapters' rank too, --lora R")
        return
    if init is None:
        raise ConfigError("--lora trains low-rank adapters beside a trained model's weights: "
                          "name the model with --init MODEL (a checkpoint of minigpt train, or "
                          "of import-hf)")


def _resumed(checkpoint: Checkpoint, given: Path, data: str | None, preset_name: str | None,
             overrides: dict) -> tuple[TrainConfig, str | None]:
    """The settings and the data of a resumed run: its own, with only a longer run (--steps, or
    --time for a timed run: either counts the whole run, the part already done included) or
    another --eval-interval; refused when it has nothing to resume or is done."""
    lora = checkpoint.train_config and checkpoint.train_config.lora_r
    if lora and checkpoint.adapters is None:
        raise ConfigError(f"{given} is a LoRA run saved with its adapters merged into the "
                          "weights, which is not resumed: the adapters are no longer apart to "
                          "train on (a run with --lora-keep is). Tune it further: --init "
                          f"{given} --lora {lora}")
    if checkpoint.train_config is None or checkpoint.train_state is None:
        raise CheckpointError(f"{given} has no training state to resume from")
    if checkpoint.train_config.objective == "dpo":  # its reference is not in the checkpoint
        raise ConfigError(f"{given} is a preference-tuning run, which is not resumed: DPO "
                          "measures it against the model it started from, which the checkpoint "
                          "does not keep. Tune again: --init START --dpo PAIRS, or tune this "
                          f"one further: --init {given} --dpo PAIRS")
    changed = sorted(k for k, v in overrides.items()
                     if v is not None and k not in RESUME_MAY_CHANGE)
    if preset_name is not None:  # the recipe is the checkpoint's: a preset would change it
        changed.append("preset")
    if changed:
        raise ConfigError("--resume continues a run as it was; only its length (--steps or "
                          f"--time) and --eval-interval can change (got {', '.join(changed)})")
    timed = checkpoint.train_config.time_budget is not None
    if timed and overrides.get("max_steps") is not None:
        raise ConfigError(f"{given} trains for a time: --resume lengthens it with --time, "
                          "not --steps")
    if not timed and overrides.get("time_budget") is not None:
        raise ConfigError(f"{given} trains for a number of steps: --resume lengthens it with "
                          "--steps, not --time")
    cfg = checkpoint.train_config.with_overrides(**overrides)
    trained_on = checkpoint.meta.get("data_source")
    if data is not None and not same_data_source(data, trained_on):
        raise DataError(f"{given} was trained on {trained_on or 'builtin'}, not {data}; "
                        "--resume continues a run on its own data (to train it on other "
                        f"data, start a new run from it: --init {given})")
    if timed:
        spent = float(checkpoint.train_state.get("time_spent", 0.0))
        if spent >= cfg.time_budget:
            raise ConfigError(f"{given} has already trained for {format_duration(spent)} of its "
                              f"{format_duration(cfg.time_budget)}; pass a longer --time to "
                              "train further")
    elif checkpoint.step >= cfg.max_steps:
        raise ConfigError(f"{given} is already at step {checkpoint.step} of {cfg.max_steps}; "
                          "pass a larger --steps to train further")
    return cfg, data or trained_on


def same_data_source(given: str | None, recorded: str | None) -> bool:
    """Whether --data names the corpus a checkpoint was trained on: the same URL, or the same
    file or folder however spelled (relative, ~, through a link); no name is the builtin one."""
    from minigpt.data.sources import kind_of_name

    def normal(source: str | None) -> str:
        if kind_of_name(source) != "path":
            return source or "builtin"
        return str(Path(source).expanduser().resolve())

    return normal(given) == normal(recorded)


@dataclass
class AblationPlan:
    variants: list[str]
    base: TrainConfig  # the baseline's preset
    steps: int
    seed: int
    out: Path | None  # --out, else a new folder under checkpoints/ (made by claim)
    seeds: int = 1  # each variant trains at seeds seed, seed + 1, ...
    time_budget: float | None = None  # each training's seconds, instead of steps
    run_dir: Path | None = None  # the ablation's folder, once claimed

    @contextmanager
    def claim(self) -> Iterator[None]:
        """The ablation's folder, made and held (one writer) for the block; refused where another
        run left its results."""
        from minigpt.train.ablation import new_ablation_dir

        if self.out is not None:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RunDirectoryError(f"cannot write to {self.out}: {e.strerror or e}") from None
        self.run_dir = self.out or new_ablation_dir()
        with run_lock(self.run_dir):
            refuse_another_run(self.run_dir)
            yield

    def runner(self, data: PreparedData, device: torch.device):
        from minigpt.train.ablation import AblationRunner

        return AblationRunner(self.variants, data, self.base, steps=self.steps, seed=self.seed,
                              device=device, run_dir=self.run_dir, seeds=self.seeds,
                              time_budget=self.time_budget)


SEEDS = Whole(1, 100)  # how many seeds ablate trains each variant at


def plan_ablation(variants: list[str], preset_name: str = "cpu", steps: int | None = None,
                  seed: int = 1337, out: Path | None = None, seeds: int = 1,
                  time_budget: float | None = None) -> AblationPlan:
    """The plan for `minigpt ablate`'s arguments: a bad preset, --steps, --time, --seed, --seeds
    or variant is refused here, before any data is read or folder made."""
    from minigpt.train.ablation import STEPS, ablation_config, expand_variants

    check_run_length(steps, time_budget)
    SEEDS.check("seeds (--seeds)", seeds)
    base = preset(preset_name)
    steps = STEPS if steps is None else steps
    ablation_config(base, steps, seed, time_budget)
    expand_variants(variants)
    return AblationPlan(list(variants), base, steps, seed, out, seeds, time_budget)
