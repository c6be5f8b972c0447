"""Logs, traces and metrics: set up once per process, handed down as a Telemetry object."""

from mailtide.observability.telemetry import Telemetry

__all__ = ["Telemetry"]
