"""Structured logs: rich console lines for people, one JSON object per line for machines.

mailtide's log messages start with an event name ("queue.job_failed job_id=3 ..."); the JSON
format puts it in `event`, adds `extra=` fields and the current trace id, and keeps the rendered
message. A filter masks anything that looks like an OAuth token or an encrypted secret, as a
second line of defence: no code path is meant to log one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace
from rich.console import Console
from rich.logging import RichHandler

LogFormat = Literal["console", "json"]

_TOKEN_PATTERNS = re.compile(
    r"(ya29\.[\w\-.~+/]+|1//[\w\-.~+/]{8,}|fernet:v1:[\w\-=]+|(?i:bearer)\s+[\w\-.~+/=]{8,})"
)
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName", "color_message"}  # uvicorn's ANSI-coloured copy of the message
)


def mask_tokens(text: str) -> str:
    return _TOKEN_PATTERNS.sub("[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rendered = record.getMessage()
        masked = mask_tokens(rendered)
        if masked != rendered:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": message.split(" ", 1)[0] if message else "",
            "message": message,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            entry["exception"] = mask_tokens(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: int, log_format: LogFormat = "console", *, console: Console | None = None) -> None:
    """Configure the root logger for this process (replacing earlier handlers)."""
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(
            console=console or Console(stderr=True), show_path=False, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Libraries that log request details (tokens included, at debug level) stay at warning or above.
    for noisy in ("httpx", "httpcore", "uvicorn.access", "requests_oauthlib", "oauthlib", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
