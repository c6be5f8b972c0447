"""OAuth: the token endpoint, bearer checks (401), delegation (403), revocation (invalid_grant)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import User

from mailtide.emulator import EmulatorServer, EmulatorState

AUTH_ERROR = {
    "error": {
        "code": 401,
        "message": (
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
            "other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project."
        ),
        "errors": [
            {
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }
        ],
        "status": "UNAUTHENTICATED",
    }
}
INVALID_GRANT = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


def refresh(http: httpx.Client, state: EmulatorState, email: str, **overrides: str) -> httpx.Response:
    credentials = state.credentials(email)
    form = {
        "grant_type": "refresh_token",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "refresh_token": credentials.refresh_token or "",
        **overrides,
    }
    return http.post("/token", data=form)


@pytest.fixture
def short_lived_tokens(state: EmulatorState) -> Iterator[EmulatorState]:
    state.access_token_lifetime = 0
    yield state
    state.access_token_lifetime = 3600


def test_refresh_grant_gives_a_working_bearer_token(http: httpx.Client, state: EmulatorState, user: User) -> None:
    response = refresh(http, state, user.email)
    assert response.status_code == 200
    grant = response.json()
    assert grant["token_type"] == "Bearer" and grant["expires_in"] == 3600 and grant["scope"]
    profile = http.get("/gmail/v1/users/me/profile", headers={"Authorization": f"Bearer {grant['access_token']}"})
    assert profile.status_code == 200 and profile.json()["emailAddress"] == user.email
    by_email = http.get(
        f"/gmail/v1/users/{user.email.upper()}/profile", headers={"Authorization": f"Bearer {grant['access_token']}"}
    )
    assert by_email.status_code == 200


def test_client_credentials_by_http_basic(http: httpx.Client, state: EmulatorState, user: User) -> None:
    credentials = state.credentials(user.email)
    basic = base64.b64encode(f"{credentials.client_id}:{credentials.client_secret}".encode()).decode()
    response = http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": credentials.refresh_token},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200


def test_token_endpoint_errors(http: httpx.Client, state: EmulatorState, user: User) -> None:
    bad_client = refresh(http, state, user.email, client_secret="wrong")
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    unknown_client = refresh(http, state, user.email, client_id="nobody")
    assert unknown_client.status_code == 401 and unknown_client.json()["error"] == "invalid_client"
    bad_token = refresh(http, state, user.email, refresh_token="1//not-a-token")
    assert bad_token.status_code == 400 and bad_token.json() == INVALID_GRANT
    wrong_grant = refresh(http, state, user.email, grant_type="password")
    assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"
    missing = http.post("/token", data={"grant_type": "refresh_token", "client_id": "mailtide-demo"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    not_json = http.post("/token", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"] == "invalid_request"


def test_api_rejects_missing_unknown_and_expired_tokens(
    http: httpx.Client, user: User, short_lived_tokens: EmulatorState
) -> None:
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer nope"}):
        response = http.get("/gmail/v1/users/me/messages", headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == AUTH_ERROR
        assert "invalid_token" in response.headers["www-authenticate"]
    assert user.api.get("/profile").status_code == 200  # issued before the lifetime changed
    expired = short_lived_tokens.access_token_for(user.email)  # lifetime 0: dead on arrival
    response = http.get("/gmail/v1/users/me/profile", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and response.json() == AUTH_ERROR


def test_other_users_mailbox_is_forbidden(http: httpx.Client, state: EmulatorState, user: User) -> None:
    other = "someone-else@example.test"
    if other not in state.users():
        state.add_user(other)
    response = user.api.get(str(user.api.base_url).replace("/users/me/", f"/users/{other}/") + "profile")
    assert response.status_code == 403
    assert response.json()["error"]["errors"][0]["reason"] == "forbidden"


def test_revoke_gives_invalid_grant_and_kills_access_tokens(
    http: httpx.Client, state: EmulatorState, user: User
) -> None:
    old_refresh = state.credentials(user.email).refresh_token
    assert http.post(f"/_emulator/users/{user.email}/revoke").status_code == 200
    assert user.api.get("/profile").status_code == 401
    response = refresh(http, state, user.email, refresh_token=old_refresh or "")
    assert response.status_code == 400 and response.json() == INVALID_GRANT
    assert state.credentials(user.email).refresh_token is None

    renewed = http.post(f"/_emulator/users/{user.email}/refresh-token").json()["refreshToken"]
    assert renewed != old_refresh
    assert refresh(http, state, user.email, refresh_token=renewed).status_code == 200


def test_expire_access_tokens_forces_a_refresh(http: httpx.Client, state: EmulatorState, user: User) -> None:
    assert user.api.get("/profile").status_code == 200
    assert http.post(f"/_emulator/users/{user.email}/expire-access-tokens").status_code == 200
    assert user.api.get("/profile").status_code == 401
    assert refresh(http, state, user.email).status_code == 200


def test_state_access_token_lifetime_validation() -> None:
    state = EmulatorState()
    with pytest.raises(ValueError):
        state.access_token_lifetime = -1


def test_token_for_a_second_server_state_is_unknown(user: User) -> None:
    with EmulatorServer(EmulatorState(seed=1)) as other:
        response = httpx.get(
            f"{other.url}/gmail/v1/users/me/profile", headers={"Authorization": f"Bearer {user.token}"}
        )
    assert response.status_code == 401
