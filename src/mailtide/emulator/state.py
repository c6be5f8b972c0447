"""The emulator's whole world: users and their mailboxes, OAuth tokens, a clock, counters."""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mailtide.emulator.counters import RequestCounters
from mailtide.emulator.errors import DuplicateUser, InvalidAccessToken, OAuthError, UnknownUser
from mailtide.emulator.faults import FaultInjector
from mailtide.emulator.history import HistoryRetention
from mailtide.emulator.mailbox import Mailbox
from mailtide.emulator.pubsub.service import EmulatorPubSub
from mailtide.emulator.quota import QuotaEnforcer, RejectionStyle
from mailtide.gmail.quota import QuotaProfile
from mailtide.gmail.quota import quota_profile as named_quota_profile

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "mailtide-demo"
DEFAULT_CLIENT_SECRET = "demo-secret"
GRANTED_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
INVALID_GRANT = "Token has been expired or revoked."


@dataclass
class UserCredentials:
    """What a client needs to act as this user. refresh_token is None after a revoke."""

    email: str
    client_id: str
    client_secret: str
    refresh_token: str | None


@dataclass(frozen=True)
class _AccessGrant:
    email: str
    expires_at: float


class EmulatorState:
    """Thread-safe: one re-entrant lock guards users, tokens and every mailbox."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        access_token_lifetime: float = 3600,
        quota_profile: str | QuotaProfile = "gmail-2026",
        quota_costs_override: Mapping[str, int] | None = None,
        quota_rejection: RejectionStyle = "429",
        fault_seed: int | None = None,
        history_retention: HistoryRetention | None = None,
        history_gap_max: int = 5,
    ) -> None:
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._users: dict[str, UserCredentials] = {}
        self._mailboxes: dict[str, Mailbox] = {}
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user key
        self._access_tokens: dict[str, _AccessGrant] = {}
        self._fixed_now: float | None = None
        self.access_token_lifetime = access_token_lifetime
        profile = quota_profile if isinstance(quota_profile, QuotaProfile) else named_quota_profile(quota_profile)
        if quota_costs_override:
            profile = replace(profile, costs={**profile.costs, **quota_costs_override})
        # Gmail's usage limits (enforced), injected faults, and how many inner calls of a batch run at once.
        self.quota = QuotaEnforcer(profile, rejection_style=quota_rejection)
        self.faults = FaultInjector(seed if fault_seed is None else fault_seed)
        self.batch_parallelism = 1
        self._history_retention = history_retention or HistoryRetention()
        self.history_gap_max = history_gap_max
        self.counters = RequestCounters()
        # Gmail watches, notifications and the Pub/Sub broker (push, pull; gRPC served separately).
        self.pubsub = EmulatorPubSub(clock=self.now, seed=seed)

    # -------------------------------------------------------------------- clock
    def now(self) -> float:
        """Epoch seconds: the fixed time if one is set (tests), else the real time."""
        fixed = self._fixed_now
        return time.time() if fixed is None else fixed

    def set_now(self, when: float | datetime | None) -> None:
        """Fix the clock (epoch seconds or an aware datetime); None returns to real time."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError("set_now needs a timezone-aware datetime")
            when = when.timestamp()
        self._fixed_now = None if when is None else float(when)

    # ------------------------------------------------------------------ setting
    @property
    def access_token_lifetime(self) -> float:
        return self._access_token_lifetime

    @access_token_lifetime.setter
    def access_token_lifetime(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("access_token_lifetime must be >= 0")
        self._access_token_lifetime = seconds

    @property
    def history_retention(self) -> HistoryRetention:
        return self._history_retention

    @history_retention.setter
    def history_retention(self, retention: HistoryRetention) -> None:
        with self.lock:
            self._history_retention = retention
            for mailbox in self._mailboxes.values():
                mailbox.history_retention = retention

    def cost_of(self, method: str) -> int:
        return self.quota.profile.cost(method)

    @property
    def quota_costs(self) -> dict[str, int]:
        return dict(self.quota.profile.costs)

    def set_quota_profile(self, profile: QuotaProfile, *, rejection_style: RejectionStyle | None = None) -> None:
        self.quota.configure(profile, rejection_style=rejection_style)

    # -------------------------------------------------------------------- users
    def add_user(
        self,
        email: str,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        refresh_token: str | None = None,
    ) -> Mailbox:
        if not isinstance(email, str) or "@" not in email or any(c.isspace() for c in email):
            raise ValueError(f"not an email address: {email!r}")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must be non-empty")
        key = email.lower()
        with self.lock:
            if key in self._users:
                raise DuplicateUser(f"user {email} already exists")
            if refresh_token is not None and refresh_token in self._refresh_tokens:
                raise ValueError("that refresh token already belongs to another user")
            token = refresh_token or self._new_refresh_token()
            self._users[key] = UserCredentials(email, client_id, client_secret, token)
            self._refresh_tokens[token] = key
            mailbox = Mailbox(
                email,
                lock=self.lock,
                seed=self._rng.getrandbits(64),
                clock=self.now,
                history_gap_max=self.history_gap_max,
                history_retention=self._history_retention,
            )
            mailbox.change_listeners.append(self.pubsub.mailbox_changed)
            self._mailboxes[key] = mailbox
            logger.info("emulator.user.added", extra={"email": email})
            return mailbox

    def users(self) -> list[str]:
        with self.lock:
            return [credentials.email for credentials in self._users.values()]

    def credentials(self, email: str) -> UserCredentials:
        with self.lock:
            user = self._user(email)
            return UserCredentials(user.email, user.client_id, user.client_secret, user.refresh_token)

    def mailbox(self, email: str) -> Mailbox:
        """The user's mailbox; "me" works when there is exactly one user."""
        with self.lock:
            if email == "me":
                if len(self._mailboxes) != 1:
                    raise UnknownUser(f"'me' is ambiguous with {len(self._mailboxes)} users")
                return next(iter(self._mailboxes.values()))
            self._user(email)
            return self._mailboxes[email.lower()]

    def _user(self, email: str) -> UserCredentials:
        try:
            return self._users[email.lower()]
        except KeyError:
            raise UnknownUser(f"unknown user {email}") from None

    # -------------------------------------------------------------------- OAuth
    def _new_refresh_token(self) -> str:
        return "1//" + secrets.token_urlsafe(32)

    def issue_access_token(self, *, client_id: str, client_secret: str, refresh_token: str) -> dict[str, Any]:
        """The refresh_token grant of Google's token endpoint."""
        with self.lock:
            clients = {(u.client_id, u.client_secret) for u in self._users.values()}
            if (client_id, client_secret) not in clients:
                raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
            key = self._refresh_tokens.get(refresh_token)
            user = self._users.get(key) if key else None
            if user is None or user.client_id != client_id:
                raise OAuthError(400, "invalid_grant", INVALID_GRANT)
            token = "ya29." + secrets.token_urlsafe(40)
            self._access_tokens[token] = _AccessGrant(user.email, self.now() + self.access_token_lifetime)
            return {
                "access_token": token,
                "expires_in": int(self.access_token_lifetime),
                "scope": GRANTED_SCOPE,
                "token_type": "Bearer",
            }

    def access_token_for(self, email: str) -> str:
        """Convenience for tests and the demo: a fresh access token for this user."""
        user = self.credentials(email)
        if user.refresh_token is None:
            raise OAuthError(400, "invalid_grant", INVALID_GRANT)
        grant = self.issue_access_token(
            client_id=user.client_id, client_secret=user.client_secret, refresh_token=user.refresh_token
        )
        return str(grant["access_token"])

    def check_access_token(self, token: str) -> str:
        """The email of the user the token belongs to; InvalidAccessToken when unknown or expired."""
        with self.lock:
            grant = self._access_tokens.get(token)
            if grant is None:
                raise InvalidAccessToken("unknown or revoked access token")
            if self.now() >= grant.expires_at:
                raise InvalidAccessToken("access token expired")
            return grant.email

    def revoke_refresh_token(self, email: str) -> None:
        """Revoke the user's grant: the refresh token and every access token stop working."""
        with self.lock:
            user = self._user(email)
            if user.refresh_token is not None:
                self._refresh_tokens.pop(user.refresh_token, None)
            user.refresh_token = None
            self.expire_access_tokens(email)
            logger.info("emulator.user.revoked", extra={"email": user.email})

    def new_refresh_token(self, email: str) -> str:
        """Re-authorise: a new refresh token replaces the old one."""
        with self.lock:
            user = self._user(email)
            if user.refresh_token is not None:
                self._refresh_tokens.pop(user.refresh_token, None)
            user.refresh_token = self._new_refresh_token()
            self._refresh_tokens[user.refresh_token] = email.lower()
            return user.refresh_token

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Forget access tokens (of one user, or all): clients must refresh."""
        with self.lock:
            if email is None:
                self._access_tokens.clear()
                return
            wanted = self._user(email).email
            for token in [t for t, g in self._access_tokens.items() if g.email == wanted]:
                del self._access_tokens[token]
