"""mailtide's HTTP API."""

from mailtide.api.app import create_api

__all__ = ["create_api"]
