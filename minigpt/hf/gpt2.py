"""The bridge to Hugging Face's GPT-2: import its weights and tokenizer, export ours in its layout.

minigpt's model uses GPT-2's own parameter names, so pretrained weights map one to one once the
differences of Hugging Face's layout are handled, both ways:
- c_attn, attn.c_proj, c_fc and mlp.c_proj are Conv1D there, stored (in, out); nn.Linear is
  (out, in), so these four are transposed.
- attn.bias and attn.masked_bias are causal-mask buffers, not weights: ignored.
- The LM head is tied to wte: the hub's files have no lm_head.weight, and safetensors cannot store
  one tensor under two names, so export leaves it out (unless the head is untied).

transformers itself is not needed: config.json is JSON, weights come through safetensors (or a .bin
through torch.load(weights_only=True)), and the tokenizer through the `tokenizers` library; what
any Hugging Face folder needs, reading and writing it, is in folder.py. The tests use
transformers as the reference the results must equal.
"""

from __future__ import annotations

import os
from pathlib import Path

from minigpt.data.tokenizer import Tokenizer, gpt2_tokenizer_from_folder
from minigpt.errors import ConfigError, ConversionError
from minigpt.hf.folder import (
    Fields,
    ImportedModel,
    Place,
    check_vocabulary,
    end_of_text_id,
    load_weights,
    read_hf_config,
    resolve_source,
    save_import,
)
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import empty_model
from minigpt.model.switches import unexportable

NAME = "GPT-2"
# Conv1D in Hugging Face's GPT-2, (in, out): transposed on the way in and on the way out.
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight")
# Causal-mask buffers that old GPT-2 files carry beside the weights.
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # the dot: c_attn.bias is a weight
# GPT-2's GELU is the tanh approximation; transformers knows it under two names.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


# --- the configuration and the weights' places ------------------------------------------------------


def gpt_config_from_hf(hf: dict, where: str = "config.json") -> GPTConfig:
    """minigpt's configuration for a Hugging Face GPT-2 config, or a refusal that names why."""
    model_type = hf.get("model_type")
    if model_type != "gpt2":
        raise ConversionError(f"{where}: model_type is {model_type!r}, not 'gpt2'; "
                              "only GPT-2 models can be imported")
    f = Fields(hf, where)
    activation = hf.get("activation_function", "gelu_new")
    if activation not in TANH_GELU:
        raise f.refuse(f"activation_function is {activation!r}; minigpt's MLP uses GPT-2's tanh "
                       "GELU ('gelu_new') only")
    shape = dict(vocab_size=f.whole("vocab_size", 50257), block_size=f.whole("n_positions", 1024),
                 n_layer=f.whole("n_layer", 12), n_head=f.whole("n_head", 12),
                 n_embd=f.whole("n_embd", 768))
    n_inner = hf.get("n_inner")
    if n_inner is not None and n_inner != 4 * shape["n_embd"]:
        raise f.refuse(f"n_inner is {n_inner}; minigpt's MLP is 4 x n_embd = "
                       f"{4 * shape['n_embd']} wide")
    if not f.flag("scale_attn_weights", True):
        raise f.refuse("scale_attn_weights is false; minigpt always divides attention scores by "
                       "sqrt(head size)")
    if f.flag("scale_attn_by_inverse_layer_idx", False):
        raise f.refuse("scale_attn_by_inverse_layer_idx is true; minigpt's attention has no "
                       "per-layer scaling")
    if f.flag("add_cross_attention", False):
        raise f.refuse("add_cross_attention is true; minigpt is decoder-only")
    # reorder_and_upcast_attn only changes the precision of the attention sums: fp32 here anyway.
    try:
        return GPTConfig(**shape, dropout=0.0, bias=True,
                         layer_norm_epsilon=f.real("layer_norm_epsilon", 1e-5),
                         tie_weights=f.flag("tie_word_embeddings", True))
    except ConfigError as e:  # the checks of GPTConfig's own rules
        raise f.refuse(str(e)) from None


def places(config: GPTConfig) -> dict[str, Place]:
    """Every tensor of a GPT-2 folder, under our own names (GPT-2's), and where it lives: the
    same parameter, the four Conv1D weights transposed. A tied head is not written: it is wte."""
    names = empty_model(config, "meta").state_dict()
    return {name: Place(name, transposed=name.endswith(CONV1D_WEIGHTS)) for name in names
            if not (name == "lm_head.weight" and config.tie_weights)}


def minigpt_name(hf_name: str, tied: bool) -> str | None:
    """Our parameter name for a Hugging Face one; None for what is not a weight to read (the
    mask buffers, a tied head that old .bin files hold beside wte).

    GPT2LMHeadModel files say transformer.h.0...; files saved from GPT2Model (the hub's gpt2) say
    h.0... without the prefix.
    """
    if hf_name == "lm_head.weight":
        return None if tied else hf_name
    name = hf_name.removeprefix("transformer.")
    if name.endswith(MASK_BUFFERS):
        return None
    return "transformer." + name


# --- import ----------------------------------------------------------------------------------------


def load_gpt2(src: str) -> ImportedModel:
    """A Hugging Face GPT-2 (folder or hub id) as a minigpt model and tokenizer."""
    return read_folder(resolve_source(src), src)


def read_folder(folder: Path, src: str) -> ImportedModel:
    """The GPT-2 in a local folder (src: what the user named, a folder or a hub id)."""
    config = gpt_config_from_hf(read_hf_config(folder), f"{folder / 'config.json'}")
    tokenizer = gpt2_tokenizer_from_folder(folder)
    check_vocabulary(tokenizer, config.vocab_size, folder)
    model = empty_model(config)
    load_weights(model, folder, places(config), lambda n: minigpt_name(n, config.tie_weights),
                 NAME)
    model.eval()
    return ImportedModel(model, tokenizer, src, folder, NAME)


def import_gpt2(src: str, out: str | os.PathLike) -> tuple[Path, ImportedModel]:
    """Import a Hugging Face GPT-2 and save it as a minigpt checkpoint (no training state); a
    file already at `out` (a trained model, perhaps) is kept, and the import refused."""
    return save_import(src, out, load_gpt2)


# --- export ----------------------------------------------------------------------------------------


def export_problems(config: GPTConfig) -> list[str]:
    """Why a model cannot be written as a Hugging Face GPT-2 (a switch each, from the switches'
    table); empty when it can. An untied head is fine: GPT-2's config has tie_word_embeddings."""
    return unexportable(config, config.switches)


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
    }

