"""Initial schema: catalogue, users and points, reservations, payments, outbox,
idempotency keys, and the tables the compensator and ranking consumer write.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _pk() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def _unpublished(column: str) -> dict[str, Any]:
    return {
        "postgresql_where": sa.text(f"{column} IS NULL"),
        "sqlite_where": sa.text(f"{column} IS NULL"),
    }


def upgrade() -> None:
    op.create_table("concerts", _pk(), sa.Column("title", sa.String(200), nullable=False))
    op.create_table(
        "schedules",
        _pk(),
        sa.Column("concert_id", ID, sa.ForeignKey("concerts.id"), nullable=False),
        sa.Column("concert_date", sa.Date(), nullable=False),
        sa.Column("sale_opened_at", TS, nullable=False),
        sa.Column("seat_count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_schedules_concert_id", "schedules", ["concert_id"])
    op.create_index("ix_schedules_concert_date", "schedules", ["concert_date"])
    op.create_table(
        "seats",
        _pk(),
        sa.Column("schedule_id", ID, sa.ForeignKey("schedules.id"), nullable=False),
        sa.Column("seat_no", sa.Integer(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="available"),
        sa.Column("held_until", TS, nullable=True),
        sa.Column("reservation_id", ID, nullable=True),
        sa.UniqueConstraint("schedule_id", "seat_no"),
        sa.CheckConstraint("status in ('available', 'held', 'sold')", name="seat_status"),
    )
    op.create_index("ix_seats_schedule_id", "seats", ["schedule_id"])
    op.create_table(
        "users",
        _pk(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False, server_default="0"),
        sa.CheckConstraint("points >= 0", name="points_never_negative"),
    )
    op.create_table(
        "reservations",
        _pk(),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("seat_id", ID, sa.ForeignKey("seats.id"), nullable=False),
        sa.Column("schedule_id", ID, sa.ForeignKey("schedules.id"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("queue_token_id", sa.String(64), nullable=False),
        sa.Column("reserved_at", TS, nullable=False),
        sa.Column("hold_expires_at", TS, nullable=False),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.CheckConstraint(
            "status in ('held', 'confirmed', 'payment_failed', 'cancelled')",
            name="reservation_status",
        ),
    )
    op.create_index("ix_reservations_user_id", "reservations", ["user_id"])
    op.create_index("ix_reservations_seat_id", "reservations", ["seat_id"])
    op.create_table(
        "payments",
        _pk(),
        sa.Column("reservation_id", ID, sa.ForeignKey("reservations.id"), nullable=False),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.String(32), nullable=True),
        sa.Column("points_deducted", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("status in ('succeeded', 'failed')", name="payment_status"),
    )
    op.create_index("ix_payments_reservation_id", "payments", ["reservation_id"])
    op.create_index(
        "uq_payments_one_success",
        "payments",
        ["reservation_id"],
        unique=True,
        postgresql_where=sa.text("status = 'succeeded'"),
        sqlite_where=sa.text("status = 'succeeded'"),
    )
    op.create_table(
        "outbox",
        _pk(),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("traceparent", sa.String(64), nullable=True),
        sa.Column("tracestate", sa.String(512), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("published_at", TS, nullable=True),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_index("ix_outbox_unpublished", "outbox", ["id"], **_unpublished("published_at"))
    op.create_index(
        "ix_outbox_unpublished_key", "outbox", ["key", "id"], **_unpublished("published_at")
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", ID, primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_table(
        "sold_out_ranking",
        sa.Column("schedule_id", ID, primary_key=True, autoincrement=False),
        sa.Column("concert_id", ID, nullable=False),
        sa.Column("concert_date", sa.Date(), nullable=False),
        sa.Column("sale_opened_at", TS, nullable=True),
        sa.Column("sold_out_at", TS, nullable=False),
        sa.Column("seconds_to_sell_out", sa.Float(), nullable=False),
    )
    op.create_index("ix_sold_out_ranking_concert_date", "sold_out_ranking", ["concert_date"])
    # Same shape as ticketing_events.idempotency.processed_events_table (a test checks it).
    op.create_table(
        "processed_events",
        sa.Column("consumer_group", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("processed_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "processed_events",
        "sold_out_ranking",
        "idempotency_keys",
        "outbox",
        "payments",
        "reservations",
        "users",
        "seats",
        "schedules",
        "concerts",
    ):
        op.drop_table(table)
