"""Token ids as training reads them: split into training and validation, and drawn in batches of
random windows. The ids are a torch tensor (text tokenized in memory) or a numpy memory map
(prepared data, see prepare.py): a batch reads only its windows from either, so memory does not
grow with the corpus."""

from __future__ import annotations

from dataclasses import dataclass

from minigpt.errors import DataError


@dataclass
class TokenData:
    """A corpus as token ids, split into the first (1 - val_fraction) for training, the rest to
    validate. The ids are a torch tensor (text tokenized in memory) or a numpy memory map (prepared
    data, see prepare.py): batches read only the windows they need from either."""

    train: torch.Tensor | np.ndarray  # noqa: F821  (torch and numpy are imported lazily)
    val: torch.Tensor | np.ndarray  # noqa: F821

    @classmethod
    def from_ids(cls, ids: list[int], val_fraction: float, block_size: int) -> TokenData:
        import torch

        return cls.split(torch.tensor(ids, dtype=torch.long), val_fraction, block_size)

    @classmethod
    def split(cls, data, val_fraction: float, block_size: int) -> TokenData:
        """The split rule, for any 1-D sequence of ids: the last val_fraction of them validate."""
        n_val = int(len(data) * val_fraction)
        train, val = data[: len(data) - n_val], data[len(data) - n_val:]
        for name, part in (("training", train), ("validation", val)):
            if len(part) <= block_size:
                raise DataError(
                    f"the text is too short: its {name} part has {len(part)} tokens, but one context "
                    f"window needs {block_size + 1}; use more text or a smaller --block-size"
                )
        return cls(train, val)


def get_batch(data, batch_size: int, block_size: int, generator, device):
    """batch_size random windows of block_size tokens (x) and the same shifted by one (y).

    data is a tensor or a numpy array (a memory map: only the chosen windows are read); the same
    generator state gives the same windows from either."""
    import numpy as np
    import torch

    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    if isinstance(data, torch.Tensor):
        chunk = data[starts[:, None] + torch.arange(block_size + 1)]
    else:
        index = starts.numpy()[:, None] + np.arange(block_size + 1)
        chunk = torch.from_numpy(data[index].astype(np.int64))
    x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()
    if device.type == "cuda":
        return (x.pin_memory().to(device, non_blocking=True),
                y.pin_memory().to(device, non_blocking=True))
    return x.to(device), y.to(device)


class Batches:
    """A run's batches of a token stream. Training draws from its own generator (seeded by the
    run's seed and the process's rank), so that evaluation and sampling, which use others, never
    change which batches training sees, and a checkpoint can carry its state. An evaluation reads
    the same batches every time (a fresh generator from seed + 1)."""

    def __init__(self, tokens: TokenData, batch_size: int, block_size: int, seed: int,
                 device, rank: int = 0):
        import torch

        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.seed, self.device = seed, device
        self.generator = torch.Generator().manual_seed(seed + rank)

    def train(self):
        return get_batch(self.tokens.train, self.batch_size, self.block_size, self.generator,
                         self.device)

    def evaluation(self, split: str, count: int):
        """`count` batches of the "train" or "val" split, the same ones at every evaluation."""
        import torch

        generator = torch.Generator().manual_seed(self.seed + 1)
        data = self.tokens.train if split == "train" else self.tokens.val
        for _ in range(count):
            yield get_batch(data, self.batch_size, self.block_size, generator, self.device)


class ExampleBatches:
    """Batches of whole examples drawn from a list (instruction tuning's conversations, DPO's
    pairs), the targets -1 where nothing is learned: training draws from its own generator, an
    evaluation reads the same ones every time. A subclass lays a batch's examples out in rows
    (rows())."""

    def __init__(self, data, batch_size: int, block_size: int, seed: int, device, rank: int = 0):
        import torch

        self.data, self.batch_size, self.block_size = data, batch_size, block_size
        self.seed, self.device = seed, device
        self.generator = torch.Generator().manual_seed(seed + rank)

    def train(self):
        return self._drawn(self.data.train, self.generator)

    def evaluation(self, split: str, count: int):
        import torch

        generator = torch.Generator().manual_seed(self.seed + 1)
        examples = self.data.train if split == "train" else self.data.val
        for _ in range(count):
            yield self._drawn(examples, generator)

    def _drawn(self, examples, generator):
        import torch

        picks = torch.randint(len(examples), (self.batch_size,), generator=generator).tolist()
        x, y = self.rows([examples[i] for i in picks])
        return x.to(self.device), y.to(self.device)

    def rows(self, examples) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: F821
        raise NotImplementedError
