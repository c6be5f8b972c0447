"""`mailtide` subcommands, one module per topic, registered in cli.py.

`settings_from_context` is the modules' way to the settings the top-level options (--config, --db)
ask for, without importing cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mailtide.config import ConfigError, Settings, load_settings

err_console = Console(stderr=True)


def database_url_option(db: str | None) -> str | None:
    """`--db` takes a URL or a plain path to a SQLite file."""
    if db is None or "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def settings_from_context(ctx: typer.Context, **overrides: Any) -> Settings:
    opts = ctx.find_root().obj or {}
    try:
        return load_settings(opts.get("config"), database_url=database_url_option(opts.get("db")), **overrides)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
