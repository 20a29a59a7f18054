"""`python -m minigpt ...` (and `torchrun -m minigpt ...`) is the same as the `minigpt` command."""

import sys


def main() -> None:
    """The `minigpt` command. A Ctrl-C before a command has set up its own handling (while Python
    imports torch, say) ends it with one line and the shell's status for an interrupt, 130."""
    try:
        from minigpt.runs.control import watch_terminal

        watch_terminal()  # a closed terminal is a hangup, not an error (see TerminalStream)
        from minigpt.cli.app import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        print("minigpt: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
