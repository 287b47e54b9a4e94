"""The OpenAPI document declares every answer an operation gives: each error status with its
``application/problem+json`` body (RFC 9457), besides what the routes declare themselves; and
the links from an answer to the calls it enables (a client's path through the API, which
schemathesis's stateful phase follows)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from payment_api.api.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `type` is urn:ticketing:problem:<slug>",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "validation errors (422)",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "in": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

DESCRIPTIONS = {
    "400": "malformed request body",
    "401": "no valid bearer JWT",
    "403": "not the authenticated user's",
    "404": "not found",
    "405": "method not allowed",
    "413": "request body too large",
    "422": "invalid request",
    "429": "over a per-user limit (Retry-After)",
    "503": "a backing service is unavailable (Retry-After)",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
UNMONITORED = {"/healthz"}  # answers 200 or nothing
TOKEN = "header.x-queue-token"
# (method, path, status) of an answer -> its links: name -> (method, path of the target,
# its parameters and body from runtime expressions).
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, Any]]]] = {
    ("post", "/v1/queue/tokens", "201"): {
        "TokenState": (
            "get",
            "/v1/queue/tokens/{token_id}",
            {"parameters": {"token_id": "$response.body#/token_id"}},
        ),
        "ReserveWithToken": (
            "post",
            "/v1/reservations",
            {"parameters": {TOKEN: "$response.body#/token"}},
        ),
    },
    ("get", "/v1/concerts", "200"): {
        "Schedules": (
            "get",
            "/v1/concerts/{concert_id}/schedules",
            {"parameters": {"concert_id": "$response.body#/0/id"}},
        ),
    },
    ("get", "/v1/concerts/{concert_id}/schedules", "200"): {
        "Seats": (
            "get",
            "/v1/schedules/{schedule_id}/seats",
            {"parameters": {"schedule_id": "$response.body#/0/id"}},
        ),
    },
    ("get", "/v1/schedules/{schedule_id}/seats", "200"): {
        "ReserveSeat": (
            "post",
            "/v1/reservations",
            {"requestBody": {"seat_id": "$response.body#/0/id"}},
        ),
    },
    ("post", "/v1/reservations", "201"): {
        "Pay": (
            "post",
            "/v1/payments",
            {
                "parameters": {TOKEN: "$request.header.x-queue-token"},
                "requestBody": {"reservation_id": "$response.body#/id"},
            },
        ),
    },
    ("get", "/v1/users/{user_id}/points", "200"): {
        "Charge": (
            "post",
            "/v1/users/{user_id}/points/charge",
            {"parameters": {"user_id": "$response.body#/user_id"}},
        ),
    },
    ("post", "/v1/users/{user_id}/points/charge", "200"): {
        "Balance": (
            "get",
            "/v1/users/{user_id}/points",
            {"parameters": {"user_id": "$response.body#/user_id"}},
        ),
    },
}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=None
            )
            complete(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> None:
    _add_links(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            wanted = set()
            if path not in UNMONITORED:
                wanted |= {"503"}
            if operation.get("parameters") or operation.get("requestBody"):
                wanted |= {"422"}
            if operation.get("requestBody"):
                wanted |= {"400", "413"}
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                wanted |= {"404"}
            if operation.get("security"):
                wanted |= {"401"}
            for status in wanted:
                responses.setdefault(status, {"description": DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = problem
                    response.setdefault("description", DESCRIPTIONS.get(status, "error"))
                    if status in ("429", "503"):
                        response["headers"] = RETRY_AFTER
                    if status == "401":
                        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}


def _add_links(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for (method, path, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {
            name: {"operationId": paths[target][target_method]["operationId"], **fields}
            for name, (target_method, target, fields) in links.items()
        }
