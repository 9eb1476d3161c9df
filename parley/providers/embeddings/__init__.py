"""Sentence embeddings: how close in meaning a caller's words are to what an agent knows."""
