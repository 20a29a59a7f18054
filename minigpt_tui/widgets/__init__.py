"""Widgets shared by the panes, one per module."""
