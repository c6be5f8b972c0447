"""Job handlers wrapped with a trace span, a duration histogram and the account context."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from functools import wraps

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mailtide.observability.context import current_account_id
from mailtide.observability.metrics import ServiceMetrics
from mailtide.queue.jobs import Fatal, Handler, Job, JobContext, Retryable


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "completed"
    if isinstance(exc, Retryable):
        return "retry"
    if isinstance(exc, Fatal):
        return "failed"
    if isinstance(exc, asyncio.CancelledError):
        return "canceled"
    return "error"


def instrument_handler(handler: Handler, metrics: ServiceMetrics, tracer: trace.Tracer) -> Handler:
    @wraps(handler)
    async def instrumented(job: Job, ctx: JobContext) -> None:
        token = current_account_id.set(job.account_id)
        attributes = {"mailtide.job.id": job.id, "mailtide.job.type": job.type, "mailtide.job.attempt": job.attempts}
        if job.account_id is not None:
            attributes["mailtide.account_id"] = job.account_id
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            with tracer.start_as_current_span(
                f"job {job.type}", kind=SpanKind.CONSUMER, attributes=attributes, record_exception=False
            ) as span:
                try:
                    await handler(job, ctx)
                except BaseException as exc:
                    error = exc
                    span.set_attribute("mailtide.job.outcome", _outcome(exc))
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
                    raise
                span.set_attribute("mailtide.job.outcome", "completed")
        finally:
            metrics.job_duration.labels(job.type, _outcome(error)).observe(time.perf_counter() - started)
            current_account_id.reset(token)

    return instrumented


def instrument_handlers(handlers: Mapping[str, Handler], metrics: ServiceMetrics, tracer: trace.Tracer
                        ) -> dict[str, Handler]:
    return {job_type: instrument_handler(h, metrics, tracer) for job_type, h in handlers.items()}
