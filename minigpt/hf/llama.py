"""The bridge to Hugging Face's Llama: a model built with Llama's switches goes out as a
LlamaForCausalLM folder, and a Llama folder comes in as a minigpt model with those switches.

Llama is GPT-2 with switches turned: position="rope", norm="rmsnorm", activation="swiglu" (its
width any mlp_ratio), with or without biases, grouped-query attention (n_kv_head) and a tied head.
The weights differ from ours in their names only, and in that Llama keeps q, k and v (and the
MLP's gate and up projections) as matrices of their own where minigpt stacks their rows into one:

    model.embed_tokens                      transformer.wte
    model.layers.N.input_layernorm          transformer.h.N.ln_1 (RMSNorm: a weight only)
    self_attn.q_proj, k_proj, v_proj        attn.c_attn, rows [q; k; v]
    self_attn.o_proj                        attn.c_proj
    post_attention_layernorm                ln_2
    mlp.gate_proj, up_proj                  mlp.c_fc, rows [gate; up]
    mlp.down_proj                           mlp.c_proj
    model.norm                              transformer.ln_f
    lm_head                                 lm_head (not written when tied to wte)

Both sides are nn.Linear, (out, in): nothing is transposed. minigpt's RoPE is Llama's already
(rotate_half: channel i turns with channel i + head_dim / 2), and so is attention's scale,
1 / sqrt(head_dim). What minigpt does not compute (RoPE scaling, another activation, heads
narrower or wider than hidden_size / num_attention_heads, ...) is refused on import, naming why.
"""

from __future__ import annotations

import os
from pathlib import Path

from minigpt.data.tokenizer import BPETokenizer, Tokenizer
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
from minigpt.model.gpt import empty_model, mlp_width
from minigpt.model.switches import unexportable

NAME = "Llama"
LLAMA_SWITCHES = {"position": "rope", "norm": "rmsnorm", "activation": "swiglu"}
SILU = ("silu", "swish")  # one function, two names in transformers' table of activations
# buffers older transformers saved beside the weights: RoPE's frequencies, computed here anyway
ROPE_BUFFER = ".rotary_emb.inv_freq"


# --- the configuration and the weights' places ------------------------------------------------------


def gpt_config_from_llama(hf: dict, where: str = "config.json") -> GPTConfig:
    """minigpt's configuration for a Hugging Face Llama config, or a refusal that names why.
    The defaults of absent fields are LlamaConfig's."""
    model_type = hf.get("model_type")
    if model_type != "llama":
        raise ConversionError(f"{where}: model_type is {model_type!r}, not 'llama'")
    f = Fields(hf, where)
    activation = hf.get("hidden_act", "silu")
    if activation not in SILU:
        raise f.refuse(f"hidden_act is {activation!r}; minigpt's SwiGLU gates with SiLU ('silu') "
                       "only")
    n_embd, n_head = f.whole("hidden_size", 4096), f.whole("num_attention_heads", 32)
    n_kv_head = f.whole("num_key_value_heads", n_head)
    head_dim = f.whole("head_dim", None)
    if head_dim is not None and head_dim * n_head != n_embd:
        raise f.refuse(f"head_dim is {head_dim}, not hidden_size / num_attention_heads = "
                       f"{n_embd / n_head:g}; minigpt's heads split the hidden size between them")
    attention_bias, mlp_bias = f.flag("attention_bias", False), f.flag("mlp_bias", False)
    if attention_bias != mlp_bias:
        raise f.refuse(f"attention_bias is {str(attention_bias).lower()} and mlp_bias "
                       f"{str(mlp_bias).lower()}; minigpt's linear layers all have biases or none")
    try:
        return GPTConfig(
            vocab_size=f.whole("vocab_size", 32000),
            block_size=f.whole("max_position_embeddings", 2048),
            n_layer=f.whole("num_hidden_layers", 32), n_head=n_head, n_embd=n_embd,
            dropout=0.0, layer_norm_epsilon=f.real("rms_norm_eps", 1e-6),
            rope_theta=rope_theta(f), **LLAMA_SWITCHES,
            mlp_ratio=f.whole("intermediate_size", 11008) / n_embd,
            n_kv_head=None if n_kv_head == n_head else n_kv_head,  # one per query head: GPT-2's
            bias=attention_bias, tie_weights=f.flag("tie_word_embeddings", False))
    except ConfigError as e:  # the checks of GPTConfig's own rules
        raise f.refuse(str(e)) from None


def rope_theta(f: Fields) -> float:
    """RoPE's base, or a refusal for a scaled RoPE (linear, dynamic, yarn, llama3, ...): minigpt
    turns q and k by the plain angles only. transformers 5 writes rope_parameters (a rope_type
    and rope_theta); earlier versions wrote rope_theta and rope_scaling."""
    for key in ("rope_parameters", "rope_scaling"):
        rope = f.hf.get(key)
        if rope is None:
            continue
        if not isinstance(rope, dict):
            raise f.refuse(f"{key} must be a JSON object, got {rope!r}")
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind != "default":
            raise f.refuse(f"{key} asks for {kind!r} RoPE; minigpt computes RoPE unscaled only")
        if rope.get("partial_rotary_factor", 1.0) != 1.0:
            raise f.refuse(f"{key} turns part of each head (partial_rotary_factor "
                           f"{rope['partial_rotary_factor']!r}); minigpt's RoPE turns all of it")
    parameters = f.hf.get("rope_parameters")
    if parameters and "rope_theta" in parameters:
        return Fields(parameters, f"{f.where}: rope_parameters").real("rope_theta", 10000.0)
    return f.real("rope_theta", 10000.0)


