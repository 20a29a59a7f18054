"""The errors a user can cause. The command line prints their message as one line and exits non-zero."""


class MinigptError(Exception):
    """Something the user can fix: a bad path, a bad checkpoint, a bad option."""


class ConfigError(MinigptError, ValueError):
    """An invalid setting."""


class DataError(MinigptError):
    """A corpus that cannot be read or is unusable."""


class TokenizerError(MinigptError):
    """Text the tokenizer cannot encode, or a tokenizer that cannot be rebuilt."""


class CheckpointError(MinigptError):
    """A checkpoint that is missing, truncated, corrupt, or unsafe to load."""


class SamplingError(MinigptError, ValueError):
    """Invalid sampling settings."""


class ConversionError(MinigptError):
    """A model that cannot be imported from, or exported to, Hugging Face's GPT-2 layout."""


class RunDirectoryError(MinigptError):
    """A run directory that cannot be used: another run writes to it, or it cannot be written."""


class TrainingDiverged(MinigptError):
    """The loss or the gradients became NaN or infinite: training stops, nothing bad is saved."""
