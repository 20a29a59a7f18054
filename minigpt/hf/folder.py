"""Hugging Face model folders, whatever the architecture in them: reading one, writing one.

An architecture's module (gpt2.py, llama.py) says two things: how its config.json maps to
GPTConfig, and where each of its tensors lives in minigpt's model (a table of Places). This
module does the rest, the same for both:
- where a model comes from: a local folder, or a hub id downloaded with huggingface_hub;
- config.json's fields, each checked to be of its type: a string where a number belongs is a
  one-line refusal, not a crash or a silently different model;
- the weights, one tensor at a time, each copied to its place: safetensors reads a tensor on
  demand, a .bin is unpickled with torch.load(weights_only=True), so it cannot run code;
- the checkpoint an import is saved as;
- an export: config.json, model.safetensors and the tokenizer files, written into a staging
  folder and moved into place, so a failure half-way leaves the folder as it was; and only an
  earlier export of minigpt's (config.json says so) is ever replaced.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.checkpoint import safe_torch_load
from minigpt.data.tokenizer import END_OF_TEXT, BPETokenizer, CharTokenizer, Tokenizer
from minigpt.errors import ConversionError, MinigptError
from minigpt.model.gpt import GPT
from minigpt.rules import Flag, Real, Whole

# What a hub download fetches: the configuration, the tokenizer, and one format of weights.
HUB_COMMON_FILES = ["config.json", "tokenizer.json", "vocab.json", "merges.txt"]
HUB_SAFETENSORS = ["model.safetensors", "model-*.safetensors", "model.safetensors.index.json"]
HUB_PICKLE = ["pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json"]
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


# --- where the model comes from --------------------------------------------------------------------


def resolve_source(src: str) -> Path:
    """A local folder as is; anything else that looks like a hub id (gpt2, org/name) is downloaded."""
    path = Path(src).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{src} is a file; give the folder that holds config.json")
    if HUB_ID.fullmatch(src) and not src.startswith("."):
        return download_from_hub(src)
    raise ConversionError(f"no such folder: {src}")


def download_from_hub(repo_id: str) -> Path:
    """Fetch a model's files from the Hugging Face hub (or its local cache): safetensors if it has
    them, else the .bin pickle. One line of error where the hub cannot be reached."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:
        raise ConversionError(f"{repo_id} is not a local folder, and downloading it needs "
                              "huggingface_hub (pip install huggingface_hub)") from None
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_COMMON_FILES + HUB_SAFETENSORS))
        if not find_weight_files(folder, required=False):
            folder = Path(snapshot_download(repo_id, allow_patterns=HUB_PICKLE))
    except RepositoryNotFoundError:
        raise ConversionError(f"{repo_id} is neither a local folder nor a model on the Hugging "
                              "Face hub (or the model is private)") from None
    except Exception as e:  # offline, no network, timeouts, HTTP errors: all the same to the user
        raise ConversionError(f"{repo_id} is not a local folder, and the Hugging Face hub cannot "
                              f"be reached to download it ({hub_failure(e)})") from None
    return folder


