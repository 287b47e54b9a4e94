"""The waiting queue in Redis. Key layout (the contract of the cleanup and seatlock consumers):

- ``queue:seq``                  counter giving each new token its place (INCR)
- ``queue:waiting``              sorted set of waiting token ids, scored by place
- ``queue:token:{token_id}``     user id of a waiting token, expires after the waiting TTL
- ``queue:active:{token_id}``    user id of an active token, expires after the active TTL
- ``queue:user:{user_id}``       token id of the user's current token (one per user): a new
                                 token replaces it, leaving the queue or no longer active
- ``ratelimit:{user_id}:{window}`` writes of a user in a fixed window (see ``hit``)
- ``queue:activator:leader``     id of the instance allowed to activate, with a short TTL

``token_id`` is the sha256 hex digest of the bearer token. Every key gets the configured
prefix (empty in production).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from payment_api.domain.model import TokenStatus

# One token per user: the user's previous token (waiting or active) is dropped first, so
# the queue holds at most one entry per user however often they ask.
_ENQUEUE = """
local old = redis.call('GET', KEYS[4])
if old then
  redis.call('ZREM', KEYS[2], old)
  redis.call('DEL', ARGV[4] .. 'queue:token:' .. old, ARGV[4] .. 'queue:active:' .. old)
end
local place = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], place, ARGV[1])
redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[5])
return redis.call('ZRANK', KEYS[2], ARGV[1])
"""

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
"""

# Pop the head and activate each token still known; one script, so a token is never lost
# between the pop and the activation.
_ACTIVATE = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local activated = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local user = redis.call('GET', ARGV[3] .. 'queue:token:' .. id)
  if user then
    redis.call('SET', ARGV[3] .. 'queue:active:' .. id, user, 'EX', ARGV[2])
    redis.call('DEL', ARGV[3] .. 'queue:token:' .. id)
    activated = activated + 1
  end
end
return activated
"""

_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RESIGN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class TokenState:
    status: TokenStatus
    user_id: int
    position: int | None  # 1-based place in the waiting queue; None once active


class RedisQueue:
    def __init__(
        self, client: Redis, *, prefix: str = "", waiting_ttl_s: int, active_ttl_s: int
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._waiting_ttl = waiting_ttl_s
        self._active_ttl = active_ttl_s
        self._enqueue = client.register_script(_ENQUEUE)
        self._hit = client.register_script(_HIT)
        self._activate = client.register_script(_ACTIVATE)
        self._lead = client.register_script(_LEAD)
        self._resign = client.register_script(_RESIGN)

    def key(self, name: str) -> str:
        return self._prefix + name

    def enqueue(self, token_id: str, user_id: int) -> int:
        """Put a token at the end of the queue, replacing the user's previous token; its
        1-based position."""
        keys = [
            self.key("queue:seq"),
            self.key("queue:waiting"),
            self.key(f"queue:token:{token_id}"),
            self.key(f"queue:user:{user_id}"),
        ]
        lifetime = self._waiting_ttl + self._active_ttl
        rank = self._enqueue(keys, [token_id, user_id, self._waiting_ttl, self._prefix, lifetime])
        return int(rank) + 1

    def hit(self, user_id: int, window_s: int) -> tuple[int, int]:
        """Count a write of ``user_id`` in the current fixed window: (count, seconds left)."""
        window = int(time.time()) // window_s
        count, ttl = self._hit([self.key(f"ratelimit:{user_id}:{window}")], [window_s])
        return int(count), max(int(ttl), 1)

    def state(self, token_id: str) -> TokenState | None:
        """Active, waiting (with position) or None when unknown or expired."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self.key(f"queue:active:{token_id}"))
        pipe.get(self.key(f"queue:token:{token_id}"))
        pipe.zrank(self.key("queue:waiting"), token_id)
        active_user, waiting_user, rank = pipe.execute()
        if active_user is not None:
            return TokenState(TokenStatus.ACTIVE, int(active_user), None)
        if waiting_user is not None and rank is not None:
            return TokenState(TokenStatus.WAITING, int(waiting_user), int(rank) + 1)
        return None

    def active_user(self, token_id: str) -> int | None:
        """The user of an active token (one round trip: the hot path of every payment)."""
        user = self._redis.get(self.key(f"queue:active:{token_id}"))
        return None if user is None else int(user)

    def activate(self, count: int) -> int:
        """Move up to ``count`` tokens from the head of the queue to active."""
        return int(
            self._activate([self.key("queue:waiting")], [count, self._active_ttl, self._prefix])
        )

    def lead(self, instance_id: str, ttl_ms: int) -> bool:
        """Take or keep the activator leadership for ``ttl_ms``."""
        return bool(self._lead([self.key("queue:activator:leader")], [instance_id, ttl_ms]))

    def resign(self, instance_id: str) -> None:
        self._resign([self.key("queue:activator:leader")], [instance_id])

    def ping(self) -> bool:
        return bool(self._redis.ping())
