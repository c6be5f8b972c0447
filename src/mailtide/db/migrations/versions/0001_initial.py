"""Initial schema: accounts, credentials, labels, threads, messages, jobs, job_steps.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

Generated with autogenerate against mailtide.db.schema, then tidied by hand. The two partial
unique indexes on jobs (idempotency key among active jobs, one running job per lane) carry
their WHERE clause for both SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_KEY_WHERE = "state IN ('queued', 'running') AND idempotency_key IS NOT NULL"
RUNNING_LANE_WHERE = "state = 'running' AND lane IS NOT NULL"


def _big_id() -> sa.types.TypeEngine:
    # SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), server_default="oauth_refresh_token", nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("provider", sa.String(length=32), server_default="gmail", nullable=False),
        sa.Column("provider_user_id", sa.String(length=255), nullable=True),
        sa.Column("credential_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=32), server_default="needs_backfill", nullable=False),
        sa.Column("history_id", sa.BigInteger(), nullable=True),
        sa.Column("anchor_history_id", sa.BigInteger(), nullable=True),
        sa.Column("last_sync_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("messages_total", sa.Integer(), nullable=True),
        sa.Column("backfill_listed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("backfill_started_at", sa.Float(), nullable=True),
        sa.Column("backfill_finished_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credential_id"], ["credentials.id"], name=op.f("fk_accounts_credential_id_credentials")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_email")),
    )
    op.create_table(
        "labels",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), server_default="user", nullable=False),
        sa.Column("message_list_visibility", sa.String(length=16), nullable=True),
        sa.Column("label_list_visibility", sa.String(length=32), nullable=True),
        sa.Column("placeholder", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_labels_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_labels")),
    )
    op.create_table(
        "threads",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("snippet", sa.Text(), nullable=True),
        sa.Column("message_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_message_at", sa.BigInteger(), nullable=True),
        sa.Column("label_ids", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_threads_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_threads")),
    )
    op.create_table(
        "messages",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("label_ids", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("history_id", sa.BigInteger(), nullable=False),
        sa.Column("internal_date", sa.BigInteger(), nullable=True),
        sa.Column("size_estimate", sa.Integer(), nullable=True),
        sa.Column("snippet", sa.Text(), nullable=True),
        sa.Column("message_id_header", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("from_addr", sa.Text(), nullable=True),
        sa.Column("to_addrs", sa.Text(), nullable=True),
        sa.Column("cc_addrs", sa.Text(), nullable=True),
        sa.Column("bcc_addrs", sa.Text(), nullable=True),
        sa.Column("date_header", sa.Text(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("raw_compressed", sa.LargeBinary(), nullable=True),
        sa.Column("raw_sha256", sa.String(length=64), nullable=True),
        sa.Column("raw_size", sa.Integer(), nullable=True),
        sa.Column("parse_error", sa.Text(), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_messages_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "id", name=op.f("pk_messages")),
    )
    op.create_index("ix_messages_thread", "messages", ["account_id", "thread_id"], unique=False)
    op.create_index("ix_messages_date", "messages", ["account_id", "internal_date"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("state", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="10", nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("lane", sa.String(length=255), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_claim", "jobs", ["state", "priority", "id"], unique=False)
    op.create_index("ix_jobs_account", "jobs", ["account_id", "state"], unique=False)
    op.create_index(
        "uq_jobs_active_key",
        "jobs",
        ["idempotency_key"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_KEY_WHERE),
        postgresql_where=sa.text(ACTIVE_KEY_WHERE),
    )
    op.create_index(
        "uq_jobs_running_lane",
        "jobs",
        ["lane"],
        unique=True,
        sqlite_where=sa.text(RUNNING_LANE_WHERE),
        postgresql_where=sa.text(RUNNING_LANE_WHERE),
    )
    op.create_table(
        "job_steps",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_steps_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_steps")),
    )
    op.create_index("ix_job_steps_job", "job_steps", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_table("job_steps")
    op.drop_table("jobs")
    op.drop_table("messages")
    op.drop_table("threads")
    op.drop_table("labels")
    op.drop_table("accounts")
    op.drop_table("credentials")
