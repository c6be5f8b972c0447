"""The database schema (SQLAlchemy Core), portable between SQLite and PostgreSQL.

Timestamps are epoch seconds (float): portable, cheap to compare, no time-zone ambiguity.
Gmail ids are strings; Gmail history ids are uint64 and stored as BigInteger (history ids fit
in a signed 64-bit integer in practice: Gmail's are around 10^7..10^10).

Deleted messages are kept as tombstones (`deleted = true`, raw bytes dropped) rather than removed:
Gmail never reuses a message id, so a tombstone lets a slow ingest that fetched the message
before its deletion see that it must not bring it back.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Account sync states
STATUS_NORMAL = "normal"
STATUS_NEEDS_BACKFILL = "needs_backfill"
STATUS_BACKFILLING = "backfilling"
STATUS_NEEDS_REAUTH = "needs_reauth"

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("provider", sa.String(32), nullable=False, server_default="gmail"),
    sa.Column("provider_user_id", sa.String(255)),
    # Reference into `credentials`; a later layer encrypts the secret itself.
    sa.Column("credential_id", sa.Integer, sa.ForeignKey("credentials.id")),
    sa.Column("status", sa.String(32), nullable=False, server_default=STATUS_NEEDS_BACKFILL),
    sa.Column("history_id", sa.BigInteger),  # cursor: history replay starts here; only moves forward
    sa.Column("anchor_history_id", sa.BigInteger),  # recorded before a backfill starts listing
    sa.Column("last_sync_at", sa.Float),
    sa.Column("last_error", sa.Text),
    sa.Column("messages_total", sa.Integer),  # Gmail's count from getProfile, for progress
    sa.Column("backfill_listed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("backfill_started_at", sa.Float),
    sa.Column("backfill_finished_at", sa.Float),
    # Backfill options: a window in Gmail's newer_than syntax ("90d", "6m", "2y"; None = whole mailbox)
    # and whether SPAM and TRASH are mirrored.
    sa.Column("backfill_newer_than", sa.String(16)),
    sa.Column("include_spam_trash", sa.Boolean, nullable=False, server_default=sa.true()),
    # Pub/Sub watch state and real-time health.
    sa.Column("watch_expiration", sa.Float),  # epoch seconds; Gmail asks for renewal within 7 days
    sa.Column("watch_renewed_at", sa.Float),
    sa.Column("watch_error", sa.Text),
    sa.Column("last_notification_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False, server_default="oauth_refresh_token"),
    sa.Column("client_id", sa.String(255), nullable=False),
    sa.Column("client_secret", sa.Text),
    sa.Column("refresh_token", sa.Text, nullable=False),
    sa.Column("scopes", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("type", sa.String(16), nullable=False, server_default="user"),  # system | user
    sa.Column("message_list_visibility", sa.String(16)),
    sa.Column("label_list_visibility", sa.String(32)),
    # True when a message carried this id but labels.list did not return it.
    sa.Column("placeholder", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.Float, nullable=False),
)

threads = sa.Table(
    "threads",
    metadata,
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("subject", sa.Text),
    sa.Column("snippet", sa.Text),
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_message_at", sa.BigInteger),  # newest internal_date (epoch ms)
    sa.Column("label_ids", sa.JSON, nullable=False, server_default="[]"),  # union over its messages
    sa.Column("updated_at", sa.Float, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("thread_id", sa.String(64), nullable=False),
    sa.Column("label_ids", sa.JSON, nullable=False, server_default="[]"),  # sorted list of label ids
    sa.Column("history_id", sa.BigInteger, nullable=False),  # version: Gmail history id of the last write
    sa.Column("internal_date", sa.BigInteger),  # epoch ms, Gmail's internalDate
    sa.Column("size_estimate", sa.Integer),
    sa.Column("snippet", sa.Text),
    sa.Column("message_id_header", sa.Text),
    sa.Column("subject", sa.Text),
    sa.Column("from_addr", sa.Text),
    sa.Column("to_addrs", sa.Text),
    sa.Column("cc_addrs", sa.Text),
    sa.Column("bcc_addrs", sa.Text),
    sa.Column("date_header", sa.Text),
    sa.Column("headers", sa.JSON),  # list of [name, decoded value]
    sa.Column("body_text", sa.Text),
    sa.Column("body_html", sa.Text),
    sa.Column("raw_compressed", sa.LargeBinary),  # zlib-compressed RFC 822 bytes
    sa.Column("raw_sha256", sa.String(64)),
    sa.Column("raw_size", sa.Integer),
    sa.Column("parse_error", sa.Text),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_messages_thread", "account_id", "thread_id"),
    sa.Index("ix_messages_date", "account_id", "internal_date"),
)

attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("account_id", sa.Integer, primary_key=True),
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("part_path", sa.String(64), primary_key=True),  # IMAP-style, e.g. "2.1"
    sa.Column("filename", sa.Text),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content_id", sa.Text),
    sa.Column("inline", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.ForeignKeyConstraint(
        ["account_id", "message_id"], ["messages.account_id", "messages.id"], ondelete="CASCADE"
    ),
)

# Job states
QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELED = "canceled"
ACTIVE_STATES = (QUEUED, RUNNING)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("state", sa.String(16), nullable=False, server_default=QUEUED),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="10"),
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("lane", sa.String(255)),
    sa.Column("account_id", sa.Integer),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("worker_id", sa.String(128)),
    sa.Column("last_error", sa.Text),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    # The claim query: queued jobs by priority then age.
    sa.Index("ix_jobs_claim", "state", "priority", "id"),
    sa.Index("ix_jobs_account", "account_id", "state"),
    # An idempotency key is unique among active jobs only: a finished job never blocks a new one.
    sa.Index(
        "uq_jobs_active_key",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("state IN ('queued', 'running') AND idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("state IN ('queued', 'running') AND idempotency_key IS NOT NULL"),
    ),
    # At most one running job per lane, enforced by the database.
    sa.Index(
        "uq_jobs_running_lane",
        "lane",
        unique=True,
        sqlite_where=sa.text("state = 'running' AND lane IS NOT NULL"),
        postgresql_where=sa.text("state = 'running' AND lane IS NOT NULL"),
    ),
)

job_steps = sa.Table(
    "job_steps",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("detail", sa.JSON),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_job_steps_job", "job_id"),
)

# One row per (schedule name, time slot) that has been enqueued: any number of workers may try to
# insert the same slot; the primary key lets exactly one of them enqueue the run.
schedule_slots = sa.Table(
    "schedule_slots",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("slot", sa.BigInteger, primary_key=True),
    sa.Column("job_id", sa.BigInteger),
    sa.Column("created_at", sa.Float, nullable=False),
)
