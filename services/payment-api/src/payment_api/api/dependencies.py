"""Request-scoped dependencies: the services, the caller behind the queue token, the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import Response

from payment_api.api.problems import PROBLEM_JSON, Problem
from payment_api.bootstrap import Services
from payment_api.domain.model import Caller
from payment_api.service_layer import queue
from payment_api.service_layer.idempotency import Answer, IdempotencyRequest, fingerprint

MAX_TOKEN_LENGTH = 512


# Dependencies that do no I/O are ``async``: FastAPI runs plain ``def`` ones in the
# threadpool, one thread hop each.


async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def problem(request: Request) -> Problem:
    return request.app.state.problem  # type: ignore[no-any-return]


async def now() -> datetime:
    return datetime.now(UTC)


async def queue_token(
    authorization: Annotated[str | None, Header(max_length=MAX_TOKEN_LENGTH)] = None,
    x_queue_token: Annotated[str | None, Header(max_length=MAX_TOKEN_LENGTH)] = None,
) -> str | None:
    """The token from ``Authorization: Bearer <token>`` or ``X-Queue-Token``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_queue_token or None


def caller(svc: Services, token: str | None) -> Caller:
    """The caller behind the queue token. Called inside the (threadpool) endpoint rather than
    as a dependency: a sync dependency would cost a thread hop of its own per request."""
    return queue.authorize(svc.queue, token)


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="retries with the same key get the first answer back",
    ),
]


def idempotency(
    request: Request, user_id: int, key: str | None, body: str
) -> IdempotencyRequest | None:
    if key is None:
        return None
    return IdempotencyRequest(user_id, key, fingerprint(request.method, request.url.path, body))


def respond(answer: Answer) -> Response:
    media_type = PROBLEM_JSON if answer.status_code >= 400 else "application/json"
    return Response(answer.body, status_code=answer.status_code, media_type=media_type)


ServicesDep = Annotated[Services, Depends(services)]
ProblemDep = Annotated[Problem, Depends(problem)]
TokenDep = Annotated[str | None, Depends(queue_token)]
NowDep = Annotated[datetime, Depends(now)]
