"""The modal screens: questions and forms over the panes, each dismissed with its answer."""
