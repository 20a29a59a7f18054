"""The `minigpt` command line (Typer).

torch is imported inside the commands, never at the top of this module, so `minigpt --help`
answers at once. Every MinigptError and every usage error becomes one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import gc
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from minigpt.backends.cpu import limit_for_decoding
from minigpt.errors import MinigptError
from minigpt.infer.config import STRATEGIES, SamplingConfig
from minigpt.model.config import LORA_TARGETS
from minigpt.runs import control
from minigpt.runs.control import Stopped, exit_status
from minigpt.train.ablation import STEPS as ABLATION_STEPS
from minigpt.train.ablation import by_kind
from minigpt.train.config import PRESETS, TRAIN_RULES, default_preset_name

try:  # Typer >= 0.23 carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # older Typer uses the click package
    from click.exceptions import UsageError

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell says of `yes | head`'s yes


def print_error(message: str) -> None:
    print(f"minigpt: error: {message}", file=sys.stderr)


def _quiet_stdout() -> None:
    """Standard output to nowhere: what is still buffered for a closed pipe would otherwise fail
    again, with a message, when Python flushes it at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file behind it (tests)
        pass


def is_out_of_memory(error: BaseException) -> bool:
    """Memory a setting asked for that the machine does not have (huge --n-embd, --batch-size):
    Python's MemoryError, torch's OutOfMemoryError (CUDA), or its CPU allocator's RuntimeError."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and any(
        s in str(error) for s in ("can't allocate memory", "Storage size calculation overflowed"))


def out_of_memory_reason(error: BaseException) -> str:
    """torch's message without its source location: 'you tried to allocate N bytes' and the like."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split("DefaultCPUAllocator: ", 1)[-1].split(". Error code")[0]


class MinigptGroup(TyperGroup):
    """One line for every user error: a MinigptError from a command (exit 1), or a bad command,
    option or value (exit 2; click's own format spends four lines on it)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MinigptError as e:
            print_error(str(e))
            raise typer.Exit(EXIT_USER_ERROR) from None
        except (MemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            print_error(f"out of memory: {out_of_memory_reason(e)}; use a smaller model, batch or "
                        "context")
            raise typer.Exit(EXIT_USER_ERROR) from None
        except UsageError as e:
            command = e.ctx.command_path if e.ctx else ctx.command_path
            print_error(f"{e.format_message()} (see '{command} --help')")
            raise typer.Exit(EXIT_USAGE) from None
        except BrokenPipeError:  # `minigpt generate | head`: the reader has what it wanted
            _quiet_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except OSError as e:  # the disk or the file system said no: a full disk, a read-only folder
            where = f" {e.filename}" if e.filename else ""
            print_error(f"cannot write or read{where}: {e.strerror or e}")
            raise typer.Exit(EXIT_USER_ERROR) from None
        except Stopped as e:  # a run stopped before it had anything to save
            print(f"minigpt: stopped ({control.why_stopped(e.signum)}) before training began; "
                  "nothing was saved", file=sys.stderr)
            raise typer.Exit(exit_status(e.signum)) from None
        except KeyboardInterrupt:  # before a command's own Ctrl-C handling is in place
            print("minigpt: interrupted", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    cls=MinigptGroup,
    help="GPT-2 built from its parts: train it, sample it, chat with it, take it apart.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain click help and errors: quick to start, one-line errors
    pretty_exceptions_enable=False,
)

DataOpt = Annotated[str | None, typer.Option(
    "--data", help="A UTF-8 .txt file, JSON Lines (.jsonl) or Parquet file (.gz too), a folder "
                   "of them, an http(s) URL, hf:owner/dataset, or 'builtin' (default).")]
TextFieldOpt = Annotated[str | None, typer.Option(
    "--text-field", help="The field (JSON Lines) or column (Parquet) holding the text "
                         "(default: text).")]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="cpu, cuda, cuda:N or mps (default: the best available).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (reproducible runs).")]


def spelled_out(names) -> str:
    """'a, b or c': a list of choices for a help text, from the list the engine checks against."""
    names = list(names)
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)


PRESET_NAMES = spelled_out(PRESETS)


def _variant_names() -> str:
    """ablate's variants by what they do: 'remove a part: residual, ...; another size: size'."""
    from minigpt.model.switches import KINDS

    said = "; ".join(f"{KINDS[kind]}: {', '.join(names)}" for kind, names in by_kind().items())
    return said[:1].upper() + said[1:]


VARIANT_NAMES = _variant_names()
VOCAB_SIZES = (f"{TRAIN_RULES['bpe_vocab_size'].minimum:,} to "
               f"{TRAIN_RULES['bpe_vocab_size'].maximum:,}")


# --- train ---------------------------------------------------------------------------------------


