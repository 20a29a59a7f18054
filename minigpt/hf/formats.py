"""Which Hugging Face architecture a model goes out as, and which one a folder brings in.

export-hf writes GPT-2 where a GPT-2 folder holds every switch of the model (GPT-2 itself, with
its head tied or not), else Llama where a Llama folder does (RoPE, RMSNorm and SwiGLU, biases
and GQA or not), else refuses, naming what each format cannot hold. import-hf reads config.json's
model_type. What each architecture is lives in its module: gpt2.py, llama.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from minigpt.errors import ConversionError
from minigpt.hf import gpt2, llama
from minigpt.hf.folder import (
    ImportedModel,
    read_hf_config,
    resolve_source,
    save_import,
    write_export,
)
from minigpt.model.config import GPTConfig

ARCHITECTURES = {"gpt2": gpt2, "llama": llama}  # config.json's model_type, and its module


def choose_format(config: GPTConfig, path) -> str:
    """The first format whose folder holds every value of the model's switches, or a refusal
    naming, for each format, the values it cannot hold (export-hf --format gives one format's
    refusal, which says what each value is)."""
    unheld = {}
    for fmt in ARCHITECTURES:
        unheld[fmt] = [f"{s.name}={getattr(config, s.name)!r}" for s in config.switches
                       if not s.exportable(getattr(config, s.name), fmt)]
        if not unheld[fmt]:
            return fmt
    cannot = "; ".join(f"a {ARCHITECTURES[fmt].NAME} folder cannot hold {', '.join(values)}"
                       for fmt, values in unheld.items())
    raise ConversionError(f"{path} cannot be exported to Hugging Face: {cannot}")


def export_hf(checkpoint, outdir: str | os.PathLike, fmt: str = "auto") -> tuple[str, list[str]]:
    """Write a checkpoint as a Hugging Face folder of the format asked for, or of the one its
    switches choose ("auto"); the format, and the names of the files written."""
    if fmt == "auto":
        fmt = choose_format(checkpoint.model_config, checkpoint.path)
    arch, config = ARCHITECTURES[fmt], checkpoint.model_config
    problems = arch.export_problems(config)
    if problems:
        raise ConversionError(f"{checkpoint.path} cannot be exported as {arch.NAME}: it was built "
                              f"with {'; '.join(problems)}, which {arch.NAME}'s architecture "
                              f"cannot express")
    return fmt, write_export(checkpoint, outdir, arch.hf_config(config, checkpoint.tokenizer),
                             arch.places(config))


def load_hf(src: str) -> ImportedModel:
    """A Hugging Face GPT-2 or Llama (folder or hub id) as a minigpt model and tokenizer."""
    folder = resolve_source(src)
    model_type = read_hf_config(folder).get("model_type")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        known = " and ".join(f"{a.NAME} ({t!r})" for t, a in ARCHITECTURES.items())
        raise ConversionError(f"{folder / 'config.json'}: model_type is {model_type!r}; "
                              f"minigpt imports {known} models")
    return ARCHITECTURES[model_type].read_folder(folder, src)


def import_hf(src: str, out: str | os.PathLike) -> tuple[Path, ImportedModel]:
    """Import a Hugging Face GPT-2 or Llama and save it as a minigpt checkpoint (no training
    state); a file already at `out` is kept, and the import refused."""
    return save_import(src, out, load_hf)
