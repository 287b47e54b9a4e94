"""Who the caller is: a JWT bearer token, verified with PyJWT; the user id is its ``sub``.

Keys, by precedence: a JWKS URL (a real identity provider, keys fetched and cached by
``PyJWKClient``), a PEM public key, or a shared secret (HS256). The shared secret defaults to
``DEV_JWT_SECRET``: a **development-only** key that the local stack, the tests, the benchmarks
and the chart's kind profile share, so that they can mint tokens with ``mint_dev_token``.
A deployment that faces users sets ``AUTH_JWKS_URL`` (or ``AUTH_JWT_PUBLIC_KEY``) and its
issuer and audience instead; no token minted with the development key is then accepted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import structlog

from payment_api.domain.errors import Unauthenticated

# Development only: anyone can read this, so anyone can mint tokens with it.
DEV_JWT_SECRET = "ticketing-development-only-jwt-secret:anyone-can-mint-with-it:never-in-production"
DEV_ISSUER = "ticketing-dev"
DEV_AUDIENCE = "payment-api"
MAX_JWT_LENGTH = 8192
log = structlog.get_logger(__name__)
MAX_USER_ID = 2**53 - 1  # as the API's ids (payment_api.api.schemas.MAX_ID)

ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]


@dataclass(frozen=True, slots=True)
class User:
    user_id: int


class Verifier:
    """Verifies signature, ``exp``, ``iss``, ``aud`` (all required) and reads ``sub``."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        secret: str | None = None,
        public_key: str | None = None,
        jwks_url: str | None = None,
        algorithms: list[str] | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._key: Any = None
        if self._jwks is None:
            if public_key:
                self._key = public_key
            elif secret:
                self._key = secret
            else:
                raise ValueError(
                    "no key: set AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY or AUTH_JWT_SECRET"
                )
        symmetric = self._jwks is None and not public_key
        # Never both families: a public key must not be usable as an HMAC secret.
        self._algorithms = algorithms or (["HS256"] if symmetric else ASYMMETRIC)
        if symmetric and any(not a.startswith("HS") for a in self._algorithms):
            raise ValueError("a shared secret verifies HS* algorithms only")
        if not symmetric and any(a.startswith("HS") or a == "none" for a in self._algorithms):
            raise ValueError("a public key or JWKS verifies asymmetric algorithms only")

    @property
    def fetches_keys(self) -> bool:
        """Whether ``verify`` may do network I/O (a JWKS fetch): run it off the event loop."""
        return self._jwks is not None

    def verify(self, token: str) -> User:
        if len(token) > MAX_JWT_LENGTH:
            raise Unauthenticated("the bearer token is too long")
        try:
            key = self._key
            if self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the bearer token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the bearer token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the bearer token's signature does not verify") from None
        except jwt.PyJWKClientError:
            raise Unauthenticated("no key of the issuer verifies the bearer token") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid bearer token ({type(exc).__name__})") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.isdigit() or not 1 <= int(sub) <= MAX_USER_ID:
            raise Unauthenticated("the bearer token's subject is not a user id")
        return User(int(sub))


def verifier_from(settings: Any) -> Verifier:
    """The verifier of the payment-api settings (``AUTH_*``)."""
    algorithms = [a.strip() for a in settings.auth_jwt_algorithms.split(",") if a.strip()]
    if not (settings.auth_jwks_url or settings.auth_jwt_public_key) and (
        settings.auth_jwt_secret == DEV_JWT_SECRET
    ):
        log.warning(
            "verifying JWTs with the public development key: anyone can mint any user's token;"
            " set AUTH_JWKS_URL (or AUTH_JWT_PUBLIC_KEY, AUTH_JWT_SECRET) outside development"
        )
    return Verifier(
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        secret=settings.auth_jwt_secret,
        public_key=settings.auth_jwt_public_key,
        jwks_url=settings.auth_jwks_url,
        algorithms=algorithms or None,
        leeway_s=settings.auth_jwt_leeway_s,
    )


def dev_auth_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The ``AUTH_*`` variables of a development stack: the key, issuer and audience that
    ``mint_dev_token`` uses in the same environment, so the stack accepts what it mints."""
    return {
        "AUTH_JWT_SECRET": env.get("AUTH_JWT_SECRET") or DEV_JWT_SECRET,
        "AUTH_JWT_ISSUER": env.get("AUTH_JWT_ISSUER") or DEV_ISSUER,
        "AUTH_JWT_AUDIENCE": env.get("AUTH_JWT_AUDIENCE") or DEV_AUDIENCE,
    }


def mint_dev_token(
    user_id: int,
    *,
    secret: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
    **claims: Any,
) -> str:
    """A development JWT for ``user_id`` (HS256). The key, issuer and audience default to
    ``AUTH_JWT_SECRET``, ``AUTH_JWT_ISSUER`` and ``AUTH_JWT_AUDIENCE`` from the environment,
    then to the development ones: the same defaults as payment-api's, so a local stack
    accepts what this mints. Never for production: a real identity provider issues tokens.
    """
    issued = int(time.time() if now is None else now)
    payload = {
        "sub": str(user_id),
        "iss": issuer or os.environ.get("AUTH_JWT_ISSUER") or DEV_ISSUER,
        "aud": audience or os.environ.get("AUTH_JWT_AUDIENCE") or DEV_AUDIENCE,
        "iat": issued,
        "exp": issued + ttl_s,
        **claims,
    }
    key = secret or os.environ.get("AUTH_JWT_SECRET") or DEV_JWT_SECRET
    return jwt.encode(payload, key, algorithm="HS256")
