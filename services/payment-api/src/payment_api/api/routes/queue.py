"""POST /v1/queue/tokens, GET /v1/queue/tokens/{token_id}: the authenticated user's tokens.

A user has one token at a time: asking again replaces the previous one (it leaves the queue,
or stops being active), and the new one joins at the back. So one caller cannot grow the queue.

The path names a token by its public id (sha256 of the token), never by the token itself:
URLs end up in access logs and in the server span's attributes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from payment_api.api import schemas
from payment_api.api.dependencies import ServicesDep, UserDep, write_allowed
from payment_api.domain.errors import Forbidden
from payment_api.domain.model import TokenStatus
from payment_api.service_layer import queue

router = APIRouter(prefix="/v1/queue", tags=["queue"])


@router.post(
    "/tokens",
    status_code=201,
    response_model=schemas.TokenIssued,
    responses={
        403: {"description": "the body names another user"},
        429: {"description": "write rate over the user's limit"},
    },
)
def issue_token(
    user: UserDep,
    svc: ServicesDep,
    body: Annotated[schemas.TokenRequest | None, Body()] = None,
) -> schemas.TokenIssued:
    if body is not None and body.user_id != user.user_id:
        raise Forbidden("a queue token is issued to the authenticated user only")
    write_allowed(svc, user)
    issued = queue.issue_token(svc.uow, svc.queue, user.user_id)
    return schemas.TokenIssued(
        token=issued.token,
        token_id=issued.token_id,
        user_id=issued.user_id,
        status=TokenStatus.WAITING,
        position=issued.position,
    )


@router.get(
    "/tokens/{token_id}",
    response_model=schemas.TokenState,
    responses={404: {"description": "no such token of the authenticated user"}},
)
def token_state(
    token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 hex")],
    user: UserDep,
    svc: ServicesDep,
) -> schemas.TokenState:
    state = queue.token_state(svc.queue, token_id, user.user_id)
    return schemas.TokenState(
        token_id=token_id,
        user_id=state.user_id,
        status=state.status,
        position=state.position,
    )
