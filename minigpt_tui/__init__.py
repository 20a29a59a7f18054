"""minigpt's terminal UI (Textual): Train, Chat and Ablate panes. Built in the next issue."""
