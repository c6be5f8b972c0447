"""`mailtide config show`: the effective configuration (file + MAILTIDE_* + options), secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr

from mailtide.commands import settings_from_context
from mailtide.config import Settings
from mailtide.secrets import REDACTED

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


def redacted_settings(settings: Settings) -> dict[str, Any]:
    """Every setting with its effective value; secrets (and database passwords) replaced."""
    shown: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = REDACTED
        elif name == "database_url":
            from sqlalchemy.engine import make_url

            url = make_url(value)
            value = url.render_as_string(hide_password=True) if url.password else value
        elif isinstance(value, Path):
            value = str(value)
        shown[name] = value
    return shown


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
    return json.dumps(text).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    """`value` as TOML that reads back to the same setting (settings hold no inf or nan)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: quota_costs = { "threads.get" = 10 }
        entries = ", ".join(f"{_toml_string(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + entries + " }" if entries else "{}"
    return _toml_string(str(value))


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the effective configuration as TOML (unset optional keys and secrets as comments)."""
    for name, value in redacted_settings(settings_from_context(ctx)).items():
        if value is None:
            typer.echo(f"# {name} = (not set)")
        elif value == REDACTED:
            # Commented out: read back, the placeholder would become the secret.
            typer.echo(f"# {name} = (set; redacted)")
        else:
            typer.echo(f"{name} = {_toml_value(value)}")
