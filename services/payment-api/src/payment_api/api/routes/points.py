"""GET /v1/users/{id}/points, POST /v1/users/{id}/points/charge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from payment_api.api import schemas
from payment_api.api.dependencies import IdempotencyKeyHeader, ServicesDep, idempotency, respond
from payment_api.service_layer import idempotency as once
from payment_api.service_layer import points
from payment_api.service_layer.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1/users", tags=["points"])

UserId = Annotated[int, Path(ge=1, le=schemas.MAX_ID)]


@router.get("/{user_id}/points", response_model=schemas.Points)
def balance(user_id: UserId, svc: ServicesDep) -> schemas.Points:
    with svc.uow() as tx:
        return schemas.Points(user_id=user_id, balance=points.balance(tx, user_id))


@router.post("/{user_id}/points/charge", response_model=schemas.Points)
def charge(
    user_id: UserId,
    body: schemas.ChargeRequest,
    request: Request,
    svc: ServicesDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    def work(tx: UnitOfWork) -> once.Answer:
        new_balance = points.charge(tx, user_id, body.amount)
        return once.Answer(
            200, schemas.Points(user_id=user_id, balance=new_balance).model_dump_json()
        )

    key = idempotency(request, user_id, idempotency_key, body.model_dump_json())
    return respond(once.execute(svc.uow, work, key))
