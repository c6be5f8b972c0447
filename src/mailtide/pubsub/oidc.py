"""Authenticating Pub/Sub push requests: the OIDC ID token Pub/Sub attaches as a bearer token.

The signature, expiry and audience are checked by google-auth (`google.auth.jwt.decode`, what
`google.oauth2.id_token.verify_token` runs) against certificates fetched from a configurable URL
(Google's by default, the emulator's in tests) and cached as long as its Cache-Control allows; then
the issuer must be Google and `email` the configured push service account with `email_verified`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from mailtide.config import GOOGLE_CERTS_URL

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
DEFAULT_CACHE_SECONDS = 300.0
MIN_REFETCH_SECONDS = 30.0  # an unknown key id refetches at most this often (no amplification)
CLOCK_SKEW_SECONDS = 10
_MAX_AGE = re.compile(r"max-age=(\d+)")


class PushAuthError(Exception):
    """The push request is not authenticated (401) or not allowed (403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CertificatesUnavailable(Exception):
    """The certificates could not be fetched: a transient failure (the push should be retried)."""


def _b64url_int(text: str) -> int:
    padded = text + "=" * (-len(text) % 4)
    return int.from_bytes(base64.urlsafe_b64decode(padded), "big")


def _pem_from_jwks(jwks: Mapping[str, Any]) -> dict[str, str]:
    """A JWK set (Google's v3 shape) -> {key id: PEM public key} (what google-auth's decode takes)."""
    keys: dict[str, str] = {}
    for entry in jwks.get("keys", []):
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        try:
            public = rsa.RSAPublicNumbers(_b64url_int(entry["e"]), _b64url_int(entry["n"])).public_key()
        except (KeyError, TypeError, ValueError):
            continue
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        keys[str(entry.get("kid", ""))] = pem.decode()
    return keys


class CertificateSource:
    """Signing certificates from `url` ({key id: PEM certificate} or a JWK set), cached."""

    def __init__(self, url: str = GOOGLE_CERTS_URL, *, timeout: float = 10.0) -> None:
        self.url = url
        self._timeout = timeout
        self._certs: dict[str, str] = {}
        self._expires_at = 0.0
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def certificates(self, *, unknown_key: bool = False) -> dict[str, str]:
        now = time.monotonic()
        if now < self._expires_at and not (unknown_key and now - self._fetched_at >= MIN_REFETCH_SECONDS):
            return self._certs
        async with self._lock:
            now = time.monotonic()
            fresh = now < self._expires_at and not (unknown_key and now - self._fetched_at >= MIN_REFETCH_SECONDS)
            if not fresh:
                await self._fetch()
            return self._certs

    async def _fetch(self) -> None:
        try:
            # A client per fetch: fetches are rare (the cache lasts hours) and nothing is left to close.
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(self.url)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("pubsub.push.certs_unavailable url=%s error=%s", self.url, exc)
            raise CertificatesUnavailable(f"cannot fetch signing certificates from {self.url}: {exc}") from exc
        if not isinstance(body, dict):
            raise CertificatesUnavailable(f"{self.url} did not return a JSON object")
        certs = _pem_from_jwks(body) if "keys" in body else {str(k): str(v) for k, v in body.items()}
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        lifetime = float(match.group(1)) if match else DEFAULT_CACHE_SECONDS
        now = time.monotonic()
        self._certs, self._fetched_at, self._expires_at = certs, now, now + lifetime
        logger.info("pubsub.push.certs_fetched url=%s keys=%d cache_seconds=%.0f", self.url, len(certs), lifetime)


class PushTokenVerifier:
    def __init__(self, *, audience: str, service_account_email: str, certificates: CertificateSource) -> None:
        if not audience or not service_account_email:
            raise ValueError("push authentication needs an audience and a service account email")
        self.audience = audience
        self.service_account_email = service_account_email.lower()
        self.certificates = certificates

    async def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """The verified claims of the request's bearer token; PushAuthError otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise PushAuthError(401, "missing bearer token")
        try:
            header = jwt.decode_header(token)
        except (ValueError, TypeError) as exc:
            raise PushAuthError(401, f"malformed token: {exc}") from None
        kid = header.get("kid") if isinstance(header, dict) else None
        certs = await self.certificates.certificates()
        if kid and kid not in certs:
            certs = await self.certificates.certificates(unknown_key=True)
        try:
            claims = jwt.decode(token, certs=certs, audience=self.audience, clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
        except (ValueError, TypeError) as exc:  # google.auth's MalformedError / InvalidValue are ValueErrors
            raise PushAuthError(401, f"invalid token: {exc}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise PushAuthError(401, f"invalid token: issuer {claims.get('iss')!r} is not Google")
        email = claims.get("email")
        if not isinstance(email, str) or email.lower() != self.service_account_email:
            raise PushAuthError(403, f"token email {email!r} is not the configured push service account")
        if claims.get("email_verified") is not True:
            raise PushAuthError(403, "token email is not verified")
        return claims
