"""Small helpers for writing one statement that works on both SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def upsert_sql(
    table: sa.Table,
    columns: Sequence[str],
    *,
    update: Sequence[str] = (),
    where: str | None = None,
    returning: Sequence[str] = (),
    rows: int | None = None,
) -> sa.Executable:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE SET `update` (WHERE `where`), or DO NOTHING
    when `update` is empty, written as SQL that SQLite and PostgreSQL both accept.

    SQLAlchemy 2.0 gives its dialect INSERTs (the only ones with on_conflict_*) no statement-cache
    key, so every execution compiles them anew: for one message that cost more CPU than everything
    else stored with it. A text() statement with typed parameters compiles once per engine; build
    each one once (module level or functools.cache).

    Without `rows` the parameters are the column names (execute with one dict, or a list of dicts
    for executemany); with `rows`=n the VALUES list has n rows whose parameters are numbered (see
    numbered_rows), for one statement whose RETURNING covers every row."""
    key = ", ".join(c.name for c in table.primary_key.columns)
    if rows is None:
        names = list(columns)
        values = "(" + ", ".join(f":{n}" for n in names) + ")"
    else:
        names = [f"{c}_{i}" for i in range(rows) for c in columns]
        values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in columns) + ")" for i in range(rows))
    if update:
        action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in update)
        if where:
            action += f" WHERE {where}"
    else:
        action = "DO NOTHING"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {values} ON CONFLICT ({key}) {action}"
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    types = {name: table.c[column].type for name, column in zip(names, list(columns) * (rows or 1), strict=True)}
    stmt = sa.text(sql).bindparams(*(sa.bindparam(name, type_=type_) for name, type_ in types.items()))
    if returning:
        return stmt.columns(*(table.c[c] for c in returning))
    return stmt


def numbered_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of an upsert_sql(rows=len(rows)) statement."""
    return {f"{name}_{i}": value for i, row in enumerate(rows) for name, value in row.items()}


def now() -> float:
    return time.time()


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