def switch_options(switches=None):
    """A decorator that adds one option per switch of the model (model/switches.py) to a
    command, None unless given; the command receives the given ones as `switches`, a dict by
    GPTConfig field."""
    import functools
    import inspect

    from minigpt.model.switches import SWITCHES
    from minigpt.rules import Flag

    switches = SWITCHES if switches is None else switches

    def option(switch) -> inspect.Parameter:
        if isinstance(switch.rule, Flag):
            kind, said = bool | None, f" (GPT-2: {'on' if switch.gpt2 else 'off'})"
        else:  # typed as its values are: "--mlp-ratio 2.5" gives 2.5, not the text "2.5"
            choices = f": {spelled_out(switch.values)}" if switch.values else ""
            kind, said = switch.kind | None, f"{choices} (GPT-2: {switch.gpt2})"
        declared = typer.Option(switch.option, help=f"{switch.meaning}{said}.",
                                rich_help_panel="Model switches")
        return inspect.Parameter(switch.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[kind, declared])

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "switches"]
        added = [option(s) for s in switches]

        @functools.wraps(command)
        def with_switches(**options):
            given = {s.name: v for s in switches if (v := options.pop(s.name)) is not None}
            return command(**options, switches=given)

        with_switches.__signature__ = signature.replace(parameters=own + added)
        with_switches.__annotations__ = {p.name: p.annotation for p in own + added}
        return with_switches

    return decorate


