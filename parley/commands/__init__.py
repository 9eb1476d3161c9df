"""Typer command functions, registered by parley/cli.py."""
