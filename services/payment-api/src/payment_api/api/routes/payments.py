"""POST /v1/payments: pay a held reservation with points (needs an active queue token)."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from ticketing_events import PaymentFailed, PaymentSucceeded

from payment_api.api import schemas
from payment_api.api.dependencies import (
    IdempotencyKeyHeader,
    NowDep,
    ProblemDep,
    ServicesDep,
    TokenDep,
    UserDep,
    caller,
    idempotency,
    respond,
    write_allowed,
)
from payment_api.api.problems import payment_failure
from payment_api.service_layer import idempotency as once
from payment_api.service_layer import payments
from payment_api.service_layer.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1/payments", tags=["payments"])


@router.post(
    "",
    status_code=201,
    response_model=schemas.Payment,
    responses={
        402: {"description": "not enough points (payment recorded as failed)"},
        403: {"description": "queue token missing, unknown, waiting or another user's"},
        404: {"description": "no such reservation of the authenticated user"},
        409: {"description": "reservation already paid or no longer held"},
        410: {"description": "the hold expired (payment recorded as failed)"},
        429: {"description": "write rate over the user's limit"},
    },
)
def pay(
    body: schemas.PaymentRequest,
    request: Request,
    user: UserDep,
    token: TokenDep,
    svc: ServicesDep,
    problem: ProblemDep,
    now: NowDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    write_allowed(svc, user)
    payer = caller(svc, user, token)
    announced: list[PaymentSucceeded | PaymentFailed] = []

    def work(tx: UnitOfWork) -> once.Answer:
        outcome = payments.pay(tx, payer, body.reservation_id, now)
        announced.append(outcome.event)
        if outcome.reason is not None:
            status, problem_body = payment_failure(
                problem,
                outcome.reason,
                payment_id=outcome.payment_id,
                reservation_id=outcome.reservation_id,
            )
            return once.Answer(status, problem_body)
        paid = schemas.Payment(
            payment_id=outcome.payment_id,
            reservation_id=outcome.reservation_id,
            seat_id=outcome.seat_id,
            amount=outcome.amount,
            status=outcome.status,
            balance=outcome.balance or 0,
            paid_at=outcome.at,
        )
        return once.Answer(201, paid.model_dump_json())

    key = idempotency(request, payer.user_id, idempotency_key, body.model_dump_json())
    answer = once.execute(svc.uow, work, key)
    # POST_PROCESSING=sync: the committed payment's steps, before answering. Nothing for a
    # replayed answer (``work`` did not run).
    if svc.post_processing is not None:
        svc.post_processing.run(announced)
    log.info(
        "payment answered",
        user_id=payer.user_id,
        reservation_id=body.reservation_id,
        status=answer.status_code,
    )
    return respond(answer)
