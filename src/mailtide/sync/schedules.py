"""The sync engine's periodic jobs: what runs on a schedule, and the handlers of those jobs.

- `history.poll.gmail` (every `history_poll_seconds`, default 5 min): the fallback for missed or
  absent Pub/Sub notifications; asks for a (coalesced) history sync of each account that
  `accounts_to_poll` returns.
- `labels.poll.gmail` (every `labels_sync_seconds`, default hourly): refreshes each account's
  label list (names and visibility change without any history record).
- `queue.prune` (daily at `prune_hour_utc`): retention of finished jobs.

The schedules are run by every worker's Scheduler; each run is enqueued once (queue/periodic.py).
The handlers are ordinary jobs, so any worker runs them, with retries.
"""

from __future__ import annotations

from functools import partial

from mailtide.config import Settings
from mailtide.db.schema import STATUS_BACKFILLING, STATUS_NORMAL
from mailtide.queue.jobs import Handler, Job, JobContext, JobSpec
from mailtide.queue.periodic import DailyAt, Every, Schedule
from mailtide.queue.retention import PRUNE, RetentionPolicy, prune_handler, prune_schedule
from mailtide.store.accounts import list_accounts
from mailtide.sync import jobtypes
from mailtide.sync.poll_fallback import quiet_accounts
from mailtide.sync.services import SyncServices
from mailtide.sync.watch import watch_schedules

HISTORY_POLL = "history.poll.gmail"
LABELS_POLL = "labels.poll.gmail"


async def accounts_to_poll(services: SyncServices) -> list[int]:
    """Accounts the periodic history fallback syncs: those in normal sync that nothing was heard
    from (no Pub/Sub notification, no history sync) for `history_poll_seconds` (sync/poll_fallback.py).

    (Backfilling accounts hand over to history sync themselves; accounts that need a backfill or
    new credentials have nothing to poll.)
    """
    return await quiet_accounts(services)


async def handle_history_poll(services: SyncServices, job: Job, ctx: JobContext) -> None:
    account_ids = await accounts_to_poll(services)
    for account_id in account_ids:
        await jobtypes.request_history_sync(services.queue, account_id)
    await ctx.step("history_sync_requested", {"accounts": len(account_ids)})


async def handle_labels_poll(services: SyncServices, job: Job, ctx: JobContext) -> None:
    syncing = (STATUS_NORMAL, STATUS_BACKFILLING)
    account_ids = [a.id for a in await list_accounts(services.engine) if a.status in syncing]
    for account_id in account_ids:
        await jobtypes.request_labels_sync(services.queue, account_id)
    await ctx.step("labels_sync_requested", {"accounts": len(account_ids)})


def sync_schedules(settings: Settings) -> list[Schedule]:
    """The periodic jobs of a mailtide installation (an interval of 0 switches one off)."""
    schedules = [prune_schedule(DailyAt(settings.prune_hour_utc, 0))]
    if settings.history_poll_seconds > 0:
        schedules.append(Schedule(
            name=HISTORY_POLL,
            # Checked often, cheap when nothing is quiet: a dropped notification costs at most a check more.
            cadence=Every(min(settings.history_poll_seconds, settings.realtime_check_seconds)),
            job=JobSpec(HISTORY_POLL, priority=jobtypes.PRIORITY_HISTORY_SYNC, max_attempts=3),
        ))
    if settings.labels_sync_seconds > 0:
        schedules.append(Schedule(
            name=LABELS_POLL,
            cadence=Every(settings.labels_sync_seconds),
            job=JobSpec(LABELS_POLL, priority=jobtypes.PRIORITY_LABELS_SYNC, max_attempts=3),
        ))
    schedules.extend(watch_schedules(settings))
    return schedules


def schedule_handlers(services: SyncServices) -> dict[str, Handler]:
    """Handlers of the periodic jobs (every worker has them, whether or not it schedules)."""
    retention = RetentionPolicy(
        completed_seconds=services.settings.retain_completed_seconds,
        failed_seconds=services.settings.retain_failed_seconds,
    )
    return {
        HISTORY_POLL: partial(handle_history_poll, services),
        LABELS_POLL: partial(handle_labels_poll, services),
        PRUNE: prune_handler(services.queue, retention),
    }
