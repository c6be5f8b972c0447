"""OpenTelemetry traces exported over OTLP/HTTP when an endpoint is configured; a no-op tracer otherwise."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from mailtide.config import Settings

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "mailtide"


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP convention: the base endpoint plus /v1/traces (a full .../v1/traces URL is kept)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def build_tracer_provider(settings: Settings) -> TracerProvider | None:
    """A provider batching spans to settings.otlp_endpoint, or None when no endpoint is configured."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    url = traces_url(settings.otlp_endpoint)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10)))
    logger.info("tracing.enabled endpoint=%s", url)
    return provider


def tracer_from(provider: TracerProvider | None) -> trace.Tracer:
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(INSTRUMENTATION_NAME)
