"""Liveness and readiness."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from mailtide.api.context import Ctx
from mailtide.api.models import Health, Readiness
from mailtide.db.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 5.0


@router.get("/healthz", response_model=Health, summary="The process is alive (no authentication)")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Database reachable, migrations current, worker running",
    responses={503: {"model": Readiness, "description": "Not ready; `checks` says why"}},
)
async def readyz(ctx: Ctx) -> JSONResponse:
    checks: dict[str, str] = {}
    engine = ctx.runtime.engine
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
        at, head = await current_revision(engine), head_revision()
        checks["migrations"] = "ok" if at == head else f"database at revision {at}, this version needs {head}"
    except Exception as exc:  # any failure to reach the database means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}: {exc}"[:300]
        checks["migrations"] = "unknown"
    if ctx.worker_running is None:
        checks["worker"] = "none in this process"
    else:
        checks["worker"] = "ok" if ctx.worker_running() else "not running"
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
