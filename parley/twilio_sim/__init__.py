"""A local Twilio: what Parley's phone path is tested and benchmarked against, without a carrier.

``caller`` is the Media Streams side (Twilio dialing Parley's stream URL and playing out its audio),
``network`` the impairments between them. Nothing is imported here, so the CLI stays fast to start.
"""
