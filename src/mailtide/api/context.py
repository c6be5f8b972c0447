"""What the routes reach through the request: the runtime and a probe of the worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from mailtide.config import Settings
from mailtide.runtime import Runtime

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


@dataclass
class ApiContext:
    runtime: Runtime
    settings: Settings
    worker_running: Callable[[], bool] | None  # None: no worker in this process


def api_context(request: Request) -> ApiContext:
    return request.app.state.mailtide  # type: ignore[no-any-return]


Ctx = Annotated[ApiContext, Depends(api_context)]
