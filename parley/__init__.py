"""Parley: an open-source, self-hostable platform for real-time voice AI agents."""

__version__ = "0.1.0"
