"""Names, priorities, lanes and idempotency keys of the sync jobs, and the functions that enqueue them.

Priorities put real-time work ahead of backfill: a history sync and the ingests it asks for
overtake the (possibly hours long) backfill of a large mailbox.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mailtide.db.schema import ACTIVE_STATES, jobs
from mailtide.queue.job_queue import JobQueue
from mailtide.queue.jobs import Job, JobSpec
from mailtide.store.sql import chunks

BACKFILL = "backfill.gmail"
INGEST = "ingest.gmail"
HISTORY_SYNC = "history.sync.gmail"
LABELS_SYNC = "labels.sync.gmail"
RECONCILE = "reconcile.gmail"
WATCH_RENEW = "watch.renew.gmail"  # payload {account_id}: renew one watch; {}: enqueue every due renewal

PRIORITY_HISTORY_SYNC = 10
PRIORITY_REALTIME_INGEST = 5
PRIORITY_LABELS_SYNC = 5
PRIORITY_BACKFILL_INGEST = 1
PRIORITY_BACKFILL_PAGE = -10
PRIORITY_REALTIME_UPKEEP = 8  # watch renewal: cheap, and it keeps real time real
# Real-time work (history sync, the ingests it asks for, watch renewal, labels sync) is at least
# this urgent: only such jobs may take the worker slots kept free (worker_reserved_slots).
REALTIME_MIN_PRIORITY = PRIORITY_REALTIME_INGEST


async def active_backfill_job_id(conn: AsyncConnection, account_id: int) -> int | None:
    """The account's queued or running backfill page or reconcile job, if any."""
    return (
        await conn.execute(
            sa.select(jobs.c.id)
            .where(jobs.c.account_id == account_id)
            .where(jobs.c.type.in_([BACKFILL, RECONCILE]))
            .where(jobs.c.state.in_(ACTIVE_STATES))
            .limit(1)
        )
    ).scalar()


def sync_lane(account_id: int) -> str:
    """Backfill pages, reconcile and history sync of one account never run at the same time."""
    return f"sync:{account_id}"


def bulk_ingest_lane(account_id: int) -> str:
    """Backfill and reconcile ingests of one account run one at a time: they all draw on the same
    per-user Gmail quota, so running more in parallel only parks more worker slots waiting for it,
    slots that real-time work (history syncs and the ingests they ask for) needs at once."""
    return f"bulk-ingest:{account_id}"


def backfill_page_spec(account_id: int, payload: dict[str, Any], *, key: str) -> JobSpec:
    return JobSpec(
        type=BACKFILL,
        payload={"account_id": account_id, **payload},
        priority=PRIORITY_BACKFILL_PAGE,
        idempotency_key=key,
        lane=sync_lane(account_id),
        account_id=account_id,
    )


def reconcile_spec(account_id: int, anchor: int, run: int | None) -> JobSpec:
    """The reconcile ending the backfill `run` (its page-1 job id) from `anchor`."""
    return JobSpec(
        type=RECONCILE,
        payload={"account_id": account_id, "anchor": anchor},
        priority=PRIORITY_BACKFILL_PAGE,
        idempotency_key=f"reconcile:{account_id}:{anchor}:{run}",
        lane=sync_lane(account_id),
        account_id=account_id,
    )


async def request_history_sync(queue: JobQueue, account_id: int) -> Job:
    """Coalesced: at most one queued history sync per account (plus one behind a running one)."""
    return await queue.enqueue_coalesced(
        JobSpec(
            type=HISTORY_SYNC,
            payload={"account_id": account_id},
            priority=PRIORITY_HISTORY_SYNC,
            idempotency_key=f"history:{account_id}",
            lane=sync_lane(account_id),
            account_id=account_id,
        )
    )


async def request_labels_sync(queue: JobQueue, account_id: int) -> Job:
    job, _ = await queue.enqueue(
        JobSpec(
            type=LABELS_SYNC,
            payload={"account_id": account_id},
            priority=PRIORITY_LABELS_SYNC,
            idempotency_key=f"labels:{account_id}",
            account_id=account_id,
        )
    )
    return job


async def request_ingest(
    queue: JobQueue, account_id: int, message_ids: list[str], *, batch_size: int, priority: int
) -> list[Job]:
    """Enqueue ingest jobs for `message_ids`, `batch_size` ids per job, in one round trip per batch."""
    specs = []
    for batch in chunks(list(dict.fromkeys(message_ids)), batch_size):
        digest = hashlib.sha1(",".join(batch).encode()).hexdigest()[:16]
        specs.append(
            JobSpec(
                type=INGEST,
                payload={"account_id": account_id, "ids": batch},
                priority=priority,
                idempotency_key=f"ingest:{account_id}:{digest}",
                lane=bulk_ingest_lane(account_id) if priority < PRIORITY_REALTIME_INGEST else None,
                account_id=account_id,
            )
        )
    if not specs:
        return []
    return await queue.enqueue_many(specs)
