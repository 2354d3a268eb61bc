"""Rosterdrop: receive, validate and apply OneRoster roster drops."""

__version__ = "0.1.0"
