"""Errors of the emulator's model. The REST layer maps each one to Gmail's error envelope."""

from __future__ import annotations


class EmulatorError(Exception):
    """Base class: every emulator model error carries a readable message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would otherwise print the message quoted
        return self.message


class UnknownUser(EmulatorError, KeyError):
    """No mailbox for this email address."""


class DuplicateUser(EmulatorError, ValueError):
    """A user with this email address already exists."""


class UnknownMessage(EmulatorError, KeyError):
    """No message with this id in the mailbox."""


class UnknownLabel(EmulatorError, ValueError):
    """A label id (or name) that the mailbox does not have."""


class HistoryExpired(EmulatorError):
    """startHistoryId is older than the oldest history the mailbox still retains (Gmail: 404)."""


class OAuthError(EmulatorError):
    """The token endpoint refuses: status 400/401 with an OAuth error code (invalid_grant, ...)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class InvalidAccessToken(EmulatorError):
    """A missing, unknown, revoked or expired access token."""


class LabelExists(EmulatorError, ValueError):
    """A label with this name (case-insensitive) already exists."""