def hub_failure(error: Exception) -> str:
    """A short reason for a failed download: huggingface_hub's messages run to several lines."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and the local cache has no copy"
    lines = str(error).strip().splitlines()
    reason = lines[0].removeprefix("Got: ") if lines else type(error).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


# --- config.json -----------------------------------------------------------------------------------


def read_hf_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ConversionError(f"no config.json in {folder}: not a Hugging Face model folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"cannot read {path}: {e}") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path} is not a JSON object")
    return config


class Fields:
    """config.json's fields, each read with its default (absent or null: the default, as
    transformers reads them) and checked to be of its type, or refused in one line naming it."""

    def __init__(self, hf: dict, where: str):
        self.hf, self.where = hf, where

    def get(self, key: str, default, rule):
        value = self.hf.get(key)
        if value is None:
            return default
        rule.check(f"{self.where}: {key}", value, ConversionError)
        return value

    def whole(self, key: str, default: int | None) -> int | None:
        return self.get(key, default, Whole(1))

    def real(self, key: str, default: float) -> float:
        return float(self.get(key, default, Real(0, low_open=True)))

    def flag(self, key: str, default: bool) -> bool:
        return self.get(key, default, Flag())

    def refuse(self, reason: str) -> ConversionError:
        return ConversionError(f"{self.where}: {reason}")


# --- the weights -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where a tensor of a Hugging Face folder lives in minigpt's model: a parameter, or a block of
    its rows (Llama's q, k and v are rows of c_attn), stored transposed or not (GPT-2's Conv1D)."""

    name: str
    rows: slice | None = None  # None: the whole parameter
    transposed: bool = False

    def view(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The tensor as the folder stores it: a view of the model's, so copy_ fills the model."""
        tensor = state[self.name] if self.rows is None else state[self.name][self.rows]
        return tensor.t() if self.transposed else tensor

    def tensor(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The tensor to write: its own contiguous fp32 copy where it is part of a parameter
        (safetensors refuses tensors that share memory)."""
        tensor = self.view(state).detach().to("cpu", torch.float32)
        if self.rows is None:
            return tensor.contiguous()
        return tensor.clone(memory_format=torch.contiguous_format)


def find_weight_files(folder: Path, required: bool = True) -> list[Path]:
    """The weight files in a folder, safetensors preferred; a sharded model gives all its shards."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"]
                return [folder / name for name in sorted(set(weight_map.values()))]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise ConversionError(f"cannot read {folder / index}: {e}") from None
    if required:
        raise ConversionError(f"no weights in {folder} (looked for model.safetensors and "
                              "pytorch_model.bin)")
    return []


def iter_hf_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor in the files, one at a time, so a large model is never
    in memory twice: safetensors reads each tensor on demand from the memory-mapped file."""
    for path in files:
        if not path.is_file():
            raise ConversionError(f"missing weight file {path}")
        if path.suffix == ".safetensors":
            yield from _iter_safetensors(path)
        else:
            yield from _load_pickle(path).items()


def _iter_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
    except (SafetensorError, OSError) as e:
        raise ConversionError(f"cannot read {path}: it is truncated or corrupt ({e})") from None


def _load_pickle(path: Path) -> dict:
    """A pytorch_model.bin, unpickled safely (never code) and memory-mapped where possible."""
    state = safe_torch_load(path, mmap=True, error=ConversionError)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} is not a state dict of tensors")
    return state


def load_weights(model: GPT, folder: Path, places: dict[str, Place],
                 key: Callable[[str], str | None], architecture: str) -> None:
    """Fill the model from the folder's weight files, one tensor at a time, each into its place.
    key gives a file's name for a tensor as the places name it (None: not a weight, skipped);
    every place must be filled, and no other tensor may come."""
    targets = model.state_dict()  # tensors sharing the parameters' storage: copy_ fills the model
    missing = set(places)
    for hf_name, tensor in iter_hf_tensors(find_weight_files(folder)):
        name = key(hf_name)
        if name is None:
            continue
        if name not in places:
            raise ConversionError(f"unexpected tensor {hf_name} in {folder}: not a "
                                  f"{architecture} weight of this configuration")
        target = places[name].view(targets)
        if tensor.shape != target.shape:
            raise ConversionError(f"{hf_name} in {folder} has shape {list(tensor.shape)} but "
                                  f"config.json implies {list(target.shape)}")
        with torch.no_grad():
            target.copy_(tensor)
        missing.discard(name)
        del tensor  # the next tensor replaces it: at most one is held beside the model
    if missing:
        shown = ", ".join(sorted(missing)[:3]) + (" ..." if len(missing) > 3 else "")
        raise ConversionError(f"{folder} lacks {len(missing)} weight(s) the model needs: {shown}")


# --- import ----------------------------------------------------------------------------------------


@dataclass
class ImportedModel:
    model: GPT
    tokenizer: Tokenizer
    source: str  # what the user named: a folder or a hub id
    folder: Path
    architecture: str  # what the folder held: "GPT-2" or "Llama"


def check_vocabulary(tokenizer: Tokenizer, vocab_size: int, folder: Path) -> None:
    if tokenizer.vocab_size > vocab_size:
        raise ConversionError(f"the tokenizer in {folder} has {tokenizer.vocab_size} tokens, more "
                              f"than the model's vocabulary of {vocab_size}")


def save_import(src: str, out: str | os.PathLike,
                load: Callable[[str], ImportedModel]) -> tuple[Path, ImportedModel]:
    """Import a model with load and save it as a minigpt checkpoint (no training state); a file
    already at `out` (a trained model, perhaps) is kept, and the import refused before loading."""
    from minigpt.checkpoint import save_checkpoint

    if Path(out).exists():
        raise ConversionError(f"{out} already exists: importing would replace it; choose "
                              "another --out")
    imported = load(src)
    meta = {"imported_from": src,
            "source": f"imported from {src} (Hugging Face {imported.architecture})", "step": 0}
    path = save_checkpoint(out, imported.model, imported.tokenizer, meta=meta)
    return path, imported


# --- export ----------------------------------------------------------------------------------------

EXPORTED_BY = "exported_by"  # a key of config.json that transformers keeps and ignores
# every name an export may write (BPE adds GPT-2's vocab.json and merges.txt)
EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "vocab.json", "merges.txt", "adapter")
ADAPTER_DIR = "adapter"  # a --lora-keep checkpoint's adapters, as a PEFT adapter folder


def end_of_text_id(tokenizer: Tokenizer) -> int | None:
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.tokenizer.token_to_id(END_OF_TEXT)
    return None


def write_export(checkpoint, outdir: str | os.PathLike, hf_config: dict,
                 places: dict[str, Place]) -> list[str]:
    """Write a checkpoint as a Hugging Face folder: config.json (hf_config, marked as this
    command's), model.safetensors (each tensor from its place) and the tokenizer files; the names
    of the files written. A checkpoint that keeps LoRA adapters apart (train --lora-keep) goes
    out as its base model, and its adapters as a PEFT adapter folder inside, adapter/."""
    from safetensors.torch import save_file

    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ConversionError(f"{outdir} exists and is not a folder")
    _check_export_folder(outdir)
    state = checkpoint.build_model("cpu", adapters=False).state_dict()
    # Every file is written into a folder inside outdir (on its disk, and writable where outdir
    # is: "." has no name to put one beside), then moved into place: a full disk or an error
    # half-way leaves outdir as it was (a previous export in it stays whole; a folder this
    # export made is removed).
    made = not outdir.exists()
    staging = outdir / f".export.{os.getpid()}.tmp"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "config.json").write_text(
            json.dumps({**hf_config, EXPORTED_BY: "minigpt"}, indent=2) + "\n", encoding="utf-8")
        save_file({name: place.tensor(state) for name, place in places.items()},
                  str(staging / "model.safetensors"), metadata={"format": "pt"})
        written = ["config.json", "model.safetensors"]
        written += write_tokenizer_files(checkpoint.tokenizer, staging,
                                         checkpoint.model_config.block_size)
        give_new_file_modes(staging, written)
        if checkpoint.adapters is not None:
            adapter = write_adapter(checkpoint, staging / ADAPTER_DIR, places, outdir)
            give_new_file_modes(staging / ADAPTER_DIR, adapter)
        for name in written:
            os.replace(staging / name, outdir / name)
        # an earlier export's adapter, replaced by this one's, or left out: it adapted another model
        shutil.rmtree(outdir / ADAPTER_DIR, ignore_errors=True)
        if checkpoint.adapters is not None:
            os.replace(staging / ADAPTER_DIR, outdir / ADAPTER_DIR)
            written += [f"{ADAPTER_DIR}/{name}" for name in adapter]
    except Exception as e:  # OSError, or safetensors' own error for the same I/O failures
        shutil.rmtree(staging, ignore_errors=True)
        if made:
            shutil.rmtree(outdir, ignore_errors=True)
        if isinstance(e, MinigptError):
            raise
        raise ConversionError(_export_failure(outdir, e)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def write_adapter(checkpoint, folder: Path, places: dict[str, Place], base: Path) -> list[str]:
    """A checkpoint's LoRA adapters as a PEFT adapter folder for the model exported beside it:
    adapter_config.json and adapter_model.safetensors, which peft.PeftModel.from_pretrained
    loads onto that model. Each adapted weight's place gives its module's name in the folder;
    where a place is some rows of our matrix (Llama's q, k and v in c_attn), its adapter is A
    whole and those rows of B, which is exact: rows of B A are those rows of B times A. PEFT
    keeps A and B as linear layers, [r, in] and [out, r], as ours, even where the folder stores
    the weight transposed (GPT-2's Conv1D): fan_in_fan_out says so, for merging."""
    from safetensors.torch import save_file

    cfg, adapters = checkpoint.train_config, checkpoint.adapters
    tensors, modules, transposed = {}, set(), set()
    for hf_name, place in places.items():
        layer = place.name.removesuffix(".weight")
        if not hf_name.endswith(".weight") or layer + ".lora_A.weight" not in adapters:
            continue
        module = hf_name.removesuffix(".weight")
        A, B = adapters[layer + ".lora_A.weight"], adapters[layer + ".lora_B.weight"]
        B = B if place.rows is None else B[place.rows]
        # each its own copy: Llama's q, k and v share our one A, which safetensors refuses
        for factor, t in (("lora_A", A), ("lora_B", B)):
            tensors[f"base_model.model.{module}.{factor}.weight"] = t.detach().float().clone(
                memory_format=torch.contiguous_format)
        modules.add(".".join(module.split(".")[-2:]))  # attn.c_attn, self_attn.q_proj, ...
        transposed.add(place.transposed)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base.resolve()),
        "r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": sorted(modules),
        "fan_in_fan_out": transposed == {True},
        "inference_mode": True,
    }
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n",
                                                encoding="utf-8")
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return ["adapter_config.json", "adapter_model.safetensors"]


def char_tokenizer_json(tokenizer: CharTokenizer) -> str:
    """A tokenizers JSON that gives a character tokenizer's ids: BPE with no merges over its
    characters and no pre-tokenizer, so every character is one token with the same id."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models

    tok = HFTokenizer(models.BPE(vocab=dict(tokenizer.stoi), merges=[]))
    tok.decoder = decoders.Fuse()  # join the characters back without spaces
    return tok.to_str()


def write_tokenizer_files(tokenizer: Tokenizer, outdir: Path, block_size: int) -> list[str]:
    """tokenizer.json (what PreTrainedTokenizerFast and AutoTokenizer load), tokenizer_config.json,
    and for BPE also vocab.json + merges.txt, GPT-2's classic pair."""
    written = ["tokenizer.json", "tokenizer_config.json"]
    if isinstance(tokenizer, BPETokenizer):
        (outdir / "tokenizer.json").write_text(tokenizer.tokenizer.to_str(), encoding="utf-8")
        if type(tokenizer.tokenizer.model).__name__ == "BPE":
            tokenizer.tokenizer.model.save(str(outdir))
            written += ["vocab.json", "merges.txt"]
    elif isinstance(tokenizer, CharTokenizer):
        (outdir / "tokenizer.json").write_text(char_tokenizer_json(tokenizer), encoding="utf-8")
    else:
        raise ConversionError(f"cannot export a {tokenizer.kind!r} tokenizer")
    settings = {
        # the generic fast tokenizer loads tokenizer.json as it is: the ids are exactly ours
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": False,  # decoding must give back the text, spaces and all
    }
    if end_of_text_id(tokenizer) is not None:
        settings.update(bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT)
    (outdir / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n",
                                                  encoding="utf-8")
    return written


def _check_export_folder(outdir: Path) -> None:
    """An export goes into a new or empty folder, a folder without files of its names, or over
    an earlier export of this command's (its config.json says so), which it replaces; anything
    else of those names is someone's own (a project's config.json, a model downloaded from the
    hub), and the export is refused before writing."""
    clash = [name for name in EXPORT_FILES if (outdir / name).exists()]
    if not clash:
        return
    try:
        earlier_export = read_hf_config(outdir).get(EXPORTED_BY) == "minigpt"
    except ConversionError:
        earlier_export = False
    if not earlier_export:
        raise ConversionError(f"{outdir} is not an earlier export, and holds {', '.join(clash)}: "
                              f"exporting would replace {'it' if len(clash) == 1 else 'them'}; "
                              "choose another folder")


def _export_failure(outdir: Path, error: Exception) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC or "os error 28" in str(error):
        return f"no space left on device while exporting to {outdir}; nothing in it was changed"
    reason = error.strerror if isinstance(error, OSError) and error.strerror else \
        str(error).strip().splitlines()[0]
    return f"cannot export to {outdir}: {reason}; nothing in it was changed"


def give_new_file_modes(outdir: Path, names: list[str]) -> None:
    """Each file the mode open() gives a new one, 0o666 less the umask, as the folder's other
    files have: safetensors writes through a private temporary file, so its file came out 0600,
    unreadable to the group and others that config.json beside it is readable to."""
    umask = os.umask(0o077)  # the only way to read the umask before Python 3.13 is to set it
    os.umask(umask)
    for name in names:
        os.chmod(outdir / name, 0o666 & ~umask)
