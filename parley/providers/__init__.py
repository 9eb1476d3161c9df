"""Speech recognition, language model and speech synthesis behind small streaming Protocols.

Each kind has embedded local engines, remote adapters, and a tiny deterministic engine for fast tests.
Providers know nothing of sessions, HTTP or databases.
"""
