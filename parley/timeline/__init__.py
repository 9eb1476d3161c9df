"""The event timeline between the engine and its consumers: in-process or Redis Streams.

Sessions emit engine ``Event``s into a bus; the bus numbers them per session and delivers them at least
once to consumer groups (the persister) and to live followers (the SSE feed).
"""
