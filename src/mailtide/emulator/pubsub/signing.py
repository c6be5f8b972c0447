"""The emulator's stand-in for Google's OIDC signing key: it signs push tokens and publishes its
certificates in the two shapes Google serves (PEM certificates by key id, and a JWK set), so
google-auth verifies emulator tokens exactly as it verifies Google's.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

GOOGLE_ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME = 3600


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class SigningKey:
    """An RSA key made on first use (2048 bits, ~0.1 s), with a self-signed certificate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: rsa.RSAPrivateKey | None = None
        self._signer: crypt.RSASigner | None = None
        self._certificate_pem = ""
        self.key_id = ""

    def _ensure(self) -> rsa.RSAPrivateKey:
        with self._lock:
            if self._key is None:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                public_der = key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailtide emulator test key")])
                now = dt.datetime.now(dt.UTC)
                certificate = (
                    x509.CertificateBuilder()
                    .subject_name(name)
                    .issuer_name(name)
                    .public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - dt.timedelta(days=1))
                    .not_valid_after(now + dt.timedelta(days=365))
                    .sign(key, hashes.SHA256())
                )
                self._certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
                self.key_id = hashlib.sha1(public_der).hexdigest()
                private_pem = key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                self._signer = crypt.RSASigner.from_string(private_pem, key_id=self.key_id)
                self._key = key
            return self._key

    # ------------------------------------------------------------ certificates
    def pem_certificates(self) -> dict[str, str]:
        """Like https://www.googleapis.com/oauth2/v1/certs: {key id: PEM certificate}."""
        self._ensure()
        return {self.key_id: self._certificate_pem}

    def jwks(self) -> dict[str, Any]:
        """Like https://www.googleapis.com/oauth2/v3/certs: a JWK set."""
        numbers = self._ensure().public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.key_id,
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                }
            ]
        }

    # ------------------------------------------------------------------ tokens
    def issue_token(
        self,
        *,
        audience: str,
        email: str,
        email_verified: bool = True,
        issuer: str = GOOGLE_ISSUER,
        issued_at: float | None = None,
        lifetime: float = TOKEN_LIFETIME,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """An OIDC ID token as Pub/Sub attaches to a push request (RS256, key id in the header)."""
        self._ensure()
        assert self._signer is not None
        iat = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "azp": hashlib.sha1(email.encode()).hexdigest()[:21],
            "sub": str(int(hashlib.sha1(email.encode()).hexdigest()[:15], 16)),
            "email": email,
            "email_verified": email_verified,
            "iat": iat,
            "exp": iat + int(lifetime),
            **(extra_claims or {}),
        }
        return jwt.encode(self._signer, claims).decode()
