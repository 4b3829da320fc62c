"""Client authentication: API keys (hashed) and HS256 JWTs.

Credentials come from ``Authorization: Bearer <key or JWT>`` or ``X-API-Key: <key>``. A bearer
token with two dots is a JWT: HS256 only (the algorithm list is pinned, so ``none`` and
RS/HS confusion are rejected), ``exp`` required, claims ``sub`` (the user) and ``plan``. The
result, a ``Principal``, is what the rate limiter counts against. With
``--auth off`` the principal is the client IP under the configured anonymous plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from starlette.types import Scope

from relay.errors import Unauthorized
from relay.keys import KeyStore, Plan

PROTECTED_PREFIXES = ("/v1/", "/api/")
CHALLENGE = (b"www-authenticate", b"Bearer")


@dataclass(frozen=True)
class Principal:
    id: str  # safe to log and to use as a rate-limit key: never the credential itself
    plan: Plan


class Authenticator:
    def __init__(self, keys: KeyStore, jwt_secret: str, enabled: bool, anon_plan: Plan) -> None:
        self.keys = keys
        self.jwt_secret = jwt_secret
        self.enabled = enabled
        self.anon_plan = anon_plan

    def authenticate(self, scope: Scope) -> Principal:
        if not self.enabled:
            client = scope.get("client")
            return Principal(f"ip:{client[0] if client else 'unknown'}", self.anon_plan)
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not rest.strip():
                    raise Unauthorized("Authorization must be 'Bearer <api key or JWT>'")
                token = rest.strip()
                break
            if name == b"x-api-key":
                token = value.decode("latin-1").strip()
        if not token:
            raise Unauthorized("missing credentials: send Authorization: Bearer <key> or X-API-Key")
        if token.count(".") == 2:
            self.keys.refresh(time.monotonic())  # a JWT's plan is looked up in the file's table
            return self._from_jwt(token)
        found = self.keys.plan_for_key(token, time.monotonic())
        if found is None:
            raise Unauthorized("invalid API key")
        return Principal(*found)

    def _from_jwt(self, token: str) -> Principal:
        if not self.jwt_secret:
            raise Unauthorized("JWT credentials are not accepted by this relay (no --jwt-secret)")
        try:
            claims = jwt.decode(
                token,
                self.jwt_secret,
                algorithms=["HS256"],
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("JWT expired", code="token_expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid JWT: {exc}", code="invalid_token") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            # Every such token would share one principal (and its limits): refuse it.
            raise Unauthorized("JWT 'sub' must be a non-empty string", code="invalid_token")
        plan_name = claims.get("plan", "basic")
        plan = self.keys.plans.get(plan_name) if isinstance(plan_name, str) else None
        if plan is None:
            raise Unauthorized(f"JWT plan {plan_name!r} is not a known plan", code="invalid_token")
        return Principal(f"jwt:{subject}", plan)
