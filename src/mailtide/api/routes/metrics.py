"""GET /metrics: Prometheus text, from this process's instruments plus a snapshot taken at scrape time."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mailtide.api.context import Ctx
from mailtide.observability.scrape import render_metrics
from mailtide.overview import collect_overview

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(ctx: Ctx) -> Response:
    rt = ctx.runtime
    overview = await collect_overview(rt.engine, ctx.settings)
    body = render_metrics(rt.telemetry.metrics, overview, rt.services.gmail.built())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
