"""Admin API for Gmail realism: the quota profile in force and the injected faults.

GET/PUT /_emulator/quota   {"profile": "gmail-2026", "userUnitsPerMinute": ..., "projectUnitsPerMinute": ...,
                            "maxConcurrentPerUser": ..., "costs": {...}, "timeScale": 10,
                            "rejectionStyle": "429" | "403", "batchParallelism": 1, "resetUsage": true}
GET/PUT /_emulator/faults  {"seed": 1, "methods": {"*": {"error500": 0.05, "reset": 0.02, "latencyMs": 5}},
                            "notifications": {"drop_rate": 0.1, "delay_seconds": 2}}
                           (a method that is not a Gmail method of the emulator answers 400, naming them)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from mailtide.emulator import batch, gmail_api
from mailtide.emulator.api_errors import invalid_argument
from mailtide.emulator.faults import FaultSpecError, MethodFaults, check_fault_methods
from mailtide.emulator.gmail_api import emulator_state
from mailtide.emulator.pubsub import http_api as pubsub_api
from mailtide.emulator.pubsub.faults import NotificationFaults
from mailtide.emulator.state import EmulatorState
from mailtide.gmail.quota import quota_profile

router = APIRouter(prefix="/_emulator")
StateDep = Annotated[EmulatorState, Depends(emulator_state)]


class QuotaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    profile: str | None = None
    user_units_per_minute: int | None = Field(None, alias="userUnitsPerMinute", ge=1)
    project_units_per_minute: int | None = Field(None, alias="projectUnitsPerMinute", ge=1)
    max_concurrent_per_user: int | None = Field(None, alias="maxConcurrentPerUser", ge=1)
    costs: dict[str, int] | None = None
    time_scale: float = Field(1.0, alias="timeScale", gt=0)
    rejection_style: Literal["429", "403"] | None = Field(None, alias="rejectionStyle")
    batch_parallelism: int | None = Field(None, alias="batchParallelism", ge=1, le=100)
    reset_usage: bool = Field(False, alias="resetUsage")


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    methods: dict[str, dict[str, float]] = Field(default_factory=dict)
    notifications: dict[str, float] | None = None


def fault_method_names() -> list[str]:
    """The Gmail methods a fault rule can name: every route admitted as a Gmail call, and the batch."""
    names = {route.name for route in batch.router.routes if isinstance(route, APIRoute)}
    for route in (*gmail_api.router.routes, *pubsub_api.router.routes):
        if isinstance(route, APIRoute) and _depends_on(route.dependant, gmail_api.user_mailbox):
            names.add(route.name)
    return sorted(names)


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return dependant.call is call or any(_depends_on(sub, call) for sub in dependant.dependencies)


def quota_json(state: EmulatorState) -> dict[str, Any]:
    return {
        "profile": state.quota.profile.to_json(),
        "rejectionStyle": state.quota.rejection_style,
        "batchParallelism": state.batch_parallelism,
    }


def faults_json(state: EmulatorState) -> dict[str, Any]:
    return {**state.faults.to_json(), "notifications": state.pubsub.notifier.faults.to_json()}


@router.get("/quota", name="_emulator.quota")
def get_quota(state: StateDep) -> dict[str, Any]:
    return quota_json(state)


@router.put("/quota", name="_emulator.quota.set")
def set_quota(state: StateDep, body: QuotaSettings) -> dict[str, Any]:
    name = body.profile or state.quota.profile.name.removesuffix(" (custom)")
    try:
        profile = quota_profile(
            name,
            user_units_per_minute=body.user_units_per_minute,
            project_units_per_minute=body.project_units_per_minute,
            max_concurrent_per_user=body.max_concurrent_per_user,
            costs=body.costs,
            time_scale=body.time_scale,
        )
    except ValueError as exc:
        raise invalid_argument(str(exc)) from None
    state.set_quota_profile(profile, rejection_style=body.rejection_style)
    if body.batch_parallelism is not None:
        state.batch_parallelism = body.batch_parallelism
    if body.reset_usage:
        state.quota.reset()
    return quota_json(state)


@router.get("/faults", name="_emulator.faults")
def get_faults(state: StateDep) -> dict[str, Any]:
    return faults_json(state)


@router.put("/faults", name="_emulator.faults.set")
def set_faults(state: StateDep, body: FaultSettings) -> dict[str, Any]:
    """Replace every Gmail fault rule (and, when given, the push-notification faults)."""
    try:
        check_fault_methods(body.methods, fault_method_names())
        rules = {method: MethodFaults.from_json(values) for method, values in body.methods.items()}
        notifications = NotificationFaults(**body.notifications) if body.notifications is not None else None
    except (FaultSpecError, TypeError, ValueError) as exc:
        raise invalid_argument(f"Invalid faults: {exc}") from None
    state.faults.configure(rules, seed=body.seed)
    if notifications is not None:
        state.pubsub.notifier.faults = notifications
    return faults_json(state)
