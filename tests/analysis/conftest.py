from tests.store.fixtures import *  # noqa: F403  (databases of both dialects)
