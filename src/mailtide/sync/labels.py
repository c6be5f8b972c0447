"""labels.sync.gmail: make the mirror's labels equal to labels.list."""

from __future__ import annotations

from mailtide.gmail.client import GmailClient
from mailtide.queue.jobs import Job, JobContext
from mailtide.store.labels import replace_labels
from mailtide.sync.errors import account_id_of, gmail_errors_as_job_errors
from mailtide.sync.services import SyncServices


async def sync_labels(services: SyncServices, account_id: int, client: GmailClient) -> int:
    listed = await client.list_labels()
    await replace_labels(services.engine, account_id, listed)
    return len(listed)


async def handle_labels_sync(services: SyncServices, job: Job, ctx: JobContext) -> None:
    account_id = account_id_of(job.payload)
    async with gmail_errors_as_job_errors(services.engine, account_id):
        client = await services.gmail.for_account(account_id)
        count = await sync_labels(services, account_id, client)
    await ctx.step("labels", {"count": count})
