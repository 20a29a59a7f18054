"""`python -m minigpt ...` (and `torchrun -m minigpt ...`) is the same as the `minigpt` command."""

from minigpt.cli import main

main()
