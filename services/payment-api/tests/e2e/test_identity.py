"""Users are who their JWT says: every user-facing write needs a verified bearer JWT, acts
for its ``sub`` only, and the queue token is bound to the user who obtained it."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from payment_api.auth import DEV_AUDIENCE, DEV_ISSUER, DEV_JWT_SECRET, mint_dev_token

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: int, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def bad_jwts(user_id: int) -> dict[str, str]:
    now = int(time.time())
    return {
        "expired": mint_dev_token(user_id, now=now - 7200, ttl_s=60),
        "wrong signature": mint_dev_token(user_id, secret="another-secret-of-at-least-32-bytes!"),
        "wrong audience": mint_dev_token(user_id, audience="someone-else"),
        "wrong issuer": mint_dev_token(user_id, issuer="https://evil.example"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user_id))}.",
        "no exp": jwt.encode(_claims(user_id, exp=None), DEV_JWT_SECRET, algorithm="HS256"),
        "sub not a user id": mint_dev_token("alice"),  # type: ignore[arg-type]
        "not a jwt": "not-a-jwt",
        "HS512 (not allowed)": jwt.encode(_claims(user_id), DEV_JWT_SECRET, algorithm="HS512"),
    }


def test_every_user_endpoint_needs_a_bearer_jwt(api, world, assert_problem):
    user_id = world.user(points=10)
    _, _, seats = world.schedule(seats=1)
    before = world.counts()
    calls = [
        ("POST", "/v1/queue/tokens", None),
        ("GET", f"/v1/queue/tokens/{'a' * 64}", None),
        ("GET", f"/v1/users/{user_id}/points", None),
        ("POST", f"/v1/users/{user_id}/points/charge", {"amount": 5}),
        ("POST", "/v1/reservations", {"seat_id": seats[0]}),
        ("POST", "/v1/payments", {"reservation_id": 1}),
    ]
    for method, path, body in calls:
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
            response = api.http.request(method, path, json=body, headers=headers)
            assert_problem(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"].startswith("Bearer")
    # authentication comes before the body is validated
    invalid = api.http.post("/v1/reservations", json={"seat_id": "x"})
    assert_problem(invalid, 401, "unauthenticated")
    assert world.counts() == before
    assert api.balance(user_id) == 10


@pytest.mark.parametrize("case", list(bad_jwts(1)))
def test_bad_jwts_are_401(api, world, case, assert_problem):
    user_id = world.user(points=10)
    token = bad_jwts(user_id)[case]
    before = world.counts()
    for response in (
        api.http.post(f"/v1/users/{user_id}/points/charge", json={"amount": 5}, headers=_h(token)),
        api.http.post("/v1/queue/tokens", headers=_h(token)),
        api.http.get(f"/v1/users/{user_id}/points", headers=_h(token)),
    ):
        problem = assert_problem(response, 401, "unauthenticated")
        assert "invalid_token" in response.headers["www-authenticate"]
        assert token not in problem["detail"]
    assert world.counts() == before
    assert api.balance(user_id) == 10


def test_the_queue_token_is_not_a_bearer_jwt(api, world, assert_problem):
    user_id = world.user()
    token = api.active_token(user_id)
    response = api.http.post("/v1/reservations", json={"seat_id": 1}, headers=_h(token))
    assert_problem(response, 401, "unauthenticated")


def test_user_x_cannot_act_for_user_y(api, world, assert_problem):
    """The impersonation attempts of the issue: every one is refused and writes nothing."""
    x, y = world.users(2, points=5000)
    _, _, seats = world.schedule(seats=3, price=1000)
    ty = api.active_token(y)
    tx = api.active_token(x)
    reservation_y = api.reserve(ty, seats[0]).json()["reservation_id"]
    before = world.counts()
    answers = {
        # X asks a queue token naming Y
        "token for Y": api.http.post("/v1/queue/tokens", json={"user_id": y}, headers=api.user(x)),
        # X reserves with Y's queue token
        "reserve with Y's token": api.reserve(ty, seats[1], as_user=x),
        # X pays Y's reservation with X's own token, then with Y's token
        "pay Y's reservation": api.pay(tx, reservation_y),
        "pay with Y's token": api.pay(ty, reservation_y, as_user=x),
        # X charges and reads Y's points
        "charge Y's points": api.charge(y, 100, as_user=x),
        "read Y's points": api.http.get(f"/v1/users/{y}/points", headers=api.user(x)),
        # X looks up Y's token by its id
        "Y's token state": api.http.get(
            f"/v1/queue/tokens/{api.token_ids[ty]}", headers=api.user(x)
        ),
    }
    expected = {
        "token for Y": (403, "forbidden"),
        "reserve with Y's token": (403, "queue-token-not-yours"),
        "pay Y's reservation": (404, "not-found"),
        "pay with Y's token": (403, "queue-token-not-yours"),
        "charge Y's points": (403, "forbidden"),
        "read Y's points": (403, "forbidden"),
        "Y's token state": (404, "not-found"),
    }
    for name, response in answers.items():
        assert_problem(response, *expected[name])
    assert world.counts() == before
    assert api.balance(x) == api.balance(y) == 5000
    assert world.scalar("select status from reservations where id = :r", r=reservation_y) == "held"
    # and Y still can
    assert api.pay(ty, reservation_y).status_code == 201
    assert api.charge(y, 100).status_code == 200


def test_the_token_is_issued_to_the_jwt_user(api, world):
    user_id = world.user()
    issued = api.http.post("/v1/queue/tokens", headers=api.user(user_id))
    assert issued.status_code == 201 and issued.json()["user_id"] == user_id
    same = api.http.post("/v1/queue/tokens", json={"user_id": user_id}, headers=api.user(user_id))
    assert same.status_code == 201 and same.json()["user_id"] == user_id


def test_the_token_state_is_read_by_id_not_by_token(api, world):
    user_id = world.user()
    token = api.token(user_id)
    by_id = api.state(token)
    assert by_id.status_code == 200 and by_id.json()["token_id"] == api.token_ids[token]
    # the raw token is not a token id: nothing is looked up by it
    by_token = api.http.get(f"/v1/queue/tokens/{token}", headers=api.user(user_id))
    assert by_token.status_code == 422


def test_openapi_declares_the_bearer_scheme(api):
    document = api.http.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "JWT"
    secured = {
        ("post", "/v1/queue/tokens"),
        ("get", "/v1/queue/tokens/{token_id}"),
        ("get", "/v1/users/{user_id}/points"),
        ("post", "/v1/users/{user_id}/points/charge"),
        ("post", "/v1/reservations"),
        ("post", "/v1/payments"),
    }
    for method, path in secured:
        assert document["paths"][path][method]["security"] == [{"bearerAuth": []}]
    assert "security" not in document["paths"]["/v1/concerts"]["get"]


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
