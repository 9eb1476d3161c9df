"""Background work that must survive a restart: the outbound call queue (``jobs.outbound``, with what a
queued call must be, its calling hours, its idempotency and its public view beside it) and the outbox
workers' loop (``jobs.outbox``)."""
