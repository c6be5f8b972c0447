"""Backfill options and watch state on accounts; attachments; schedule slots for periodic jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("backfill_newer_than", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("include_spam_trash", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.add_column(sa.Column("watch_expiration", sa.Float(), nullable=True))
        batch.add_column(sa.Column("watch_renewed_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("watch_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_notification_at", sa.Float(), nullable=True))
    op.create_table(
        "attachments",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("part_path", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_id", sa.Text(), nullable=True),
        sa.Column("inline", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id", "message_id"],
            ["messages.account_id", "messages.id"],
            name=op.f("fk_attachments_account_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "message_id", "part_path", name=op.f("pk_attachments")),
    )
    op.create_table(
        "schedule_slots",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "slot", name=op.f("pk_schedule_slots")),
    )


def downgrade() -> None:
    op.drop_table("schedule_slots")
    op.drop_table("attachments")
    with op.batch_alter_table("accounts") as batch:
        for column in (
            "last_notification_at",
            "watch_error",
            "watch_renewed_at",
            "watch_expiration",
            "include_spam_trash",
            "backfill_newer_than",
        ):
            batch.drop_column(column)
