"""Logging for a command once its settings are known (level and format from options or settings)."""

from __future__ import annotations

import logging

import typer

from mailtide.config import Settings
from mailtide.observability.logs import setup_logging


def configure_logging(ctx: typer.Context, settings: Settings, *, default_level: int = logging.WARNING) -> None:
    """--log-format wins over log_format; -v or log_level over the command's default level."""
    opts = ctx.find_root().obj or {}
    if settings.log_level is not None:
        level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    elif opts.get("verbose"):
        level = min(default_level, logging.INFO)
    else:
        level = default_level
    setup_logging(level, opts.get("log_format") or settings.log_format)
