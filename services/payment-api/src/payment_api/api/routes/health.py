"""/healthz (the process answers) and /readyz (the database and Redis answer)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from payment_api.api import schemas
from payment_api.api.dependencies import ProblemDep, ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health)
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@router.get("/readyz", response_model=schemas.Health, responses={503: {"description": "not ready"}})
def readyz(svc: ServicesDep, problem: ProblemDep) -> schemas.Health | JSONResponse:
    checks = svc.ready()
    if all(checks.values()):
        return schemas.Health(status="ready", checks=checks)
    down = ", ".join(name for name, ok in checks.items() if not ok)
    return problem.response(503, "not-ready", "Not ready", f"unreachable: {down}", checks=checks)
