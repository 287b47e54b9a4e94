"""Request-scoped dependencies: the services, the authenticated user, the caller behind the
queue token, the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from payment_api.api.problems import PROBLEM_JSON, Problem
from payment_api.auth import User, Verifier
from payment_api.bootstrap import Services
from payment_api.domain.errors import Unauthenticated
from payment_api.domain.model import Caller
from payment_api.service_layer import limits, queue
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


# The OpenAPI document's security scheme (``/docs`` gets an Authorize button); it only reads
# the header: ``current_user`` answers 401 itself, as problem+json.
bearer = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="a JWT from the identity provider (in development: payment_api.auth"
    ".mint_dev_token); the user id is its `sub`",
    auto_error=False,
)


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """The user of the verified ``Authorization: Bearer <JWT>``; 401 otherwise. Resolved
    before the body is read or validated."""
    if credentials is None:
        raise Unauthenticated("a bearer token is required (Authorization: Bearer <JWT>)")
    verifier: Verifier = request.app.state.verifier
    if verifier.fetches_keys:  # a JWKS fetch is blocking I/O
        return await run_in_threadpool(verifier.verify, credentials.credentials)
    return verifier.verify(credentials.credentials)


async def queue_token(
    x_queue_token: Annotated[
        str | None,
        Header(
            max_length=MAX_TOKEN_LENGTH,
            description="the active queue token of the authenticated user",
        ),
    ] = None,
) -> str | None:
    """The queue token from ``X-Queue-Token``."""
    return x_queue_token or None


def write_allowed(svc: Services, user: User) -> None:
    """The per-user write rate limit (429 past it); first thing of every write endpoint."""
    s = svc.settings
    limits.check_rate(svc.queue, user.user_id, s.rate_limit_writes_per_user, s.rate_limit_window_s)


def caller(svc: Services, user: User, token: str | None) -> Caller:
    """The authenticated user acting with their own active queue token. Called inside the
    (threadpool) endpoint rather than as a dependency: a sync dependency would cost a thread
    hop of its own per request."""
    return queue.authorize(svc.queue, token, user.user_id)


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
UserDep = Annotated[User, Depends(current_user)]
NowDep = Annotated[datetime, Depends(now)]