@app.command()
@switch_options()
def train(
    data: DataOpt = None,
    preset_name: Annotated[str | None, typer.Option(
        "--preset", help=f"{PRESET_NAMES} (default: {default_preset_name('cuda')} on CUDA, "
                         f"{default_preset_name('cpu')} elsewhere).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps in all.")] = None,
    time_budget: Annotated[str | None, typer.Option(
        "--time", help="Train for this long instead of a number of steps: 110s, 5m, 1h30m (a "
                       "bare number is seconds). The learning rate warms up and decays on the "
                       "clock, and the final evaluation is inside the time.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Checkpoint file (x.pt) or run directory (default: a new run directory "
                      "under checkpoints/); not a folder where another run saved a model.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Run name under checkpoints/ (default: date and time).")] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue the run saved in this checkpoint.")] = None,
    init: Annotated[Path | None, typer.Option(
        "--init", help="Fine-tune this model (e.g. from import-gpt2): its shape and tokenizer are "
                       "kept, the preset gives the recipe (default: a fine-tuning one).")] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="char or bpe.")] = None,
    vocab_size: Annotated[int | None, typer.Option(
        "--vocab-size", help=f"BPE vocabulary size to train ({VOCAB_SIZES}).")] = None,
    n_layer: Annotated[int | None, typer.Option("--n-layer")] = None,
    n_head: Annotated[int | None, typer.Option("--n-head")] = None,
    n_embd: Annotated[int | None, typer.Option("--n-embd")] = None,
    block_size: Annotated[int | None, typer.Option("--block-size", help="Context length.")] = None,
    dropout: Annotated[float | None, typer.Option("--dropout")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    grad_accum: Annotated[int | None, typer.Option(
        "--grad-accum", help="Micro-batches per optimizer step.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (above 0, at most 1).")] = None,
    warmup_steps: Annotated[int | None, typer.Option("--warmup-steps")] = None,
    eval_interval: Annotated[int | None, typer.Option("--eval-interval")] = None,
    dtype: Annotated[str, typer.Option(
        "--dtype", help="auto: bf16 autocast where the hardware has bf16 (recent GPUs, CPUs "
                        "with AVX-512 BF16 or AMX), else fp32; or fp32 (TF32 matmuls on GPUs), or bf16.")] = "auto",
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the model: faster steps once compiled (tens of "
                          "seconds first), so for long runs; falls back to plain PyTorch if "
                          "it fails.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    text_field: TextFieldOpt = None,
    sft: Annotated[str | None, typer.Option(
        "--sft", help="Instruction-tune the --init model on conversations: a JSON Lines file "
                      "of {\"messages\": [...]}, or 'tasks' for the built-in tasks.")] = None,
    dpo: Annotated[str | None, typer.Option(
        "--dpo", help="Tune the --init model on preferences: a JSON Lines file of "
                      "{\"prompt\", \"chosen\", \"rejected\"} (DPO).")] = None,
    beta: Annotated[float | None, typer.Option(
        "--beta", help="DPO's strength: how far the tuned model may move from the starting "
                       "one (default 0.1).")] = None,
    lora: Annotated[int | None, typer.Option(
        "--lora", help="Tune the --init model (plain, --sft or --dpo) through LoRA adapters of "
                       "this rank R (8 is usual): only they train. Saved merged into the "
                       "weights unless --lora-keep.")] = None,
    lora_alpha: Annotated[float | None, typer.Option(
        "--lora-alpha", help="LoRA's scale: the adapters' product is multiplied by alpha / R "
                             "(default 16, whatever R).")] = None,
    lora_targets: Annotated[str | None, typer.Option(
        "--lora-targets", help=f"The layers of every block LoRA adapts, comma-separated: "
                               f"{spelled_out(LORA_TARGETS)} (default c_attn: attention's q, "
                               "k and v).")] = None,
    lora_keep: Annotated[bool, typer.Option(
        "--lora-keep", help="Save the adapters apart from the base's weights (resumable; "
                            "export-hf writes them as a PEFT adapter folder), not merged.")] = False,
    variant: Annotated[str | None, typer.Option(
        "--variant", help="Apply an ablate variant's switches (rope, llama, modern, ...; see "
                          "'minigpt ablate --help'); a switch's own option overrides it.",
        rich_help_panel="Model switches")] = None,
    switches: dict | None = None,
) -> None:
    """Train a model; checkpoints and events.jsonl go to the run directory.

    The data is tokenized once, on the first run on it, into the cache (see 'minigpt prepare').

    Under torchrun (torchrun --nproc_per_node=N -m minigpt train ...) every process trains with
    DDP and rank 0 alone writes the run directory and prints."""
    from minigpt.backends.hardware import pick_device, resolve_precision
    from minigpt.train import distributed
    from minigpt.train.plan import plan_training
    from minigpt.units import parse_duration

    overrides = dict(
        max_steps=steps, time_budget=None if time_budget is None else parse_duration(time_budget),
        seed=seed, tokenizer=tokenizer, bpe_vocab_size=vocab_size,
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, dropout=dropout,
        batch_size=batch_size, grad_accum=grad_accum, lr=lr, warmup_steps=warmup_steps,
        eval_interval=eval_interval, beta=beta, lora_r=lora, lora_alpha=lora_alpha,
        lora_targets=lora_targets, lora_keep=True if lora_keep else None,
        **_switches(variant, switches or {}, preset_name),
    )
    from minigpt.cli.console import console, run_training, say
    from minigpt.runs.control import RunSignals, signal_handlers

    signals = RunSignals(say=say)  # from here on a stop ends the run: at once while untrained
    with signal_handlers(signals.handlers()):
        torch_device = distributed.setup(pick_device(device))
        try:
            resolve_precision(torch_device, dtype)  # a bad --dtype: said before data or folder
            plan = plan_training(torch_device, data, preset_name, overrides, out=out, name=name,
                                 resume=resume, init=init, sft=sft, dpo=dpo)
            with plan.claim():  # the run directory is ours before any time goes into the data
                with _stopped_before_training(plan.run_dir):
                    prepared = _training_data(plan, text_field, quiet)
                    signals.run = plan.trainer(prepared, torch_device, dtype=dtype,
                                               compile=compile_model)
                if not distributed.is_main():
                    console.quiet = True  # one process speaks for the run: rank 0
                run_training(signals.run, quiet=quiet)
            if signals.received is not None:  # stopped, and saved: not a finished run
                raise typer.Exit(exit_status(signals.received))
            distributed.teardown(together=True)
        finally:
            distributed.teardown()  # after an error: leave at once (a no-op if already left)


def _switches(variant: str | None, given: dict, preset_name: str | None) -> dict:
    """The model's switches for train: a variant's (resolved against the preset's model, for
    settings that depend on it), then the ones given one by one."""
    if variant is None:
        return given
    from minigpt.train.ablation import variant_named
    from minigpt.train.config import preset

    base = preset(preset_name or default_preset_name("cpu")).model
    return {**variant_named(variant).settings_for(base), **given}


@contextmanager
def _stopped_before_training(run_dir):
    """A run stopped while its data is prepared or its model built ends with a done event that
    says so (and saves nothing: there is nothing yet), so that whoever follows it (the TUI) sees
    a stopped run, not a failed or a killed one."""
    try:
        yield
    except Stopped as e:
        if run_dir is not None:
            from minigpt.runs.events import event
            from minigpt.runs.log import EventLog

            log = EventLog(run_dir)
            reason = "interrupted" if e.signum == control.INTERRUPT else "stopped"
            log.try_write(event("done", reason=reason, signal=control.why_stopped(e.signum),
                                train_loss=None, val_loss=None, tokens_per_s=0.0,
                                checkpoint=None))
            log.close()
        raise


def _training_data(plan, text_field, quiet):
    """What the run trains on, as its objective reads it: a corpus prepared in the cache, the
    conversations of instruction tuning, or preference pairs."""
    if plan.cfg.objective == "sft":
        from minigpt.data.chat import load_conversations

        return load_conversations(plan.data, plan.tokenizer, plan.cfg.model.block_size,
                                  plan.cfg.val_fraction)
    if plan.cfg.objective == "dpo":
        from minigpt.train.dpo import load_preferences

        return load_preferences(plan.data, plan.tokenizer, plan.cfg)
    return _prepared_data(plan.data, text_field, plan.cfg, plan.tokenizer, plan.run_dir, quiet)


def _prepared_data(data, text_field, cfg, tokenizer, run_dir, quiet, command="train"):
    """The data prepared once into the cache (with a progress bar, and its events in the run's
    events.jsonl), or found there; under DDP rank 0 prepares and the others then find it.
    Its events name the command ("train" or "ablate"): what the run is, from its first event."""
    import os

    from minigpt.cli.console import preparing
    from minigpt.data.prepare import load_prepared
    from minigpt.data.sources import open_source
    from minigpt.runs.events import event
    from minigpt.runs.log import EventLog
    from minigpt.train import distributed

    log = EventLog(run_dir) if run_dir is not None else None
    pid = os.getpid()  # so a TUI attached during a long preparation can tell the run lives

    def write(ev: dict) -> None:
        log.write({**ev, "pid": pid, "command": command})

    try:
        with distributed.main_first(), preparing(quiet or not distributed.is_main(),
                                                 also=write if log else None) as on_event:
            return load_prepared(open_source(data, text_field), cfg, tokenizer, on_event)
    except Exception as e:  # the run ends before its start: its last event says why
        if log is not None:
            message = str(e) if isinstance(e, MinigptError) else f"{type(e).__name__}: {e}"
            log.try_write(event("error", message=message))
        raise
    finally:
        if log is not None:
            log.close()


@app.command()
def prepare(
    data: DataOpt = None,
    tokenizer: Annotated[str | None, typer.Option(
        "--tokenizer", help="char or bpe (default: the preset's, else char).")] = None,
    vocab_size: Annotated[int | None, typer.Option(
        "--vocab-size", help="BPE vocabulary size to train (default: the preset's, else 4096; "
                             f"{VOCAB_SIZES}).")] = None,
    preset_name: Annotated[str | None, typer.Option(
        "--preset", help="Take the tokenizer settings of this preset (as train --preset would).")] = None,
    text_field: TextFieldOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Tokenize a corpus once into the cache ($MINIGPT_CACHE, else ~/.cache/minigpt), for every
    later train, --resume and ablate on it; train does this itself when it has not been done."""
    from minigpt.cli.console import preparing
    from minigpt.data.prepare import prepare as prepare_source
    from minigpt.data.sources import open_source
    from minigpt.train.config import preset

    base = preset(preset_name or "cpu")  # every preset but gpt2 tokenizes as the defaults say
    cfg = base.with_overrides(tokenizer=tokenizer, bpe_vocab_size=vocab_size)
    source = open_source(data, text_field)
    with preparing(quiet, announce=False) as on_event:
        done = prepare_source(source, cfg.tokenizer, cfg.bpe_vocab_size, on_event=on_event)
    m = done.manifest
    how = "already prepared" if done.cached else f"prepared in {m['seconds']:.1f} s"
    print(f"{source.description}: {m['tokens']:,} {m['tokenizer']} tokens (vocabulary "
          f"{m['vocab_size']:,}, {m['dtype']}), {how}")
    print(f"  {done.path}")


# --- generate and chat ---------------------------------------------------------------------------

CkptOpt = Annotated[Path, typer.Option("--ckpt", help="Checkpoint file or run directory.")]
StrategyOpt = Annotated[str, typer.Option(
    "--strategy", help=f"{spelled_out(STRATEGIES)}.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Softmax temperature (>= 0).")]
TopKOpt = Annotated[int, typer.Option("--top-k", help="top-k: keep the k most likely tokens.")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="top-p: smallest set with this much probability.")]
MinPOpt = Annotated[float, typer.Option("--min-p", help="min-p: drop tokens under min-p x the best.")]
PenaltyOpt = Annotated[float, typer.Option(
    "--repetition-penalty", help="> 1 discourages tokens already in the context.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", "-n", help="Tokens to generate.")]
StopOpt = Annotated[list[str] | None, typer.Option(
    "--stop", help="Stop before this string (repeatable).")]
WeightsOpt = Annotated[str, typer.Option(
    "--weights", help="auto (bf16 where the CPU or GPU multiplies bf16 natively, else fp32), "
                      "fp32 (exact), bf16, or int8 (weight-only quantized: faster still, "
                      "slightly less exact; see docs/chat-and-sampling.md).")]


SystemOpt = Annotated[str | None, typer.Option(
    "--system", help="A system prompt, for a model with a chat template (minigpt train --sft).")]

SAMPLING = SamplingConfig()  # the defaults of generate's and chat's sampling options


def sampling_config(strategy, temperature, top_k, top_p, min_p, repetition_penalty,
                    max_new_tokens, stop, seed):
    return SamplingConfig(strategy=strategy, temperature=temperature, top_k=top_k, top_p=top_p,
                          min_p=min_p, repetition_penalty=repetition_penalty,
                          max_new_tokens=max_new_tokens, stop=tuple(stop or ()), seed=seed)


@app.command()
def generate(
    ckpt: CkptOpt,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")] = "\n",
    strategy: StrategyOpt = SAMPLING.strategy,
    temperature: TemperatureOpt = SAMPLING.temperature,
    top_k: TopKOpt = SAMPLING.top_k,
    top_p: TopPOpt = SAMPLING.top_p,
    min_p: MinPOpt = SAMPLING.min_p,
    repetition_penalty: PenaltyOpt = SAMPLING.repetition_penalty,
    max_new_tokens: MaxNewOpt = SAMPLING.max_new_tokens,
    stop: StopOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    weights: WeightsOpt = "auto",
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the decode step: faster tokens once compiled (tens "
                          "of seconds first), so for long outputs; falls back if compiling "
                          "fails.")] = False,
    stats: Annotated[bool, typer.Option("--stats", help="Print decode tokens/s to stderr.")] = False,
    system: SystemOpt = None,
) -> None:
    """Print the prompt and its continuation, token by token; a model with a chat template
    answers the prompt as the user's turn, and only its answer is printed."""
    limit_for_decoding()  # before torch loads
    from minigpt.backends.hardware import describe_device
    from minigpt.infer.dialogue import Dialogue
    from minigpt.infer.load import load_for_inference
    from minigpt.infer.sampling import GenerationStats, compiled_decoder, stream_text

    cfg = sampling_config(strategy, temperature, top_k, top_p, min_p, repetition_penalty,
                          max_new_tokens, stop, seed)
    loaded = load_for_inference(ckpt, device, weights)
    model, tok = loaded.model, loaded.tokenizer
    if not prompt:
        raise MinigptError("the prompt is empty")
    dialogue = Dialogue(tok, system)
    ids = dialogue.prompt(prompt)  # a character the vocabulary lacks: an error before any output
    if dialogue.templated:
        print(f"note: {dialogue.said}", file=sys.stderr)
    measured = GenerationStats()
    if not dialogue.templated:  # a continuation is the prompt's text and what follows it
        sys.stdout.write(prompt)
    for piece in stream_text(model, tok, ids, cfg, stats=measured, compile=compile_model):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()  # before the stats line on stderr, so the two never interleave
    if compile_model and compiled_decoder(model).failure:
        print(f"note: torch.compile failed, decoded without it: {compiled_decoder(model).failure}",
              file=sys.stderr)
    if stats:
        steady = measured.steady_tokens_per_s  # 0 when too few tokens to tell
        print(f"{loaded.weights_said()}, {describe_device(loaded.device)}: "
              f"{measured.new_tokens} tokens in {measured.seconds:.2f} s: "
              f"{measured.tokens_per_s:.1f} tokens/s; first token after "
              f"{measured.first_token_seconds:.2f} s"
              + (f"; second half at {steady:.1f} tokens/s" if steady else ""), file=sys.stderr)


@app.command()
def chat(
    ckpt: CkptOpt,
    plain: Annotated[bool, typer.Option("--plain", help="A line-based loop instead of the TUI.")] = False,
    strategy: StrategyOpt = SAMPLING.strategy,
    temperature: TemperatureOpt = SAMPLING.temperature,
    top_k: TopKOpt = SAMPLING.top_k,
    top_p: TopPOpt = SAMPLING.top_p,
    min_p: MinPOpt = SAMPLING.min_p,
    repetition_penalty: PenaltyOpt = SAMPLING.repetition_penalty,
    max_new_tokens: MaxNewOpt = SAMPLING.max_new_tokens,
    stop: StopOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    weights: WeightsOpt = "auto",
    system: SystemOpt = None,
) -> None:
    """Talk to a model: each line you type is continued by the model."""
    limit_for_decoding()  # before torch loads
    cfg = sampling_config(strategy, temperature, top_k, top_p, min_p, repetition_penalty,
                          max_new_tokens, stop, seed)
    from minigpt.infer.dialogue import Dialogue
    from minigpt.infer.load import load_for_inference

    # loaded once, here: a bad setting, device or file is one line, not a screen later
    loaded = load_for_inference(ckpt, device, weights)
    Dialogue(loaded.tokenizer, system)  # a system prompt for a model without a template: no
    if plain:
        from minigpt.cli.console import plain_chat

        plain_chat(loaded.model, Dialogue(loaded.tokenizer, system), cfg)
        return
    from minigpt_tui.app import MinigptApp

    tui_app = MinigptApp(ckpt=loaded, autostart=False, weights=weights, sampling=cfg, system=system,
                         device=device)
    tui_app.run()
    if tui_app.return_code:  # it crashed: Textual printed the traceback
        raise typer.Exit(tui_app.return_code)


# --- inspect ---------------------------------------------------------------------------------------


@app.command("inspect")
def inspect_command(
    ckpt: CkptOpt,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The text to look at.")],
    layer: Annotated[int | None, typer.Option(
        "--layer", help="The layer of the head to draw (default: the head that stands out most).")] = None,
    head: Annotated[int | None, typer.Option("--head", help="The head to draw, in --layer.")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write every number (attention, head measures, logit lens) here "
                       "(a new file, or one an earlier --json wrote; any other is refused).")] = None,
    device: DeviceOpt = None,
) -> None:
    """Look inside a model on a prompt: a head's attention, every head's type, the logit lens."""
    from minigpt.infer.inspect import check_head, inspect_prompt
    from minigpt.infer.load import load_for_inference

    if not prompt:
        raise MinigptError("the prompt is empty")
    _check_json_output(json_path)
    # fp32 weights whatever the device: the probabilities shown are the model's own, not rounded
    loaded = load_for_inference(ckpt, device, weights="fp32")
    check_head(loaded.model.config, layer, head)
    from minigpt.cli.console import console
    from minigpt.cli.inspect_view import lens_fits, print_inspection

    # the logit lens where the table shows it, unless --json asks for every position
    found = inspect_prompt(loaded.model, loaded.tokenizer, prompt,
                           lens_last=None if json_path else lens_fits(console.width))
    if found.cut:
        print(f"note: the prompt is {len(found.ids) + found.cut} tokens, more than the context of "
              f"{len(found.ids)}: inspecting its last {len(found.ids)}", file=sys.stderr)

    print_inspection(found, console, layer, head)
    sys.stdout.flush()  # before the line on stderr, so the two never interleave
    if json_path is not None:
        _write_json(json_path, "inspect", found.to_dict())


# --- eval -------------------------------------------------------------------------------------------


@app.command("eval")
def eval_command(
    ckpts: Annotated[list[Path], typer.Argument(
        help="Checkpoints to compare (a base model and its tuned child, say).")],
    tasks: Annotated[bool, typer.Option(
        "--tasks", help="The built-in instruction tasks: reverse, spell, add, count, continue.")] = False,
    count: Annotated[int, typer.Option(
        "--n", help="Held-out questions per task.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Which held-out questions.")] = 0,
    device: DeviceOpt = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write every question, answer and reply here (a new file, or one "
                       "an earlier --json wrote).")] = None,
) -> None:
    """How well models do: each built-in task's accuracy on questions no training saw."""
    from minigpt.infer.evaluate import evaluate_tasks
    from minigpt.infer.load import load_for_inference
    from minigpt.rules import Whole

    if not tasks:
        raise MinigptError("name what to evaluate: --tasks (the built-in instruction tasks)")
    Whole(1, 10_000).check("--n", count, MinigptError)
    _check_json_output(json_path)
    loaded = [load_for_inference(ckpt, device, weights="fp32") for ckpt in ckpts]  # all first
    from minigpt.cli.console import evaluation_progress
    from minigpt.cli.report import print_task_scores

    scores = {}
    for ckpt, model in zip(ckpts, loaded, strict=True):
        with evaluation_progress(str(ckpt), count) as progress:
            scores[str(ckpt)] = evaluate_tasks(model.model, model.tokenizer, count, seed,
                                               progress=progress)
    print_task_scores(scores, {str(c): m for c, m in zip(ckpts, loaded, strict=True)})
    if json_path is not None:
        _write_json(json_path, "eval", {"models": {name: [s.to_dict() for s in found]
                                                   for name, found in scores.items()}}, indent=2)


