"""Traces reach an OTLP/HTTP collector (a job span with its Gmail request spans as children) when an
endpoint is configured; logs come out as one JSON object per line with --log-format json."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from service_support import CLIENT_ID, CLIENT_SECRET, EMAIL, Cli, Emulator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailtide.config import load_settings
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account
from mailtide.sync.backfill import start_backfill


class OtlpCollector:
    """Receives OTLP/HTTP protobuf trace exports on loopback and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._sock = sock
        app = Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[sock])), daemon=True)

    async def _traces(self, request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            for scope_spans in resource_spans.scope_spans:
                self.spans += [(service, span) for span in scope_spans.spans]
        return Response(b"", media_type="application/x-protobuf")

    def __enter__(self) -> OtlpCollector:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()


async def test_jobs_and_gmail_requests_are_traced_over_otlp(emulator: Emulator, tmp_path: Path) -> None:
    with OtlpCollector() as collector:
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path / 'mirror.db'}", data_dir=tmp_path / "data",
            gmail_api_url=emulator.server.url, token_url=emulator.server.token_url,
            otlp_endpoint=collector.url, otel_service_name="mailtide-test", poll_seconds=0.05,
        )
        refresh_token = emulator.state.credentials(EMAIL).refresh_token
        async with Runtime.open(settings) as rt:
            assert rt.telemetry.tracing_enabled
            account_id = await create_account(rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                              refresh_token=refresh_token)
            await start_backfill(rt.services, account_id, recovery=False, reason="test")
            await rt.worker().run_until_idle(60)
        # Leaving the runtime flushed the exporter.
        spans = [span for service, span in collector.spans if service == "mailtide-test"]
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [backfill] = by_name["job backfill.gmail"]
    [listing] = by_name["gmail messages.list"]
    assert listing.parent_span_id == backfill.span_id and listing.trace_id == backfill.trace_id
    attributes = {a.key: a.value for a in backfill.attributes}
    assert attributes["mailtide.account_id"].int_value == account_id
    assert attributes["mailtide.job.outcome"].string_value == "completed"
    assert "job ingest.gmail" in by_name and "job history.sync.gmail" in by_name
    ingest_ids = {s.span_id for s in by_name["job ingest.gmail"]}
    gets = [s for name, group in by_name.items() if name in ("gmail batch", "gmail messages.get") for s in group]
    assert gets and all(s.parent_span_id in ingest_ids for s in gets)


def test_json_logs(tmp_path: Path) -> None:
    cli = Cli.for_gmail(tmp_path, "http://127.0.0.1:9")
    result = cli.run("--log-format", "json", "-v", "migrate")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    started = next(r for r in records if r["event"] == "db.migrate_started")
    assert started["level"] == "info" and started["logger"] == "mailtide.db.migrate"
    assert started["time"].endswith("+00:00") and started["message"].startswith("db.migrate_started ")
