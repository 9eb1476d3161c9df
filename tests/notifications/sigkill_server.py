"""A real Parley server for the notification SIGKILL test: the full platform app (what ``parley serve``
runs, with the tests' tiny engines instead of the embedded models), on a SQLite file, emailing through
the SMTP server on ``SMTP_PORT`` (where nothing may listen yet). The test kills it with SIGKILL.

Usage: python -m tests.notifications.sigkill_server DATA_DIR DATABASE_URL SMTP_PORT
Announces its port (``announce_port``) once it serves.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from parley.bench.server_process import announce_port
from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.server.app import create_platform_app
from parley.server.lifecycle import DrainingServer, listen_socket, make_server
from parley.server.stacks import AgentCatalog
from tests.engine.harness import agent, stack

API_KEY = "pk_bootstrap-key-for-the-notification-sigkill-test"


def settings(data_dir: Path, database_url: str, smtp_port: int) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "api_key": API_KEY,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_starttls": False,
        "smtp_timeout_s": 5.0,
        "notification_poll_s": 0.1,
        "notification_retry_backoff_s": 0.2,
        "notification_retry_max_backoff_s": 0.5,
        "notification_max_attempts": 50,
        "notification_lease_s": 2.0,
        "shutdown_grace_s": 0.3,
    }
    return Settings(_env_file=None, **values)


def main(data_dir: Path, database_url: str, smtp_port: int) -> None:
    listener = listen_socket("127.0.0.1", 0)
    port = int(listener.getsockname()[1])
    config = settings(data_dir, database_url, smtp_port)
    engines = stack([], [])

    async def factory(_: AgentConfig) -> EngineStack:
        return engines

    app = create_platform_app(config, catalog=AgentCatalog([agent(name="quiet")]), stack_factory=factory)

    async def ready(_: DrainingServer) -> None:
        await app.state.runtime.engines.ready.wait()
        announce_port(port)

    with listener:
        make_server(app, config, host="127.0.0.1", log_level="warning", on_started=ready).run(
            sockets=[listener]
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
