"""Use-cases over the store: agents and their versions, the call lifecycle, usage, costs and invoices,
recordings, and recovery after a crash. ``Platform`` (in ``runtime``) wires them for a process."""
