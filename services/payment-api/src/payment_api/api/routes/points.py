"""GET /v1/users/{id}/points, POST /v1/users/{id}/points/charge: the authenticated user's own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from payment_api.api import schemas
from payment_api.api.dependencies import (
    IdempotencyKeyHeader,
    ServicesDep,
    UserDep,
    idempotency,
    respond,
    write_allowed,
)
from payment_api.auth import User
from payment_api.domain.errors import Forbidden
from payment_api.service_layer import idempotency as once
from payment_api.service_layer import points
from payment_api.service_layer.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1/users", tags=["points"])

UserId = Annotated[int, Path(ge=1, le=schemas.MAX_ID)]


def _own(user: User, user_id: int) -> None:
    if user.user_id != user_id:
        raise Forbidden(f"the points of user {user_id} are not the authenticated user's")


@router.get(
    "/{user_id}/points",
    response_model=schemas.Points,
    responses={403: {"description": "another user's points"}},
)
def balance(user_id: UserId, user: UserDep, svc: ServicesDep) -> schemas.Points:
    _own(user, user_id)
    with svc.uow() as tx:
        return schemas.Points(user_id=user_id, balance=points.balance(tx, user_id))


@router.post(
    "/{user_id}/points/charge",
    response_model=schemas.Points,
    responses={
        403: {"description": "another user's points"},
        429: {"description": "write rate over the user's limit"},
    },
)
def charge(
    user_id: UserId,
    body: schemas.ChargeRequest,
    request: Request,
    user: UserDep,
    svc: ServicesDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    _own(user, user_id)
    write_allowed(svc, user)

    def work(tx: UnitOfWork) -> once.Answer:
        new_balance = points.charge(tx, user_id, body.amount)
        return once.Answer(
            200, schemas.Points(user_id=user_id, balance=new_balance).model_dump_json()
        )

    key = idempotency(request, user_id, idempotency_key, body.model_dump_json())
    return respond(once.execute(svc.uow, work, key))
