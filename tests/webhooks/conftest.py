from tests.api.conftest import client  # noqa: F401  (a fixture: the API on the module's ``platform``)
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects)
