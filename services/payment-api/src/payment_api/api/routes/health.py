"""/healthz (the process answers), /readyz (the database and Redis answer, and the database
schema is at the code's migration head) and /metrics (Prometheus; this worker process's)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from ticketing_events import metrics

from payment_api.api import schemas
from payment_api.api.dependencies import ProblemDep, ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health)
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@router.get("/readyz", response_model=schemas.Health, responses={503: {"description": "not ready"}})
def readyz(svc: ServicesDep, problem: ProblemDep) -> schemas.Health | JSONResponse:
    reasons = svc.ready()
    checks = {name: reason is None for name, reason in reasons.items()}
    if all(checks.values()):
        return schemas.Health(status="ready", checks=checks)
    detail = "; ".join(f"{name}: {reason}" for name, reason in reasons.items() if reason)
    return problem.response(503, "not-ready", "Not ready", detail, checks=checks)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    return Response(metrics.prometheus_text(), media_type=metrics.CONTENT_TYPE)
