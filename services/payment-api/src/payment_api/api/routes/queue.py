"""POST /v1/queue/tokens, GET /v1/queue/tokens/{token}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from payment_api.api import schemas
from payment_api.api.dependencies import MAX_TOKEN_LENGTH, ServicesDep
from payment_api.domain.model import TokenStatus, token_id
from payment_api.service_layer import queue

router = APIRouter(prefix="/v1/queue", tags=["queue"])


@router.post("/tokens", status_code=201, response_model=schemas.TokenIssued)
def issue_token(body: schemas.TokenRequest, svc: ServicesDep) -> schemas.TokenIssued:
    issued = queue.issue_token(svc.uow, svc.queue, body.user_id)
    return schemas.TokenIssued(
        token=issued.token,
        token_id=issued.token_id,
        user_id=issued.user_id,
        status=TokenStatus.WAITING,
        position=issued.position,
    )


@router.get("/tokens/{token}", response_model=schemas.TokenState)
def token_state(
    token: Annotated[str, Path(min_length=1, max_length=MAX_TOKEN_LENGTH)], svc: ServicesDep
) -> schemas.TokenState:
    state = queue.token_state(svc.queue, token)
    return schemas.TokenState(
        token_id=token_id(token),
        user_id=state.user_id,
        status=state.status,
        position=state.position,
    )
