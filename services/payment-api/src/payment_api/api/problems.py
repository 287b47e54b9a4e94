"""RFC 9457 problem details: every error answer is ``application/problem+json``."""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from ticketing_events import FailureReason
from ticketing_events.consumer import DeploymentError

from payment_api.domain import errors

PROBLEM_JSON = "application/problem+json"
WWW_AUTHENTICATE = 'Bearer realm="payment-api", error="invalid_token"'

log = structlog.get_logger(__name__)


class Problem:
    """Builds problem bodies; ``type`` is ``base`` + a slug (an absolute URN by default)."""

    def __init__(self, base: str) -> None:
        self._base = base

    def body(self, status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": self._base + slug,
            "title": title,
            "status": status,
            "detail": detail,
            **extra,
        }

    def response(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> JSONResponse:
        return JSONResponse(
            self.body(status, slug, title, detail, **extra),
            status_code=status,
            media_type=PROBLEM_JSON,
            headers=headers,
        )


# status, slug, title of each failed-payment reason
PAYMENT_FAILURES: dict[FailureReason, tuple[int, str, str]] = {
    FailureReason.INSUFFICIENT_POINTS: (402, "insufficient-points", "Not enough points"),
    FailureReason.HOLD_EXPIRED: (410, "hold-expired", "The seat hold has expired"),
    FailureReason.NOT_OWNER: (403, "not-owner", "The reservation belongs to another user"),
    FailureReason.RESERVATION_NOT_HELD: (409, "reservation-not-held", "Reservation not held"),
}


def _domain(problem: Problem, exc: errors.DomainError) -> JSONResponse:
    detail = str(exc)
    match exc:
        case errors.NotFound():
            return problem.response(404, "not-found", f"Unknown {exc.what}", detail)
        case errors.SeatUnavailable():
            return problem.response(
                409, "seat-unavailable", "Seat not available", detail, seat_id=exc.seat_id
            )
        case errors.SaleNotOpen():
            return problem.response(409, "sale-not-open", "Sale not open", detail)
        case errors.ReservationNotPayable() if exc.already_paid:
            return problem.response(
                409,
                "already-paid",
                "Reservation already paid",
                detail,
                reservation_id=exc.reservation_id,
            )
        case errors.ReservationNotPayable():
            return problem.response(
                409,
                "reservation-not-held",
                "Reservation not held",
                detail,
                reservation_id=exc.reservation_id,
            )
        case errors.IdempotencyKeyReused():
            return problem.response(422, "idempotency-key-reused", "Idempotency-Key reused", detail)
        case errors.Unauthenticated():
            return problem.response(
                401,
                "unauthenticated",
                "Authentication required",
                detail,
                headers={"WWW-Authenticate": WWW_AUTHENTICATE},
            )
        case errors.TooManyRequests():
            return problem.response(
                429,
                exc.slug,
                "Too many requests",
                detail,
                headers={"Retry-After": str(exc.retry_after_s)},
                retry_after_s=exc.retry_after_s,
            )
        case errors.Forbidden():
            return problem.response(403, "forbidden", "Not yours", detail)
        case errors.QueueTokenMissing():
            return problem.response(403, "queue-token-missing", "Queue token required", detail)
        case errors.QueueTokenUnknown():
            return problem.response(403, "queue-token-unknown", "Queue token unknown", detail)
        case errors.QueueTokenNotYours():
            return problem.response(
                403, "queue-token-not-yours", "The queue token is another user's", detail
            )
        case errors.QueueTokenNotActive():
            return problem.response(
                403,
                "queue-token-not-active",
                "Still waiting in the queue",
                detail,
                position=exc.position,
            )
    return problem.response(400, "bad-request", "Bad request", detail)


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    found = []
    for error in exc.errors():
        where, *path = error.get("loc") or ("body",)
        found.append(
            {
                "field": ".".join(str(p) for p in path) or str(where),
                "in": str(where),
                "reason": str(error.get("msg", "invalid")),
            }
        )
    return found


def install(app: FastAPI, problem: Problem) -> None:
    """Map every error to a problem response; the 500 is for bugs only."""

    @app.exception_handler(errors.DomainError)
    async def domain_error(_: Request, exc: errors.DomainError) -> JSONResponse:
        return _domain(problem, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        field_errors = _field_errors(exc)
        names = ", ".join(sorted({e["field"] for e in field_errors}))
        return problem.response(
            422, "validation-error", "Invalid request", f"invalid: {names}", errors=field_errors
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return problem.response(
            exc.status_code,
            f"http-{exc.status_code}",
            str(exc.detail),
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(RedisError)
    @app.exception_handler(DeploymentError)  # e.g. the migrations were not applied
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.error("dependency failed", error=str(exc)[:500], kind=type(exc).__name__)
        return problem.response(
            503,
            "dependency-unavailable",
            "Service unavailable",
            "a backing service failed; retry later",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem.response(500, "internal", "Internal error", "unexpected error")


def payment_failure(problem: Problem, reason: FailureReason, **extra: Any) -> tuple[int, str]:
    status, slug, title = PAYMENT_FAILURES[reason]
    body = problem.body(status, slug, title, f"payment failed: {reason}", reason=reason, **extra)
    return status, json.dumps(body, default=str)
