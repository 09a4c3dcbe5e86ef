"""Alembic migrations, one history per service.

Each service owns its tables and keeps its own migration history (its own version
table), so services can be migrated and deployed independently. A service's
`migrations/env.py` is one call to `run_env`; `python -m common.migrations auth_svc`
upgrades that service to head (what `make run` and the tests do).
"""

from __future__ import annotations

import argparse
import asyncio

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, make_url

from common.db import create_engine
from common.settings import REPO_ROOT, Settings, get_settings

SERVICES = ("auth_svc", "inference", "signal_svc", "position_svc", "notifier")


def alembic_config(service: str, url: str) -> Config:
    """A programmatic Alembic config for `service` against `url`."""
    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / service / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["version_table"] = f"alembic_version_{service.removesuffix('_svc')}"
    return config


def upgrade(service: str, settings: Settings, url: str | None = None) -> None:
    """Bring `service`'s tables to the newest revision."""
    command.upgrade(alembic_config(service, url or settings.database_url), "head")


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's `migrations/env.py`: run the migrations online over the
    async engine (asyncpg or aiosqlite), as the services themselves connect."""
    config = context.config
    version_table = config.attributes.get("version_table", "alembic_version")
    url = config.get_main_option("sqlalchemy.url")

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_engine(get_settings(), url, serving=False)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description="Upgrade services' tables to head.")
    parser.add_argument("services", nargs="*", help=f"default: all of {', '.join(SERVICES)}")
    services = parser.parse_args().services or list(SERVICES)
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown service(s): {', '.join(unknown)}")
    settings = get_settings()
    for service in services:
        upgrade(service, settings)
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        print(f"{service}: migrated to head on {where}")


if __name__ == "__main__":
    main()
