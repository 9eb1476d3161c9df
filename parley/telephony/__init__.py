"""Twilio: the TwiML Parley answers with, webhook signatures, and the REST calls it makes.

This package speaks Twilio and nothing else: it knows no server, store or session. The webhooks that use
it are in ``parley/server/routes/twilio.py``; the media stream is ``parley/transports/twilio_media.py``.
"""
