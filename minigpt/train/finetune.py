"""Fine-tuning: a training run that starts from a saved model (an imported GPT-2, or one of ours).

The weights only mean something with the shape and the tokenizer they were trained with, so both
come from the checkpoint; a preset gives only the recipe (learning rate, batch, steps). The context
may be shortened (GPT-2's 1024 tokens is slow on a CPU) but never lengthened: wpe has no rows for
positions the model never saw.
"""

from __future__ import annotations

from dataclasses import replace

from minigpt.checkpoint import Checkpoint
from minigpt.errors import ConfigError
from minigpt.model.config import GPTConfig
from minigpt.model.switches import SWITCHES
from minigpt.train.config import TrainConfig

# The recipe when --init is given without --preset: a learning rate small enough that pretrained
# weights are adjusted rather than overwritten, and batches a CPU gets through in seconds. The
# model in it is a placeholder (the checkpoint's shape replaces it) except for block_size, the
# context used when the model's own is longer.
FINETUNE = TrainConfig(
    model=GPTConfig(block_size=256),
    tokenizer="bpe", batch_size=8, max_steps=200, lr=1e-4, min_lr=1e-5, warmup_steps=20,
    eval_interval=50, eval_iters=10, sample_tokens=100,
)

# Instruction tuning (--sft) and preference tuning (--dpo) of a small model: larger steps than a
# pretrained GPT-2 is fine-tuned with (its conversations are short and its answers few tokens),
# batches of whole conversations or of pairs.
SFT = replace(FINETUNE, batch_size=32, max_steps=600, lr=1e-3, min_lr=1e-4, warmup_steps=30,
              eval_interval=100, eval_iters=10, sample_tokens=40, objective="sft")
DPO = replace(FINETUNE, batch_size=16, max_steps=200, lr=5e-5, min_lr=5e-6, warmup_steps=20,
              eval_interval=50, eval_iters=10, sample_tokens=40, objective="dpo")

# Settings that would change what the weights mean: refused with --init.
FIXED_BY_THE_MODEL = ("n_layer", "n_head", "n_embd", "tokenizer", "bpe_vocab_size",
                      *(s.name for s in SWITCHES))  # a switch changes what the weights compute
OPTION_NAMES = {"bpe_vocab_size": "vocab-size"}


def finetune_config(start: Checkpoint, recipe: TrainConfig, overrides: dict) -> TrainConfig:
    """The training configuration for fine-tuning `start`: its model, the recipe, the overrides."""
    fixed = [k for k in FIXED_BY_THE_MODEL if overrides.get(k) is not None]
    if fixed:
        shown = ", ".join("--" + OPTION_NAMES.get(k, k).replace("_", "-") for k in fixed)
        raise ConfigError(f"--init keeps the model's shape, switches and tokenizer, so {shown} "
                          "cannot be changed")
    model = start.model_config
    context = overrides.get("block_size")
    if context is None:
        context = min(recipe.model.block_size, model.block_size)
    elif context > model.block_size:
        raise ConfigError(f"--block-size {context} exceeds the model's context of "
                          f"{model.block_size}: it has no position embeddings beyond that")
    dropout = overrides.get("dropout")
    model = replace(model, block_size=context,
                    dropout=model.dropout if dropout is None else dropout)
    recipe_changes = {k: v for k, v in overrides.items()
                      if k not in (*FIXED_BY_THE_MODEL, "block_size", "dropout")}
    if overrides.get("lora_r") is not None:  # a preset's Muon: LoRA's adapters train with AdamW
        recipe_changes["optimizer"] = "adamw"
    kind = start.tokenizer.kind if start.tokenizer.kind in ("char", "bpe") else "bpe"
    return replace(recipe, model=model, tokenizer=kind).with_overrides(**recipe_changes)


def fit_to_context(start: Checkpoint, model: GPTConfig) -> Checkpoint:
    """The checkpoint with its configuration replaced by `model` (same shape, maybe a shorter
    context, other dropout): wpe keeps the rows of the first block_size positions."""
    state = dict(start.state_dict)
    wpe = state.get("transformer.wpe.weight")
    if wpe is not None and wpe.size(0) > model.block_size:
        state["transformer.wpe.weight"] = wpe[: model.block_size].clone()
    return replace(start, model_config=model, state_dict=state)


def with_chat_tokens(start: Checkpoint) -> Checkpoint:
    """The checkpoint with the chat template's tokens in its tokenizer, and rows for them in its
    embedding (and an untied head): each new row the mean of the old ones, a token that starts
    out meaning "a token" and learns its own meaning in instruction tuning. A checkpoint that
    has them already is returned as it is."""
    import torch

    from minigpt.data.chat import chat_tokenizer

    tokenizer = chat_tokenizer(start.tokenizer)
    if tokenizer is start.tokenizer and start.model_config.vocab_size >= tokenizer.vocab_size:
        return start
    model = start.model_config
    grow = max(0, tokenizer.vocab_size - model.vocab_size)
    state = dict(start.state_dict)
    for name in ("transformer.wte.weight", "lm_head.weight"):
        if name in state and grow:
            old = state[name]
            state[name] = torch.cat([old, old.mean(dim=0, keepdim=True).expand(grow, -1)])
    return replace(start, tokenizer=tokenizer, state_dict=state,
                   model_config=replace(model, vocab_size=model.vocab_size + grow))
