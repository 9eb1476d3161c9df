"""Background work that must survive a restart: the outbound call queue (``jobs.outbound``)."""
