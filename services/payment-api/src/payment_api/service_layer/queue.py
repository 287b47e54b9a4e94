"""Queue tokens: issue, report, and authorize a caller by an active token."""

from __future__ import annotations

from dataclasses import dataclass

from payment_api.adapters.redis_queue import RedisQueue, TokenState
from payment_api.domain.errors import (
    NotFound,
    QueueTokenMissing,
    QueueTokenNotActive,
    QueueTokenNotYours,
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


def token_state(queue: RedisQueue, tid: str, user_id: int) -> TokenState:
    """The state of the user's token ``tid``; another user's token is unknown (404)."""
    state = queue.state(tid)
    if state is None or state.user_id != user_id:
        raise NotFound("queue token", tid)
    return state


def authorize(queue: RedisQueue, token: str | None, user_id: int) -> Caller:
    """``user_id`` acting with their active token; raises for a missing, unknown, waiting
    token, or one issued to another user."""
    if not token:
        raise QueueTokenMissing()
    tid = token_id(token)
    owner = queue.active_user(tid)
    if owner is None:
        state = queue.state(tid)
        if state is None:
            raise QueueTokenUnknown()
        if state.user_id != user_id:
            raise QueueTokenNotYours()
        if state.position is not None:
            raise QueueTokenNotActive(state.position)
        owner = state.user_id  # became active between the two reads
    if owner != user_id:
        raise QueueTokenNotYours()
    return Caller(user_id, tid)
