"""Jobs: list with filters and pagination, inspect, retry, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from mailtide.api.context import MAX_INT32, MAX_INT64, Ctx
from mailtide.api.errors import ERROR_RESPONSES, ApiError, not_found
from mailtide.api.models import JobDetail, JobOut, JobPage, JobStepOut
from mailtide.db.schema import CANCELED, COMPLETED, FAILED

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=ERROR_RESPONSES)
JobId = Annotated[int, Path(ge=1, le=MAX_INT64, description="The job's id")]
JobState = Literal["queued", "running", "completed", "failed", "canceled"]
_CONFLICT = {409: ERROR_RESPONSES[404] | {"description": "The job is not in a state that allows this"}}


@router.get("", response_model=JobPage, summary="Jobs, newest first, filtered and paginated")
async def list_jobs(
    ctx: Ctx,
    state: Annotated[JobState | None, Query()] = None,
    type: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:\-]{1,64}$", description="e.g. backfill.gmail")] = None,
    account_id: Annotated[int | None, Query(ge=1, le=MAX_INT32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_INT64, description="next_cursor of the previous page")] = None,
) -> JobPage:
    found = await ctx.runtime.queue.list_jobs(state, type, account_id, limit=limit + 1, before_id=cursor)
    page = found[:limit]
    next_cursor = str(page[-1].id) if len(found) > limit else None
    return JobPage(jobs=[JobOut.of(j) for j in page], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobDetail, summary="One job with its recorded steps")
async def job(ctx: Ctx, job_id: JobId) -> JobDetail:
    found = await ctx.runtime.queue.get(job_id)
    if found is None:
        raise not_found(f"no job with id {job_id}")
    steps = await ctx.runtime.queue.steps(job_id)
    return JobDetail(**JobOut.of(found).model_dump(), steps=[JobStepOut.of(s) for s in steps])


@router.post("/{job_id}/retry", response_model=JobOut, responses=_CONFLICT,
             summary="Put a failed or canceled job back in the queue (returns the active job)")
async def retry(ctx: Ctx, job_id: JobId) -> JobOut:
    found = await ctx.runtime.queue.get(job_id)
    if found is None:
        raise not_found(f"no job with id {job_id}")
    if found.state not in (FAILED, CANCELED):
        raise ApiError(409, "not_retryable", f"job {job_id} is {found.state}; only failed or canceled jobs retry")
    retried = await ctx.runtime.queue.retry(job_id)
    if retried is None:
        raise ApiError(409, "not_retryable", f"job {job_id} changed state meanwhile; look again")
    return JobOut.of(retried)


@router.post("/{job_id}/cancel", response_model=JobOut, responses=_CONFLICT,
             summary="Cancel a queued job, or ask a running one to stop")
async def cancel(ctx: Ctx, job_id: JobId) -> JobOut:
    found = await ctx.runtime.queue.get(job_id)
    if found is None:
        raise not_found(f"no job with id {job_id}")
    if found.state in (COMPLETED, FAILED, CANCELED):
        raise ApiError(409, "already_finished", f"job {job_id} is already {found.state}")
    canceled = await ctx.runtime.queue.cancel(job_id)
    assert canceled is not None  # jobs are never deleted while active
    return JobOut.of(canceled)
