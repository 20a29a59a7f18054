"""How minigpt.infer.sampling turns the model's scores into tokens: the strategies and their
settings. The defaults here are the command line's and the Chat pane's. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from minigpt.errors import SamplingError
from minigpt.rules import Real, Whole

STRATEGIES = ("greedy", "temperature", "top-k", "top-p", "min-p")

# Each number of SamplingConfig: the name the options give it, and its rule (the Chat pane's
# inputs check what is typed with the same rules)
SAMPLING_RULES = {
    "temperature": ("temperature", Real(0)),
    "top_k": ("top-k", Whole(1)),
    "top_p": ("top-p", Real(0, 1, low_open=True)),
    "min_p": ("min-p", Real(0, 1)),
    "repetition_penalty": ("repetition penalty", Real(0, low_open=True)),
    "max_new_tokens": ("max new tokens", Whole(0)),
    "seed": ("seed", Whole(0)),
}


@dataclass(frozen=True)
class SamplingConfig:
    strategy: str = "top-k"
    temperature: float = 0.8  # all strategies but greedy divide the logits by it
    top_k: int = 50  # top-k: keep the k most likely tokens
    top_p: float = 0.9  # top-p: keep the fewest tokens whose probabilities add up to p
    min_p: float = 0.05  # min-p: keep tokens at least min_p times as likely as the best one
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the context less likely
    max_new_tokens: int = 200
    stop: tuple[str, ...] = ()  # generation ends before the first of these strings
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SamplingError(
                f"unknown strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}"
            )
        for field, (name, rule) in SAMPLING_RULES.items():
            value = getattr(self, field)
            if value is not None or field != "seed":  # no seed: a fresh draw each time
                rule.check(name, value, SamplingError)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise SamplingError("stop strings must not be empty")

    @property
    def is_greedy(self) -> bool:
        return self.strategy == "greedy" or self.temperature == 0
