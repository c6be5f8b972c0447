"""Google's OAuth endpoints: the consent page (GET /o/oauth2/auth) and the token endpoint (POST /token).

The consent page consents at once, for the user named by `login_hint`, or else the only user
registered with the requesting client, and redirects to the loopback redirect_uri with `code`
and `state`. The token endpoint exchanges such a code (grant_type=authorization_code, checking
redirect_uri and the PKCE code_verifier) for a new refresh token and an access token, and serves
the refresh_token grant. A new consent replaces the user's refresh token (the emulator keeps one
per user), so the previous one then answers invalid_grant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from mailtide.emulator.errors import OAuthError
from mailtide.emulator.state import EmulatorState

router = APIRouter()

CODE_LIFETIME_SECONDS = 600
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class _PendingCode:
    email: str
    client_id: str
    redirect_uri: str
    scopes: str
    code_challenge: str | None
    code_challenge_method: str
    expires_at: float


class AuthorizationCodes:
    """Codes handed out by the consent page: single use, short-lived, thread-safe."""

    def __init__(self) -> None:
        self._codes: dict[str, _PendingCode] = {}
        self._lock = threading.Lock()

    def issue(self, pending: _PendingCode) -> str:
        code = "4/" + secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = pending
        return code

    def redeem(self, code: str) -> _PendingCode | None:
        with self._lock:
            pending = self._codes.pop(code, None)
        if pending is None or pending.expires_at < time.time():
            return None
        return pending


def _codes(request: Request) -> AuthorizationCodes:
    return request.app.state.oauth_codes  # type: ignore[no-any-return]


def _redirect(redirect_uri: str, **params: str) -> RedirectResponse:
    parts = urlsplit(redirect_uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)


def _consenting_user(state: EmulatorState, client_id: str, login_hint: str) -> str | None:
    users = [state.credentials(email) for email in state.users()]
    if login_hint:
        chosen = [u for u in users if u.email.lower() == login_hint.lower() and u.client_id == client_id]
    else:
        chosen = [u for u in users if u.client_id == client_id]
    return chosen[0].email if len(chosen) == 1 else None


@router.get("/o/oauth2/auth", name="oauth.authorize", response_model=None)
@router.get("/o/oauth2/v2/auth", name="oauth.authorize_v2", response_model=None)
async def authorize(request: Request) -> JSONResponse | RedirectResponse:
    state: EmulatorState = request.app.state.emulator
    q = request.query_params
    client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
    if not client_id or client_id not in {state.credentials(e).client_id for e in state.users()}:
        return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
    target = urlsplit(redirect_uri)
    if target.scheme != "http" or target.hostname not in _LOOPBACK_HOSTS:
        return _oauth_error(400, "redirect_uri_mismatch", "redirect_uri must be a loopback http:// address.")
    back = {"state": q["state"]} if "state" in q else {}
    if q.get("response_type") != "code":
        return _redirect(redirect_uri, error="unsupported_response_type", **back)
    scopes = " ".join(q.get("scope", "").split())
    if not scopes:
        return _redirect(redirect_uri, error="invalid_scope", error_description="Missing scope.", **back)
    method = q.get("code_challenge_method", "plain" if "code_challenge" in q else "")
    if "code_challenge" in q and method not in ("S256", "plain"):
        return _redirect(redirect_uri, error="invalid_request", error_description="Bad code_challenge_method.", **back)
    email = _consenting_user(state, client_id, q.get("login_hint", ""))
    if email is None:
        return _redirect(redirect_uri, error="access_denied",
                         error_description="No single user to consent as: pass login_hint.", **back)
    code = _codes(request).issue(_PendingCode(
        email=email, client_id=client_id, redirect_uri=redirect_uri, scopes=scopes,
        code_challenge=q.get("code_challenge"), code_challenge_method=method,
        expires_at=time.time() + CODE_LIFETIME_SECONDS,
    ))
    return _redirect(redirect_uri, code=code, scope=scopes, **back)


def _pkce_ok(pending: _PendingCode, verifier: str) -> bool:
    if pending.code_challenge is None:
        return True
    if not verifier:
        return False
    if pending.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    else:
        computed = verifier
    return secrets.compare_digest(computed, pending.code_challenge)


def _exchange_code(state: EmulatorState, request: Request, form: dict[str, str], client: tuple[str, str]) -> dict:
    code = form.get("code", "")
    if not code:
        raise OAuthError(400, "invalid_request", "Missing required parameter: code")
    pending = _codes(request).redeem(code)
    if pending is None:
        raise OAuthError(400, "invalid_grant", "Malformed auth code.")
    if pending.client_id != client[0]:
        raise OAuthError(400, "invalid_grant", "The auth code was issued to another client.")
    if form.get("redirect_uri", "") != pending.redirect_uri:
        raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
    if not _pkce_ok(pending, form.get("code_verifier", "")):
        raise OAuthError(400, "invalid_grant", "Invalid code verifier.")
    refresh_token = state.new_refresh_token(pending.email)
    grant = state.issue_access_token(client_id=client[0], client_secret=client[1], refresh_token=refresh_token)
    return {**grant, "refresh_token": refresh_token, "scope": pending.scopes}


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise OAuthError(400, "invalid_request", "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise OAuthError(400, "invalid_request", "The request body must be a JSON object.")
        return {str(k): str(v) for k, v in data.items()}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "The request body is not UTF-8 form data.") from None
    return {key: values[0] for key, values in parsed.items()}


def _basic_client(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "Malformed HTTP Basic client credentials.") from None
    if not sep:
        raise OAuthError(401, "invalid_client", "Malformed HTTP Basic client credentials.")
    return unquote(client_id), unquote(secret)


@router.post("/token", name="oauth.token")
async def token(request: Request) -> JSONResponse:
    state: EmulatorState = request.app.state.emulator
    try:
        form = await _form(request)
        grant_type = form.get("grant_type", "")
        if grant_type not in ("refresh_token", "authorization_code"):
            if not grant_type:
                raise OAuthError(400, "unsupported_grant_type", "Missing required parameter: grant_type")
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        client = _basic_client(request) or (form.get("client_id", ""), form.get("client_secret", ""))
        if not client[0]:
            raise OAuthError(400, "invalid_request", "Missing required parameter: client_id")
        if grant_type == "authorization_code":
            if (client[0], client[1]) not in {
                (c.client_id, c.client_secret) for c in map(state.credentials, state.users())
            }:
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            exchanged = _exchange_code(state, request, form, client)
            return JSONResponse(exchanged, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
        refresh_token = form.get("refresh_token", "")
        if not refresh_token:
            raise OAuthError(400, "invalid_request", "Missing required parameter: refresh_token")
        grant = state.issue_access_token(client_id=client[0], client_secret=client[1], refresh_token=refresh_token)
    except OAuthError as exc:
        return _oauth_error(exc.status, exc.error, exc.description)
    return JSONResponse(grant, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
