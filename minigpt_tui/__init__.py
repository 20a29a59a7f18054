"""minigpt's terminal UI (Textual): Train, Chat, Ablate and Inspect panes in tabs.

    app.py        the app: tabs, keys, and the router of the panes' messages
    messages.py   what the panes tell the app (and the app the panes)
    panes/        one module a tab; following.py, what the panes that follow a run share
    screens/      the modal screens: the run picker, the forms, the quit question
    widgets/      the widgets the panes are built from
    runs.py       runs as child processes; follower.py follows their events
    text.py       text from models, files and users, never parsed as markup
"""
