"""Suite-wide rules.

With ``PARLEY_STRICT_SKIPS=1`` (set by ``make test``, so in CI) a skipped test fails instead: every
engine, server and browser test is meant to run on a machine set up by ``scripts/setup.sh``, and a
silent skip would hide a broken install.

The suite runs on two workers (pytest-xdist), which inherit ``COLUMNS=80`` from it. Rich fixes a
console's width from ``COLUMNS`` when the console is made, and the CLI's consoles are made when it is
imported, so the variable is dropped here, before any test module imports the CLI: a CLI test sets the
width it means for each invocation.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

os.environ.pop("COLUMNS", None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("PARLEY_STRICT_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under PARLEY_STRICT_SKIPS=1 (the full setup must run it): {reason}"
