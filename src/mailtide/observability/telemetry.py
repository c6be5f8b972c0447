"""What a process uses to observe itself: a tracer (no-op unless OTLP is configured) and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from mailtide.config import Settings
from mailtide.observability.gmail_requests import InstrumentedTransport
from mailtide.observability.jobs import instrument_handlers
from mailtide.observability.metrics import ServiceMetrics
from mailtide.observability.tracing import build_tracer_provider, tracer_from
from mailtide.queue.jobs import Handler


@dataclass
class Telemetry:
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    provider: TracerProvider | None = None
    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry:
        provider = build_tracer_provider(settings)
        return cls(ServiceMetrics(), provider, tracer_from(provider))

    @property
    def tracing_enabled(self) -> bool:
        return self.provider is not None

    def wrap_transport(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return InstrumentedTransport(inner, self.metrics, self.tracer)

    def instrument(self, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
        return instrument_handlers(handlers, self.metrics, self.tracer)

    def shutdown(self) -> None:
        """Flush and stop the span exporter (bounded by its own timeouts)."""
        if self.provider is not None:
            self.provider.shutdown()
