"""minigpt: GPT-2 built from its parts in PyTorch.

The engine: config (shapes, ablation switches, presets), model (GPT-2 with a KV cache), tokenizer,
data, train (a loop that yields events), sampling, checkpoint, ablation. It never imports the UI.
"""

__version__ = "0.1.0"
