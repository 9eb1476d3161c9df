"""The conversation runtime: sessions, turn-taking, barge-in, context, tools and streaming orchestration.

The engine knows nothing of HTTP, Twilio or SQL: it talks to the outside through an audio output,
methods a transport calls, and a timeline sink that receives every event.
"""