def places(config: GPTConfig) -> dict[str, Place]:
    """Every tensor of a Llama folder, by its name there, and where it lives in minigpt's model."""
    C, hidden = config.n_embd, mlp_width(config)
    kv = (config.n_kv_head or config.n_head) * (C // config.n_head)
    q, k, v = slice(0, C), slice(C, C + kv), slice(C + kv, C + 2 * kv)
    gate, up = slice(0, hidden), slice(hidden, 2 * hidden)
    table = {"model.embed_tokens.weight": Place("transformer.wte.weight"),
             "model.norm.weight": Place("transformer.ln_f.weight")}
    if not config.tie_weights:
        table["lm_head.weight"] = Place("lm_head.weight")
    for i in range(config.n_layer):
        theirs, ours = f"model.layers.{i}.", f"transformer.h.{i}."
        table[theirs + "input_layernorm.weight"] = Place(ours + "ln_1.weight")
        table[theirs + "post_attention_layernorm.weight"] = Place(ours + "ln_2.weight")
        for p in ("weight", "bias") if config.bias else ("weight",):
            table[f"{theirs}self_attn.q_proj.{p}"] = Place(f"{ours}attn.c_attn.{p}", q)
            table[f"{theirs}self_attn.k_proj.{p}"] = Place(f"{ours}attn.c_attn.{p}", k)
            table[f"{theirs}self_attn.v_proj.{p}"] = Place(f"{ours}attn.c_attn.{p}", v)
            table[f"{theirs}self_attn.o_proj.{p}"] = Place(f"{ours}attn.c_proj.{p}")
            table[f"{theirs}mlp.gate_proj.{p}"] = Place(f"{ours}mlp.c_fc.{p}", gate)
            table[f"{theirs}mlp.up_proj.{p}"] = Place(f"{ours}mlp.c_fc.{p}", up)
            table[f"{theirs}mlp.down_proj.{p}"] = Place(f"{ours}mlp.c_proj.{p}")
    return table


def llama_name(hf_name: str, tied: bool) -> str | None:
    """The name the places give a tensor of a file: LlamaForCausalLM's names as they are, and
    LlamaModel's (layers.0..., without "model.") with the prefix; None for what is not a weight
    to read (RoPE's buffers, a tied head)."""
    if hf_name == "lm_head.weight":
        return None if tied else hf_name
    if hf_name.endswith(ROPE_BUFFER):
        return None
    return hf_name if hf_name.startswith("model.") else "model." + hf_name


# --- import ----------------------------------------------------------------------------------------


def load_llama(src: str) -> ImportedModel:
    """A Hugging Face Llama (folder or hub id) as a minigpt model and tokenizer."""
    return read_folder(resolve_source(src), src)


def read_folder(folder: Path, src: str) -> ImportedModel:
    """The Llama in a local folder (src: what the user named, a folder or a hub id)."""
    config = gpt_config_from_llama(read_hf_config(folder), f"{folder / 'config.json'}")
    tokenizer = read_tokenizer_json(folder)
    check_vocabulary(tokenizer, config.vocab_size, folder)
    model = empty_model(config)
    load_weights(model, folder, places(config), lambda n: llama_name(n, config.tie_weights), NAME)
    model.eval()
    return ImportedModel(model, tokenizer, src, folder, NAME)


def read_tokenizer_json(folder: Path) -> BPETokenizer:
    """The tokenizer a Llama folder's tokenizer.json describes, whatever its model (Llama 2's
    SentencePiece BPE, Llama 3's byte-level BPE): the `tokenizers` library runs it as it is."""
    from tokenizers import Tokenizer as HFTokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ConversionError(f"no tokenizer.json in {folder}: a Llama model's tokenizer is read "
                              "from it (SentencePiece's tokenizer.model alone is not read)")
    try:
        return BPETokenizer(HFTokenizer.from_file(str(path)))
    except Exception as e:  # the library raises its own Exception type
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConversionError(f"cannot read the tokenizer in {path}: {reason}") from None


def import_llama(src: str, out: str | os.PathLike) -> tuple[Path, ImportedModel]:
    """Import a Hugging Face Llama and save it as a minigpt checkpoint; `out` is never replaced."""
    return save_import(src, out, load_llama)


# --- export ----------------------------------------------------------------------------------------


def export_problems(config: GPTConfig) -> list[str]:
    """Why a model cannot be written as a Hugging Face Llama (a switch each, from the switches'
    table); empty when it can."""
    return unexportable(config, config.switches, "llama")


def hf_config(config: GPTConfig, tokenizer: Tokenizer) -> dict:
    eot = end_of_text_id(tokenizer)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": mlp_width(config),
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head or config.n_head,
        "head_dim": config.n_embd // config.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.layer_norm_epsilon,
        # transformers 5 reads rope_parameters; earlier versions rope_theta and rope_scaling
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": 0.0,  # Llama has no other dropout to carry minigpt's to
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "tie_word_embeddings": config.tie_weights,
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "torch_dtype": "float32",
    }

