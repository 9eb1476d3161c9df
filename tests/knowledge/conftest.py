"""The API tests' platform and client (a fresh database of each dialect)."""

from __future__ import annotations

from tests.api.conftest import client, platform  # noqa: F401  (fixtures)
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects)
