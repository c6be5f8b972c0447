"""Database access: engines, schema, migrations."""

from mailtide.db.engine import Database, create_engine, to_async_url
from mailtide.db.migrate import current_revision, head_revision, is_up_to_date, migrate, upgrade_database

__all__ = [
    "Database",
    "create_engine",
    "current_revision",
    "head_revision",
    "is_up_to_date",
    "migrate",
    "to_async_url",
    "upgrade_database",
]
