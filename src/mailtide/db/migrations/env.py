"""Alembic environment for mailtide.

At runtime `mailtide.db.migrate` hands over an open connection in
``config.attributes["connection"]`` (inside its own locked transaction). Developers running the
alembic command line (``alembic -x url=sqlite:///dev.db revision --autogenerate -m ...``, with
``script_location`` pointing here) get an engine built from the ``url`` argument instead.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from mailtide.db.engine import create_engine, to_async_url
from mailtide.db.schema import metadata

config = context.config
target_metadata = metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run_with_connection(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _command_line_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("pass the database with: alembic -x url=sqlite:///path.db ...")
    return url


async def _run_online_from_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_with_connection)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=to_async_url(_command_line_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with_connection(connection)
    else:
        asyncio.run(_run_online_from_url(_command_line_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
