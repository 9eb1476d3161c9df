"""Webhooks both ways: tools that call a tenant's HTTP service during a call, and the platform's events
(``call.started`` … ``call.analyzed``) delivered to a tenant's endpoints from a durable outbox.

Both sign what they send the same way (``signing.py``) and reach tenant-given URLs only through the
SSRF guard (``guard.py``).
"""
