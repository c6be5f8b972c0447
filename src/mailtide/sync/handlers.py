"""The job handlers of the sync engine, by job type."""

from __future__ import annotations

from functools import partial

from mailtide.queue.jobs import Handler
from mailtide.sync import jobtypes
from mailtide.sync.backfill import handle_backfill
from mailtide.sync.history import handle_history_sync
from mailtide.sync.ingest import handle_ingest
from mailtide.sync.labels import handle_labels_sync
from mailtide.sync.reconcile import handle_reconcile
from mailtide.sync.services import SyncServices
from mailtide.sync.watch import handle_watch_renew


def build_handlers(services: SyncServices) -> dict[str, Handler]:
    return {
        jobtypes.BACKFILL: partial(handle_backfill, services),
        jobtypes.INGEST: partial(handle_ingest, services),
        jobtypes.HISTORY_SYNC: partial(handle_history_sync, services),
        jobtypes.LABELS_SYNC: partial(handle_labels_sync, services),
        jobtypes.RECONCILE: partial(handle_reconcile, services),
        jobtypes.WATCH_RENEW: partial(handle_watch_renew, services),
    }
