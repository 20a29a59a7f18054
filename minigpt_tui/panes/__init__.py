"""The app's tabs, a pane each: Train, Chat, Ablate, Inspect."""
