"""Concerts, schedules with free seats, seats, and the sold-out ranking."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError

from payment_api.api import schemas
from payment_api.api.dependencies import NowDep, ServicesDep
from payment_api.service_layer import catalogue

router = APIRouter(prefix="/v1", tags=["catalogue"])

IdPath = Annotated[int, Path(ge=1, le=schemas.MAX_ID)]


@router.get("/concerts", response_model=list[schemas.Concert])
def concerts(
    svc: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, object]]:
    with svc.uow() as tx:
        return catalogue.concerts(tx, limit, offset)


@router.get("/concerts/{concert_id}/schedules", response_model=list[schemas.Schedule])
def schedules(concert_id: IdPath, svc: ServicesDep, now: NowDep) -> list[dict[str, object]]:
    with svc.uow() as tx:
        return catalogue.schedules(tx, concert_id, now)


@router.get("/schedules/{schedule_id}/seats", response_model=list[schemas.Seat])
def seats(schedule_id: IdPath, svc: ServicesDep, now: NowDep) -> list[dict[str, object]]:
    with svc.uow() as tx:
        return catalogue.seats(tx, schedule_id, now)


@router.get("/rankings/sold-out", response_model=list[schemas.SoldOutEntry], tags=["rankings"])
def sold_out_ranking(
    date: Annotated[
        str,
        Query(
            description="concert date, YYYY-MM-DD",
            pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            json_schema_extra={"format": "date"},
        ),
    ],
    svc: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, object]]:
    try:  # only the calendar's dates: the pattern lets 2026-13-01 through
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("query", "date"), "msg": "not a date of the calendar", "type": "date"}]
        ) from None
    with svc.uow() as tx:
        return catalogue.sold_out_ranking(tx, day, limit)
