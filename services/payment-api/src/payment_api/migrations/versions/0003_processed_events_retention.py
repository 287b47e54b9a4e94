"""An index for pruning processed_events by group and age (ticketing_events.idempotency).

Building it blocks the consumers' inserts into processed_events while it runs (they wait).
On a large table, create it by hand first with ``CREATE INDEX CONCURRENTLY
ix_processed_events_group_processed_at ON processed_events (consumer_group, processed_at)``:
this migration then finds it. Not CONCURRENTLY here: it would wait for every transaction
older than itself, a replica waiting for the migration lock included (a deadlock).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The name ticketing_events.idempotency.processed_events_table gives it.
INDEX = "ix_processed_events_group_processed_at"


def upgrade() -> None:
    op.create_index(
        INDEX, "processed_events", ["consumer_group", "processed_at"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="processed_events")
