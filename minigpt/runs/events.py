"""A run's events: what each kind carries, written once as code (SCHEMA), and how readers take
the fields of a file that may hold anything.

`minigpt train` appends one JSON object a line to its events file (runs/log.py), flushed as
training goes, so another process (the TUI, `--attach`, a test) can replay a run's history and
follow it live; runs/state.py folds a stream of them into what a run is doing. event() refuses a
type or a field outside the schema. An ablation's events hold every variant's, each tagged
"variant", between "ablation_start" and "ablation_done", with a "result" per finished variant.

A file is whatever is on the disk: readers take its fields with runs/read.py's number(),
whole(), text() and pid_of(), which say None for a field missing or of the wrong kind.

No torch here, nor anywhere in minigpt.runs: the run contract is read by processes that train
nothing (a test checks it).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TypedDict

from minigpt.runs.results import VariantResult

PREPARE_STAGES = {"vocabulary": "collecting characters", "sample": "reading a BPE sample",
                  "encode": "tokenizing", "check": "checking the cached tokens"}  # what each stage of a "prepare" event is doing


# --- the schema: what each kind of event carries ------------------------------------------------
#
# Every event has "type" (the name in SCHEMA) and "time" (Unix seconds). A record's fields are
# those its writer always writes; the tags (total=False) are added to some by whoever passes them
# on. Readers never trust these types: a file is whatever is on the disk, so they read fields
# with number(), whole(), text() and pid_of() below.


class _Event(TypedDict):
    type: str
    time: float


class _OfVariant(TypedDict, total=False):
    variant: str  # the ablation variant whose training wrote it (AblationRunner tags each one)
    seed: int  # which of the variant's seeds, 0.. (ablate --seeds)


class _OfProcess(TypedDict, total=False):
    pid: int  # the process preparing the data, so a follower can tell whether it lives
    command: str  # "train" or "ablate": what the run is, known from its first event


class Start(_Event, _OfVariant):
    """Training begins (or resumes) at step."""
    step: int
    max_steps: int  # the run's length; a timed run's schedule only (it ends by its time)
    time_budget: float | None  # a timed run's seconds in all (--time); None: it ends at max_steps
    time_spent: float  # the seconds it trained before this start (resumed: the earlier runs')
    config: dict  # TrainConfig.to_dict()
    device: str
    precision: str  # "bf16" or "fp32"
    peak_flops: float | None  # of all processes' devices; None where unknown, as on CPUs
    compiled: bool  # --compile
    params: int
    trainable_params: int  # those the optimizer moves: all of them, or a LoRA run's adapters
    data: str  # the corpus, as the user would name it
    data_source: str | None
    data_key: str  # the prepared data's cache key
    tokenizer: str
    vocab_size: int
    train_tokens: int
    val_tokens: int
    run_dir: str | None
    pid: int
    world_size: int


class _Preferences(TypedDict, total=False):
    """A preference-tuning run's measures (train/dpo.py), in its steps' and evaluations' events
    (an evaluation's are of the validation pairs)."""
    margin: float  # beta times how much more than the reference the model prefers the chosen reply
    accuracy: float  # the share of pairs whose margin is positive
    kl: float  # the replies' mean log-ratio to the reference: how far the tuning has moved


class Step(_Event, _OfVariant, _Preferences):
    """A logged step: the loss of the steps since the last one, and the pace."""
    step: int
    max_steps: int
    loss: float  # NaN once a run diverges
    lr: float
    grad_norm: float
    tokens_per_s: float
    flops_per_s: float  # the model FLOPs those tokens need (PaLM's count)
    mfu: float | None  # flops_per_s / peak_flops, or None
    elapsed: float  # since this start
    time_spent: float  # since the run's first start: evaluations in, pauses out (Trainer.time_spent)
    # by layer, in the order the tokens flow ("embedding", "1".."n_layer", "head"; gradflow.py):
    grad_norms: dict[str, float]  # the norm of each layer's gradients, before clipping
    update_ratios: dict[str, float]  # how far this step moved each layer's weights: ||dw||/||w||


class Eval(_Event, _OfVariant, _Preferences):
    step: int
    train_loss: float
    val_loss: float


class Sample(_Event, _OfVariant):
    step: int
    text: str


class Checkpoint(_Event, _OfVariant):
    step: int
    path: str | None


class Done(_Event, _OfVariant):
    step: int  # absent when the run was stopped before training began
    reason: str  # "finished", "interrupted" or "stopped"
    signal: str | None  # what stopped it: "SIGTERM", "SIGHUP: the terminal closed"; else None
    train_loss: float | None
    val_loss: float | None
    tokens_per_s: float  # of this start's steps (a resumed run's earlier ones are not counted)
    elapsed: float
    time_spent: float  # as a step's: a timed run's is about its time_budget
    final_eval_seconds: float | None  # of the final evaluation and save (in time_spent); None
    #                                   when the run was stopped before its end
    checkpoint: str | None


class Paused(_Event, _OfVariant):
    step: int


class Resumed(_Event, _OfVariant):
    step: int


class Error(_Event):
    """The run's last event: one line, as the command prints it."""
    message: str


class Note(_Event, _OfVariant):
    """Something the user should know: compiling failed, a variant diverged."""
    step: int
    message: str


class Prepare(_Event, _OfProcess):
    """The data's preparation, before "start", a few times a second (see prepare.py): the run is
    preparing until its start."""
    stage: str  # a key of PREPARE_STAGES
    bytes_done: int  # of this stage's reading of the source
    bytes_total: int
    tokens: int  # written so far
    tokens_per_s: float
    elapsed: float  # since preparation began


class Prepared(_Event, _OfProcess):
    path: str
    cached: bool  # found ready: nothing tokenized
    tokens: int
    dtype: str
    tokenizer: str
    vocab_size: int
    seconds: float


class AblationStart(_Event):
    variants: list[str]  # the baseline first
    descriptions: dict[str, str]
    kinds: dict[str, str]  # model/switches.KINDS: what each variant does
    max_steps: int  # each training's steps; with time_budget, the schedule it maps the clock on
    time_budget: float | None  # each training's seconds (ablate --time); None: equal steps
    seeds: int  # how many seeds each variant trains at
    step: int
    data: str
    config: dict
    pid: int


class VariantStart(_Event):
    """The next variant begins training (its first seed): index of count."""
    variant: str
    description: str
    index: int
    count: int
    max_steps: int
    seeds: int


class AblationDone(_Event):
    reason: str  # "finished" or "cancelled"
    results: list[dict]  # the result events' fields
    # a size sweep's power laws (train/ablation.scaling_laws): "parameters" and "compute", each
    # {a, alpha, c, r2, points, against}, and the points; None without a sweep
    scaling: dict | None


SCHEMA: dict[str, type] = {
    "start": Start, "step": Step, "eval": Eval, "sample": Sample, "checkpoint": Checkpoint,
    "done": Done, "paused": Paused, "resumed": Resumed, "error": Error, "note": Note,
    "prepare": Prepare, "prepared": Prepared,
    "ablation_start": AblationStart, "variant": VariantStart, "result": VariantResult,
    "ablation_done": AblationDone,
}


def field_names(record: type) -> tuple[str, ...]:
    """The fields a record of the schema names: a TypedDict's keys, or a dataclass's fields (a
    result, runs/results.py) with the event's own."""
    if dataclasses.is_dataclass(record):
        return ("type", "time", *(f.name for f in dataclasses.fields(record)))
    return (*record.__required_keys__, *record.__optional_keys__)


def always_written(record: type) -> set[str]:
    """The fields every event of the record has: its writer writes them all."""
    if dataclasses.is_dataclass(record):
        return set(field_names(record))
    return set(record.__required_keys__)


def event(type_: str, **fields) -> dict:
    """A new event, stamped with the time. A type not in SCHEMA, or a field its record does not
    name, is a writer's bug: ValueError. A field may be left out (readers take every field as
    possibly missing, as in runs from older versions); tests check the writers write them all."""
    record = SCHEMA.get(type_)
    if record is None:
        raise ValueError(f"no event type {type_!r} in the schema")
    unknown = set(fields) - set(field_names(record))
    if unknown:
        raise ValueError(f"the schema's {type_!r} events have no field {sorted(unknown)}")
    return {"type": type_, "time": time.time(), **fields}
