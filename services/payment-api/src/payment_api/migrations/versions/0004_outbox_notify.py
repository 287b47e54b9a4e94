"""PostgreSQL: a statement that inserts outbox rows notifies channel ``ticketing_outbox``.

A relay in a process of its own (``payment-api relay``) listens on it
(``payment_api.adapters.outbox.OutboxListener``), so it publishes right after a commit
instead of at its next sweep. PostgreSQL delivers a notification only on commit and folds
the identical ones of one transaction into one. Nothing on SQLite: there the relay runs in
the API's process and the commit itself wakes it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The payload is the table's schema: a listener can tell deployments sharing a server apart.
_FUNCTION = """
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('ticketing_outbox', TG_TABLE_SCHEMA);
  RETURN NULL;
END $$
"""
_TRIGGER = """
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
