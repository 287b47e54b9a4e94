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
    caller,
    idempotency,
    respond,
)
from payment_api.service_layer import idempotency as once
from payment_api.service_layer import reservations
from payment_api.service_layer.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])


@router.post("", status_code=201, response_model=schemas.Reservation)
def reserve(
    body: schemas.ReservationRequest,
    request: Request,
    token: TokenDep,
    svc: ServicesDep,
    now: NowDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    payer = caller(svc, token)

    def work(tx: UnitOfWork) -> once.Answer:
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
