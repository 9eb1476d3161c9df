"""Where Parley's structured logs go: stderr, one line per event, so stdout stays the commands' output.

structlog's unconfigured default prints to stdout; the CLI and the server call ``configure_logging`` once
at start. ``PARLEY_LOG_LEVEL`` (debug, info, warning, error) sets how much is said.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str | None = None) -> None:
    name = (level or os.environ.get("PARLEY_LOG_LEVEL") or "info").lower()
    threshold = _LEVELS.get(name, logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            # Plain tracebacks: rich's would print every frame's local variables, secrets included.
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
