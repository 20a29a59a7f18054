"""The bridge to Hugging Face's GPT-2: import its weights and tokenizer, export ours in its layout.

minigpt's model uses GPT-2's own parameter names, so pretrained weights map one to one once the
differences of Hugging Face's layout are handled, both ways:
- c_attn, attn.c_proj, c_fc and mlp.c_proj are Conv1D there, stored (in, out); nn.Linear is
  (out, in), so these four are transposed.
- attn.bias and attn.masked_bias are causal-mask buffers, not weights: ignored.
- The LM head is tied to wte: the hub's files have no lm_head.weight, and safetensors cannot store
  one tensor under two names, so export leaves it out (unless the head is untied).

transformers itself is not needed: config.json is JSON, weights come through safetensors (or a .bin
through torch.load(weights_only=True)), and the tokenizer through the `tokenizers` library. The
tests use transformers as the reference the results must equal.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.checkpoint import safe_torch_load
from minigpt.data.tokenizer import END_OF_TEXT, BPETokenizer, CharTokenizer, Tokenizer
from minigpt.errors import ConversionError, MinigptError
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT, empty_model
from minigpt.model.switches import unexportable

# Conv1D in Hugging Face's GPT-2, (in, out): transposed on the way in and on the way out.
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight")
# Causal-mask buffers that old GPT-2 files carry beside the weights.
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # the dot: c_attn.bias is a weight
# GPT-2's GELU is the tanh approximation; transformers knows it under two names.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")

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


# --- reading Hugging Face's files -------------------------------------------------------------------


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


def gpt_config_from_hf(hf: dict, where: str = "config.json") -> GPTConfig:
    """minigpt's configuration for a Hugging Face GPT-2 config, or a refusal that names why."""
    model_type = hf.get("model_type")
    if model_type != "gpt2":
        raise ConversionError(f"{where}: model_type is {model_type!r}, not 'gpt2'; "
                              "only GPT-2 models can be imported")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in TANH_GELU:
        raise ConversionError(f"{where}: activation_function is {activation!r}; minigpt's MLP uses "
                              "GPT-2's tanh GELU ('gelu_new') only")
    shape = {}
    for ours, theirs, default in (("vocab_size", "vocab_size", 50257),
                                  ("block_size", "n_positions", 1024),
                                  ("n_layer", "n_layer", 12), ("n_head", "n_head", 12),
                                  ("n_embd", "n_embd", 768)):
        value = hf.get(theirs, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConversionError(f"{where}: {theirs} must be an integer, got {value!r}")
        shape[ours] = value
    n_inner = hf.get("n_inner")
    if n_inner is not None and n_inner != 4 * shape["n_embd"]:
        raise ConversionError(f"{where}: n_inner is {n_inner}; minigpt's MLP is 4 x n_embd = "
                              f"{4 * shape['n_embd']} wide")
    if not hf.get("scale_attn_weights", True):
        raise ConversionError(f"{where}: scale_attn_weights is false; minigpt always divides "
                              "attention scores by sqrt(head size)")
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        raise ConversionError(f"{where}: scale_attn_by_inverse_layer_idx is true; minigpt's "
                              "attention has no per-layer scaling")
    if hf.get("add_cross_attention", False):
        raise ConversionError(f"{where}: add_cross_attention is true; minigpt is decoder-only")
    # reorder_and_upcast_attn only changes the precision of the attention sums: fp32 here anyway.
    try:
        return GPTConfig(**shape, dropout=0.0, bias=True,
                         layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
                         tie_weights=bool(hf.get("tie_word_embeddings", True)))
    except MinigptError as e:
        raise ConversionError(f"{where}: {e}") from None


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


def minigpt_name(hf_name: str) -> str | None:
    """Our parameter name for a Hugging Face one; None for the mask buffers.

    GPT2LMHeadModel files say transformer.h.0...; files saved from GPT2Model (the hub's gpt2) say
    h.0... without the prefix.
    """
    if hf_name == "lm_head.weight":
        return hf_name
    name = hf_name.removeprefix("transformer.")
    if name.endswith(MASK_BUFFERS):
        return None
    return "transformer." + name


# --- import ----------------------------------------------------------------------------------------


@dataclass
class ImportedModel:
    model: GPT
    tokenizer: Tokenizer
    source: str  # what the user named: a folder or a hub id
    folder: Path


def load_gpt2(src: str) -> ImportedModel:
    """A Hugging Face GPT-2 (folder or hub id) as a minigpt model and tokenizer."""
    folder = resolve_source(src)
    config = gpt_config_from_hf(read_hf_config(folder), f"{folder / 'config.json'}")
    from minigpt.data.tokenizer import gpt2_tokenizer_from_folder

    tokenizer = gpt2_tokenizer_from_folder(folder)
    if tokenizer.vocab_size > config.vocab_size:
        raise ConversionError(f"the tokenizer in {folder} has {tokenizer.vocab_size} tokens, more "
                              f"than the model's vocabulary of {config.vocab_size}")
    model = empty_model(config)
    targets = model.state_dict()  # tensors sharing the parameters' storage: copy_ fills the model
    missing = set(targets)
    if config.tie_weights:
        missing.discard("lm_head.weight")  # filled with wte
    for hf_name, tensor in iter_hf_tensors(find_weight_files(folder)):
        name = minigpt_name(hf_name)
        if name is None or (name == "lm_head.weight" and config.tie_weights):
            continue
        if name not in targets:
            raise ConversionError(f"unexpected tensor {hf_name} in {folder}: not a GPT-2 weight")
        if name.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t()
        if tensor.shape != targets[name].shape:
            raise ConversionError(f"{hf_name} in {folder} has shape {list(tensor.shape)} but "
                                  f"config.json implies {list(targets[name].shape)}")
        with torch.no_grad():
            targets[name].copy_(tensor)
        missing.discard(name)
        del tensor  # the next tensor replaces it: at most one is held beside the model
    if missing:
        shown = ", ".join(sorted(missing)[:3]) + (" ..." if len(missing) > 3 else "")
        raise ConversionError(f"{folder} lacks {len(missing)} weight(s) the model needs: {shown}")
    model.eval()
    return ImportedModel(model, tokenizer, src, folder)


def import_gpt2(src: str, out: str | os.PathLike) -> tuple[Path, ImportedModel]:
    """Import a Hugging Face GPT-2 and save it as a minigpt checkpoint (no training state); a
    file already at `out` (a trained model, perhaps) is kept, and the import refused."""
    from minigpt.checkpoint import save_checkpoint

    if Path(out).exists():
        raise ConversionError(f"{out} already exists: importing would replace it; choose "
                              "another --out")
    imported = load_gpt2(src)
    meta = {"imported_from": src, "source": f"imported from {src} (Hugging Face GPT-2)",
            "step": 0}
    path = save_checkpoint(out, imported.model, imported.tokenizer, meta=meta)
    return path, imported


# --- export ----------------------------------------------------------------------------------------

def export_problems(config: GPTConfig) -> list[str]:
    """Why a model cannot be written as a Hugging Face GPT-2 (a switch each, from the switches'
    table); empty when it can. An untied head is fine: GPT-2's config has tie_word_embeddings."""
    return unexportable(config, config.switches)


def end_of_text_id(tokenizer: Tokenizer) -> int | None:
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.tokenizer.token_to_id(END_OF_TEXT)
    return None


EXPORTED_BY = "exported_by"  # a key of config.json that transformers keeps and ignores


def hf_config(config: GPTConfig, tokenizer: Tokenizer) -> dict:
    eot = end_of_text_id(tokenizer)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,  # what transformers before 4.0 read
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": config.tie_weights,
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "torch_dtype": "float32",
        EXPORTED_BY: "minigpt",  # what a later export into the same folder knows it by
    }


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights under Hugging Face's names and layout, each its own contiguous tensor."""
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_weights:
            continue  # the same tensor as wte: safetensors stores a tensor once, HF re-ties it
        if name.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t()
        state[name] = tensor.detach().to("cpu", torch.float32).contiguous()
    return state


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


