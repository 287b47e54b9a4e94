"""Queue tokens: issue, report, and authorize a caller by an active token."""

from __future__ import annotations

from dataclasses import dataclass

from payment_api.adapters.redis_queue import RedisQueue, TokenState
from payment_api.domain.errors import (
    NotFound,
    QueueTokenMissing,
    QueueTokenNotActive,
    QueueTokenUnknown,
)
from payment_api.domain.model import Caller, new_queue_token, token_id
from payment_api.service_layer.unit_of_work import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: str
    user_id: int
    position: int


def issue_token(uow: UnitOfWorkFactory, queue: RedisQueue, user_id: int) -> IssuedToken:
    with uow() as tx:
        if not tx.users.exists(user_id):
            raise NotFound("user", user_id)
    token = new_queue_token()
    tid = token_id(token)
    return IssuedToken(token, tid, user_id, queue.enqueue(tid, user_id))


def token_state(queue: RedisQueue, token: str) -> TokenState:
    state = queue.state(token_id(token))
    if state is None:
        raise NotFound("queue token", "(given)")
    return state


def authorize(queue: RedisQueue, token: str | None) -> Caller:
    """The caller behind an active token; raises for a missing, unknown or waiting one."""
    if not token:
        raise QueueTokenMissing()
    tid = token_id(token)
    user_id = queue.active_user(tid)
    if user_id is not None:
        return Caller(user_id, tid)
    state = queue.state(tid)
    if state is None:
        raise QueueTokenUnknown()
    if state.position is None:  # became active between the two reads
        return Caller(state.user_id, tid)
    raise QueueTokenNotActive(state.position)
