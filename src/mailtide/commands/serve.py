"""`mailtide serve`: migrations, the worker, the scheduler and Pub/Sub listeners, and the HTTP API."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer
from rich.console import Console

from mailtide.commands import err_console, settings_from_context
from mailtide.commands.logsetup import configure_logging
from mailtide.config import ConfigError, Settings

console = Console(stderr=True)
logger = logging.getLogger("mailtide.serve")


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address of the HTTP API (api_host).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port of the HTTP API (api_port).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=256, help="Jobs run at once.")] = None,
) -> None:
    """Run mailtide as a service until SIGTERM/SIGINT (a second signal stops at once)."""
    settings = settings_from_context(ctx, api_host=host, api_port=port, worker_concurrency=concurrency)
    configure_logging(ctx, settings, default_level=logging.INFO)
    from mailtide.service import ServiceFailed  # the web stack loads only for this command

    try:
        asyncio.run(run_service(settings))
    except ConfigError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    except ServiceFailed as exc:
        err_console.print(f"[red]error:[/] {exc} (see the log above)")
        raise typer.Exit(1) from exc


async def run_service(settings: Settings) -> None:
    from mailtide.runtime import Runtime
    from mailtide.secrets import SecretUnreadable
    from mailtide.service import bind_socket, build_service
    from mailtide.store.accounts import encrypt_stored_credentials

    sock = bind_socket(settings.api_host, settings.api_port)  # a busy port fails before anything else
    try:
        async with Runtime.open(settings) as rt:  # applies migrations
            try:
                encrypted = await encrypt_stored_credentials(rt.engine, rt.secrets)  # type: ignore[arg-type]
            except SecretUnreadable as exc:
                raise ConfigError(f"secret_key / secret_key_file: {exc}") from exc
            if encrypted:
                logger.info("secrets.encrypted_plaintext_credentials count=%d", encrypted)
            service, api, _ = build_service(rt, settings, sock=sock)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, service.request_stop)
            auth = "API token required" if settings.api_token else "loopback only, no API token"
            console.print(f"mailtide serving {api.url} ({auth}), worker concurrency {settings.worker_concurrency}. "
                          "SIGTERM or Ctrl-C stops.", soft_wrap=True)
            await service.run()
    finally:
        sock.close()
