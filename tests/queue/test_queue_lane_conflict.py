"""Which IntegrityError a claim treats as a running-lane race (and retries) instead of raising it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import jobs
from mailtide.queue import JobQueue, JobSpec
from mailtide.queue.job_queue import _is_claim_race, _is_running_lane_conflict

# An idempotency key that quotes the lane index and column: it appears in PostgreSQL's DETAIL
# of a key violation, so matching words of the message would take it for a lane conflict.
MISLEADING_KEY = "uq_jobs_running_lane jobs.lane"


async def test_only_a_second_running_job_in_a_lane_is_a_lane_conflict(queue: JobQueue, engine: AsyncEngine) -> None:
    await queue.enqueue_many([JobSpec("t", lane="sync:1"), JobSpec("t", lane="sync:1")])
    await queue.claim("w", limit=2)
    [waiting] = await queue.list_jobs(state="queued")
    with pytest.raises(IntegrityError) as lane_violation:
        async with engine.begin() as conn:
            await conn.execute(sa.update(jobs).where(jobs.c.id == waiting.id).values(state="running"))
    assert _is_running_lane_conflict(lane_violation.value)

    await queue.enqueue(JobSpec("t", idempotency_key=MISLEADING_KEY))
    with pytest.raises(IntegrityError) as key_violation:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(jobs).values(
                type="t", payload={}, not_before=0.0, created_at=0.0, idempotency_key=MISLEADING_KEY
            ))
    assert not _is_running_lane_conflict(key_violation.value)


@pytest.mark.parametrize(("sqlstate", "is_race"), [("40P01", True), ("22012", False)])
async def test_a_deadlock_between_claimers_is_a_race_other_errors_are_not(
    engine: AsyncEngine, backend: str, sqlstate: str, is_race: bool
) -> None:
    """Regression (CI): two claimers starting jobs of the same lanes can each wait for the other's
    running-lane index entry; PostgreSQL then cancels one with 'deadlock detected', which failed
    the claim instead of claiming again."""
    if backend != "postgresql":
        pytest.skip("deadlock detection is PostgreSQL's")
    with pytest.raises(DBAPIError) as raised:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{sqlstate}'; END $$"))
    assert _is_claim_race(raised.value) is is_race
