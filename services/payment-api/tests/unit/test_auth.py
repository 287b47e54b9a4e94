"""The verifier: keys from a shared secret, a public key or a JWKS URL; no algorithm confusion."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from payment_api.auth import Verifier, mint_dev_token, verifier_from
from payment_api.config import Settings
from payment_api.domain.errors import Unauthenticated

ISS, AUD = "https://idp.example", "payment-api"


def _claims(sub: str = "42", **extra) -> dict:
    now = int(time.time())
    return {"sub": sub, "iss": ISS, "aud": AUD, "iat": now, "exp": now + 60, **extra}


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_dev_defaults_verify_minted_tokens():
    verifier = verifier_from(Settings())
    assert verifier.verify(mint_dev_token(7)).user_id == 7
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(mint_dev_token(7, now=time.time() - 3600, ttl_s=10))


def test_public_key(rsa_key):
    verifier = Verifier(issuer=ISS, audience=AUD, public_key=_public_pem(rsa_key))
    assert verifier.verify(jwt.encode(_claims(), rsa_key, algorithm="RS256")).user_id == 42
    # algorithm confusion: the public key used as an HMAC secret must not verify
    forged = jwt.encode(_claims(), "x" * 40, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verifier.verify(forged)
    with pytest.raises(ValueError):
        Verifier(issuer=ISS, audience=AUD, public_key=_public_pem(rsa_key), algorithms=["HS256"])


def test_jwks_url(rsa_key):
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
        verifier = Verifier(issuer=ISS, audience=AUD, jwks_url=url)
        assert verifier.fetches_keys
        good = jwt.encode(_claims("9"), rsa_key, algorithm="RS256", headers={"kid": "k1"})
        assert verifier.verify(good).user_id == 9
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        bad = jwt.encode(_claims("9"), other, algorithm="RS256", headers={"kid": "k1"})
        with pytest.raises(Unauthenticated):
            verifier.verify(bad)
        unknown_kid = jwt.encode(_claims("9"), rsa_key, algorithm="RS256", headers={"kid": "k2"})
        with pytest.raises(Unauthenticated):
            verifier.verify(unknown_kid)
    finally:
        server.shutdown()


@pytest.mark.parametrize("sub", ["0", "-1", "abc", str(2**63), ""])
def test_sub_must_be_a_user_id(sub):
    verifier = Verifier(issuer=ISS, audience=AUD, secret="s" * 40)
    with pytest.raises(Unauthenticated):
        verifier.verify(jwt.encode(_claims(sub), "s" * 40, algorithm="HS256"))
