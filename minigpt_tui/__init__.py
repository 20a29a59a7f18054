"""minigpt's terminal UI (Textual): Train, Chat, Ablate and Inspect panes in tabs.

    app.py        the app: tabs, keys, the quit question
    panes/        one module a tab
    screens/      the modal screens: the run picker, the forms, the quit question
    widgets/      the widgets the panes are built from
    runs.py       runs as child processes; follower.py follows their events
    text.py       text from models, files and users, never parsed as markup
"""