# --- ablate ----------------------------------------------------------------------------------------


@app.command()
def ablate(
    variants: Annotated[list[str], typer.Argument(
        help=f"Variants to compare with the baseline. {VARIANT_NAMES}.")],
    data: DataOpt = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", help=f"Training steps for each model (default: {ABLATION_STEPS}).")] = None,
    time_budget: Annotated[str | None, typer.Option(
        "--time", help="Train each model for this long instead, on the preset's schedule (110s, "
                       "5m): equal time, where a faster variant takes more steps.")] = None,
    seeds: Annotated[int, typer.Option(
        "--seeds", help="Train every model at this many seeds: means, spreads, and whether a "
                        "difference is within the noise.")] = 1,
    preset_name: Annotated[str, typer.Option("--preset", help="The baseline's preset.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed")] = 1337,
    device: DeviceOpt = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the results here, as JSON (a new file, or one an earlier --json "
                       "wrote; any other is refused).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Run directory for events.jsonl (default: a new one under "
                      "checkpoints/); not a folder where another run left its results.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    text_field: TextFieldOpt = None,
) -> None:
    """Train the baseline and each variant on the same data, seeds and budget; compare them.

    Ctrl-C (or SIGTERM) cancels: the variant in training is dropped, finished ones are shown."""
    from minigpt.backends.hardware import pick_device
    from minigpt.cli.console import run_ablation
    from minigpt.runs.control import RunSignals, signal_handlers
    from minigpt.train.plan import plan_ablation
    from minigpt.units import parse_duration

    budget = None if time_budget is None else parse_duration(time_budget)
    plan = plan_ablation(variants, preset_name, steps, seed, out, seeds, budget)  # before work
    _check_json_output(json_path)
    signals = RunSignals()  # a stop cancels: at once while the data is prepared
    with signal_handlers(signals.handlers()), plan.claim():
        with _stopped_before_training(plan.run_dir):
            prepared = _prepared_data(data, text_field, plan.base, None, plan.run_dir, quiet,
                                      command="ablate")
            signals.run = plan.runner(prepared, pick_device(device))
        results = run_ablation(signals.run, quiet=quiet)
    if json_path is not None:
        _write_json(json_path, "ablate", {"results": [r.to_dict() for r in results]},
                    indent=2)
    if signals.received is not None:  # cancelled: the finished variants are shown and kept
        raise typer.Exit(exit_status(signals.received))


# --json writes one JSON object whose first key marks it as this command's: only a file that starts
# so is replaced by a later --json, never a user's own JSON, a JSON Lines corpus, a checkpoint or
# a run's files (their names are refused even when new)
JSON_MARK = "written_by"
_MARKED = re.compile(rb'\s*\{\s*"' + JSON_MARK.encode() + rb'"\s*:\s*"minigpt ')
NEVER_JSON_OUTPUT = (".jsonl", ".ndjson", ".pt", ".lock", ".log")


def _check_json_output(path: Path | None) -> None:
    """Before any work: --json writes a new file, or replaces one that an earlier --json wrote
    (it starts with the mark), never any other file; its folder must exist."""
    if path is None:
        return
    if str(path) == "" or path.name == "":
        raise MinigptError("--json needs a file name")
    if path.name.lower().endswith(NEVER_JSON_OUTPUT):
        raise MinigptError(f"--json writes one JSON document and never a file named like "
                           f"{path.name} (JSON Lines, a checkpoint or a run's files): name it "
                           ".json")
    if path.is_dir():
        raise MinigptError(f"{path} is a folder: --json needs a file name")
    if path.exists() and not _written_by_json_output(path):
        raise MinigptError(f"{path} exists and was not written by --json: it would be "
                           "replaced; choose another path")
    if not path.parent.is_dir():
        raise MinigptError(f"no such folder: {path.parent} (for --json {path})")


def _written_by_json_output(path: Path) -> bool:
    if not path.is_file():  # a device or a pipe is no earlier output (and a pipe would block)
        return False
    try:
        with open(path, "rb") as f:
            return _MARKED.match(f.read(256)) is not None
    except OSError:
        return False


def _write_json(path: Path, command: str, value: dict, indent: int | None = None) -> None:
    """value with the mark first, written beside path and renamed over it: an earlier output
    stays whole if the disk fills."""
    import json
    import os

    target = path.resolve() if path.is_symlink() else path
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({JSON_MARK: f"minigpt {command}", **value}, indent=indent,
                                  ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {path}", file=sys.stderr)


# --- Hugging Face: GPT-2 and Llama ---------------------------------------------------------------

ImportOut = Annotated[Path, typer.Option(
    "--out", help="Checkpoint file (x.pt) or run directory to write; a checkpoint already there "
                  "is kept and the import refused.")]


@app.command("import-hf")
def import_hf(
    src: Annotated[str, typer.Argument(
        help="A local Hugging Face folder (config.json, weights, tokenizer files) of a GPT-2 or a "
             "Llama, or a hub id: gpt2, openai-community/gpt2, TinyLlama/TinyLlama_v1.1, ...")],
    out: ImportOut,
) -> None:
    """Convert a pretrained GPT-2 or Llama into a minigpt checkpoint, weights and tokenizer."""
    from minigpt.hf.formats import import_hf as convert

    _import(src, out, convert)


@app.command("import-gpt2")
def import_gpt2(
    src: Annotated[str, typer.Argument(
        help="A local Hugging Face GPT-2 folder (config.json, weights, tokenizer files) or a hub "
             "id: gpt2, gpt2-medium, openai-community/gpt2, ...")],
    out: ImportOut,
) -> None:
    """Convert a pretrained GPT-2 into a minigpt checkpoint (import-hf reads Llama too)."""
    from minigpt.hf.gpt2 import import_gpt2 as convert

    _import(src, out, convert)


def _import(src: str, out: Path, convert) -> None:
    from minigpt.checkpoint import CHECKPOINT_NAME

    if out.suffix != ".pt" and out.exists() and not out.is_dir():
        raise MinigptError(f"{out} is a file and not a checkpoint: --out takes a path ending in "
                           ".pt, or a folder")
    path, imported = convert(src, out if out.suffix == ".pt" else out / CHECKPOINT_NAME)
    cfg = imported.model.config
    print(f"imported {src} ({imported.architecture}): {imported.model.num_params() / 1e6:.2f}M "
          f"parameters ({cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, context "
          f"{cfg.block_size}, vocabulary {cfg.vocab_size}), tokenizer of "
          f"{imported.tokenizer.vocab_size} tokens")
    print(f"saved to {path}")


@app.command("export-hf")
def export_hf(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    outdir: Annotated[str, typer.Argument(help="Folder to write the Hugging Face model to: "
                                               "new, or an earlier export, which is replaced.")],
    fmt: Annotated[str, typer.Option(
        "--format", help="gpt2 (GPT2LMHeadModel), llama (LlamaForCausalLM), or auto: GPT-2 where "
                         "it holds the model's switches, else Llama.")] = "auto",
) -> None:
    """Write a model as a Hugging Face GPT-2 or Llama folder that transformers loads."""
    from minigpt.checkpoint import load_checkpoint
    from minigpt.hf.folder import ADAPTER_DIR
    from minigpt.hf.formats import ARCHITECTURES
    from minigpt.hf.formats import export_hf as convert

    if fmt not in ("auto", *ARCHITECTURES):
        raise MinigptError(f"--format is {fmt!r}; choose {spelled_out(('auto', *ARCHITECTURES))}")
    if not outdir:  # as a Path, "" would be the current folder
        raise MinigptError("the folder to export to is empty: name one ('.' for this one)")
    fmt, written = convert(load_checkpoint(ckpt), outdir, fmt)
    print(f"wrote {', '.join(written)} to {outdir}, a Hugging Face {ARCHITECTURES[fmt].NAME} folder")
    print(f"load it with transformers.AutoModelForCausalLM.from_pretrained({str(outdir)!r})")
    if any(name.startswith(ADAPTER_DIR + "/") for name in written):
        adapter = str(Path(outdir) / ADAPTER_DIR)
        print(f"and its LoRA adapters with peft.PeftModel.from_pretrained(model, {adapter!r}); "
              "the folder's own weights are the base model's")


# --- info and tui ----------------------------------------------------------------------------------


@app.command()
def info(ckpt: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")]) -> None:
    """Show a checkpoint's configuration, size, tokenizer, training step and data."""
    from minigpt.checkpoint import load_checkpoint
    from minigpt.cli.report import print_info

    print_info(load_checkpoint(ckpt))


@app.command()
def tui(
    data: DataOpt = None,
    preset_name: Annotated[str | None, typer.Option(
        "--preset", help=f"{PRESET_NAMES} for a new run (default: by device).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Steps for a new run.")] = None,
    attach: Annotated[Path | None, typer.Option(
        "--attach", help="Follow this run (running or finished): its run directory, its "
                         "checkpoint, or a NAME.events.jsonl.")] = None,
    text_field: TextFieldOpt = None,
) -> None:
    """The terminal UI: watch training live, chat with a model, run ablations.

    With no run to attach and no checkpoints yet, it starts training on the data (default: the
    built-in corpus). Runs go on in the background when the TUI quits or the terminal closes."""
    limit_for_decoding()  # before torch loads, for the Chat pane (its training runs go without)
    from minigpt.runs.files import find_run
    from minigpt.runs.state import summarize_run
    from minigpt.train.config import TrainConfig, preset

    if preset_name is not None:
        preset(preset_name)  # an unknown name is an error now, not in the child process
    if steps is not None:
        TrainConfig.check_setting("max_steps", steps)  # the rule the child's train applies
    if attach is not None:
        attach = find_run(attach)  # a checkpoint stands for the run that saves it
        if summarize_run(attach) is None:
            raise MinigptError(f"{attach} is not a run (no events file with a start or a data "
                               "preparation)")
    from minigpt.data.sources import kind_of_name

    if kind_of_name(data) == "path" and not Path(data).expanduser().exists():
        raise MinigptError(f"no such file or folder: {data}")
    from minigpt_tui.app import MinigptApp

    tui_app = MinigptApp(data=data, preset=preset_name, steps=steps, attach=attach,
                         text_field=text_field)
    tui_app.run()
    if tui_app.return_code:  # it crashed: Textual printed the traceback
        raise typer.Exit(tui_app.return_code)


def main() -> None:
    try:
        app()
    finally:
        # Everything torch made at import stays until the process ends: without this, Python's
        # last garbage collections walk all of it on the way out, time added to every command
        # that imported torch (see benchmarks/RESULTS.md, "Chat keeps pace, inspect starts sooner").
        gc.freeze()


if __name__ == "__main__":
    main()
