"""POST /v1/reservations: hold a seat (needs an active queue token)."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from payment_api.api import schemas
from payment_api.api.dependencies import (
    IdempotencyKeyHeader,
    NowDep,
    ServicesDep,
    TokenDep,
    UserDep,
    caller,
    idempotency,
    respond,
    write_allowed,
)
from payment_api.service_layer import idempotency as once
from payment_api.service_layer import limits, reservations
from payment_api.service_layer.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])


@router.post(
    "",
    status_code=201,
    response_model=schemas.Reservation,
    responses={
        403: {"description": "queue token missing, unknown, waiting or another user's"},
        404: {"description": "no such seat"},
        409: {"description": "seat held or sold, or its sale not open"},
        429: {"description": "write rate or live reservations over the user's limit"},
    },
)
def reserve(
    body: schemas.ReservationRequest,
    request: Request,
    user: UserDep,
    token: TokenDep,
    svc: ServicesDep,
    now: NowDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    write_allowed(svc, user)
    payer = caller(svc, user, token)

    def work(tx: UnitOfWork) -> once.Answer:
        limits.check_live_reservations(
            tx, payer.user_id, svc.settings.reservation_limit_per_user, now
        )
        view = reservations.reserve(tx, payer, body.seat_id, now, svc.settings.hold_seconds)
        return once.Answer(
            201, schemas.Reservation.model_validate(view, from_attributes=True).model_dump_json()
        )

    key = idempotency(request, payer.user_id, idempotency_key, body.model_dump_json())
    answer = once.execute(svc.uow, work, key)
    log.info(
        "reservation answered",
        user_id=payer.user_id,
        seat_id=body.seat_id,
        status=answer.status_code,
    )
    return respond(answer)
