"""Admitting one Gmail call: charge its quota units (or refuse it as Gmail would), count it in flight,
and apply the injected fault for its method. Used by every Gmail route, batch inner calls included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.requests import Request

from mailtide.emulator.api_errors import (
    GmailApiError,
    backend_error,
    project_rate_limited,
    service_unavailable,
    too_many_concurrent,
    user_rate_limited,
)
from mailtide.emulator.fault_middleware import FAULT_SCOPE_KEY, WIRE_FAULTS
from mailtide.emulator.quota import QuotaRejection
from mailtide.emulator.state import EmulatorState

PREPAID_SCOPE_KEY = "mailtide.prepaid"  # an inner call of a batch, charged when the batch arrived


def rejection_error(state: EmulatorState, rejection: QuotaRejection) -> GmailApiError:
    style = state.quota.rejection_style
    if rejection.kind == "concurrency":
        return too_many_concurrent()
    if rejection.kind == "project":
        return project_rate_limited(style, rejection.retry_after)
    return user_rate_limited(style, rejection.retry_after, now=state.now())


@contextmanager
def admitted(state: EmulatorState, request: Request, email: str, method: str) -> Iterator[None]:
    prepaid = bool(request.scope.get(PREPAID_SCOPE_KEY))
    try:
        units = state.quota.admit(email, method, prepaid=prepaid)
    except QuotaRejection as rejection:
        state.counters.record_rejection(method, rejection.kind)
        raise rejection_error(state, rejection) from None
    if not prepaid:
        state.counters.charge(email, units, method)
    try:
        fault = state.faults.decide(method)
        if fault.latency:
            time.sleep(fault.latency)  # the Gmail routes run in a worker thread
        if fault.kind == "error500":
            raise backend_error()
        if fault.kind == "error503":
            raise service_unavailable()
        if fault.kind in WIRE_FAULTS:
            request.scope[FAULT_SCOPE_KEY] = fault.kind
        yield
    finally:
        state.quota.release(email)