def export_hf(checkpoint, outdir: str | os.PathLike) -> list[str]:
    """Write a checkpoint as a Hugging Face GPT-2 folder; the names of the files written."""
    from safetensors.torch import save_file

    config = checkpoint.model_config
    problems = export_problems(config)
    if problems:
        raise ConversionError(f"{checkpoint.path} cannot be exported as GPT-2: it was built with "
                              f"{'; '.join(problems)}, which GPT-2's architecture cannot express")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ConversionError(f"{outdir} exists and is not a folder")
    _check_export_folder(outdir)
    model = checkpoint.build_model("cpu")
    # Every file is written into a folder inside outdir (on its disk, and writable where outdir
    # is: "." has no name to put one beside), then moved into place: a full disk or an error
    # half-way leaves outdir as it was (a previous export in it stays whole; a folder this
    # export made is removed).
    made = not outdir.exists()
    staging = outdir / f".export.{os.getpid()}.tmp"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "config.json").write_text(
            json.dumps(hf_config(config, checkpoint.tokenizer), indent=2) + "\n", encoding="utf-8")
        save_file(hf_state_dict(model), str(staging / "model.safetensors"),
                  metadata={"format": "pt"})
        written = ["config.json", "model.safetensors"]
        written += write_tokenizer_files(checkpoint.tokenizer, staging, config.block_size)
        give_new_file_modes(staging, written)
        for name in written:
            os.replace(staging / name, outdir / name)
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


# every name an export may write (BPE adds GPT-2's vocab.json and merges.txt)
EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "vocab.json", "merges.txt")


def _check_export_folder(outdir: Path) -> None:
    """An export goes into a new or empty folder, a folder without files of its names, or over
    an earlier export of this command's (its config.json says so), which it replaces; anything
    else of those names is someone's own (a project's config.json, a GPT-2 downloaded from the
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
