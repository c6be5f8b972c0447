"""HTTP routes of the emulator's Pub/Sub side: Gmail's users.watch / users.stop, the OIDC
certificate endpoints (Google's two shapes) and a small admin API under /_emulator/pubsub.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from mailtide.emulator.api_errors import GmailApiError, conflict, invalid_argument, not_found
from mailtide.emulator.errors import UnknownLabel
from mailtide.emulator.gmail_api import BASE, MailboxDep, emulator_state
from mailtide.emulator.pubsub.broker import AlreadyExists, BrokerError, InvalidArgument, NotFound, PushTarget
from mailtide.emulator.pubsub.faults import NotificationFaults
from mailtide.emulator.pubsub.service import EmulatorPubSub
from mailtide.emulator.state import EmulatorState

CERTS_MAX_AGE = 3600
PEM_CERTS_PATH = "/oauth2/v1/certs"
JWKS_CERTS_PATH = "/oauth2/v3/certs"

router = APIRouter()


def emulator_pubsub(state: Annotated[EmulatorState, Depends(emulator_state)]) -> EmulatorPubSub:
    return state.pubsub


PubSubDep = Annotated[EmulatorPubSub, Depends(emulator_pubsub)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WatchBody(_Body):
    topic_name: str = Field("", alias="topicName")
    label_ids: list[str] = Field(default_factory=list, alias="labelIds")
    label_filter_behavior: str | None = Field(None, alias="labelFilterBehavior")
    label_filter_action: str | None = Field(None, alias="labelFilterAction")  # deprecated spelling


def _broker_error(exc: BrokerError) -> GmailApiError:
    if isinstance(exc, NotFound):
        return not_found(str(exc))
    if isinstance(exc, AlreadyExists):
        return conflict(str(exc))
    return invalid_argument(str(exc))


# ------------------------------------------------------------------ Gmail
@router.post(BASE + "/watch", name="watch")
def watch(mailbox: MailboxDep, pubsub: PubSubDep, body: WatchBody) -> dict[str, Any]:
    behavior = (body.label_filter_behavior or body.label_filter_action or "include").lower()
    if behavior not in ("include", "exclude"):
        raise invalid_argument(f"Invalid value for labelFilterBehavior: {behavior!r} (use include or exclude)")
    try:
        label_ids = mailbox.check_label_ids(body.label_ids)
    except UnknownLabel as exc:
        raise invalid_argument(f"Invalid label: {exc}") from None
    try:
        created = pubsub.notifier.watch(
            mailbox.email,
            body.topic_name,
            label_ids=label_ids,
            behavior=behavior,  # type: ignore[arg-type]  # checked above
            history_id=mailbox.history_id,
        )
    except BrokerError as exc:
        raise _broker_error(exc) from None
    return {"historyId": str(mailbox.history_id), "expiration": str(int(created.expiration * 1000))}


@router.post(BASE + "/stop", name="stop", status_code=204)
def stop(mailbox: MailboxDep, pubsub: PubSubDep) -> Response:
    pubsub.notifier.stop(mailbox.email)
    return Response(status_code=204)


# ------------------------------------------------------------ certificates
def _cacheable(response: Response) -> None:
    response.headers["Cache-Control"] = f"public, max-age={CERTS_MAX_AGE}, must-revalidate, no-transform"


@router.get(PEM_CERTS_PATH, name="_emulator.certs.pem")
def pem_certificates(pubsub: PubSubDep, response: Response) -> dict[str, str]:
    _cacheable(response)
    return pubsub.signing_key.pem_certificates()


@router.get(JWKS_CERTS_PATH, name="_emulator.certs.jwks")
def jwk_set(pubsub: PubSubDep, response: Response) -> dict[str, Any]:
    _cacheable(response)
    return pubsub.signing_key.jwks()


# ------------------------------------------------------------------- admin
ADMIN = "/_emulator/pubsub"


class FaultsBody(_Body):
    drop_rate: float = Field(0.0, alias="dropRate")
    duplicate_rate: float = Field(0.0, alias="duplicateRate")
    delay_seconds: float = Field(0.0, alias="delaySeconds")
    reorder_rate: float = Field(0.0, alias="reorderRate")
    reorder_seconds: float = Field(1.0, alias="reorderSeconds")
    notification_interval_seconds: float | None = Field(None, alias="notificationIntervalSeconds", ge=0)


class TopicBody(_Body):
    name: str


class SubscriptionBody(_Body):
    name: str
    topic: str
    ack_deadline_seconds: float | None = Field(None, alias="ackDeadlineSeconds")
    push_endpoint: str | None = Field(None, alias="pushEndpoint")
    service_account_email: str | None = Field(None, alias="serviceAccountEmail")
    audience: str | None = None


@router.get(ADMIN, name="_emulator.pubsub.status")
def status(pubsub: PubSubDep) -> dict[str, Any]:
    broker = pubsub.broker
    subscriptions = {}
    for subscription in broker.subscriptions():
        ready, leased = broker.backlog(subscription.name)
        subscriptions[subscription.name] = {
            "topic": subscription.topic,
            "push": subscription.push.endpoint if subscription.push else None,
            "ready": ready,
            "leased": leased,
        }
    stats = pubsub.notifier.stats
    return {
        "topics": broker.topics(),
        "subscriptions": subscriptions,
        "faults": pubsub.notifier.faults.to_json(),
        "notificationIntervalSeconds": pubsub.notifier.interval,
        "notifications": {
            "notified": stats.notified,
            "coalesced": stats.coalesced,
            "dropped": stats.dropped,
            "duplicated": stats.duplicated,
            "published": stats.published,
        },
    }


@router.put(ADMIN + "/faults", name="_emulator.pubsub.faults")
def set_faults(pubsub: PubSubDep, body: FaultsBody) -> dict[str, Any]:
    try:
        faults = NotificationFaults(
            drop_rate=body.drop_rate,
            duplicate_rate=body.duplicate_rate,
            delay_seconds=body.delay_seconds,
            reorder_rate=body.reorder_rate,
            reorder_seconds=body.reorder_seconds,
        )
    except ValueError as exc:
        raise invalid_argument(str(exc)) from None
    pubsub.notifier.faults = faults
    if body.notification_interval_seconds is not None:
        pubsub.notifier.interval = body.notification_interval_seconds
    return faults.to_json()


@router.post(ADMIN + "/topics", name="_emulator.pubsub.topics.create")
def create_topic(pubsub: PubSubDep, body: TopicBody) -> dict[str, Any]:
    try:
        pubsub.broker.create_topic(body.name)
    except BrokerError as exc:
        raise _broker_error(exc) from None
    return {"name": body.name}


@router.post(ADMIN + "/subscriptions", name="_emulator.pubsub.subscriptions.create")
def create_subscription(pubsub: PubSubDep, body: SubscriptionBody) -> dict[str, Any]:
    push = None
    if body.push_endpoint:
        push = PushTarget(body.push_endpoint, body.service_account_email, body.audience)
    elif body.service_account_email or body.audience:
        raise _broker_error(InvalidArgument("serviceAccountEmail and audience need a pushEndpoint"))
    try:
        pubsub.broker.create_subscription(
            body.name, body.topic, ack_deadline_seconds=body.ack_deadline_seconds, push=push
        )
    except BrokerError as exc:
        raise _broker_error(exc) from None
    return {"name": body.name, "topic": body.topic, "pushEndpoint": body.push_endpoint}
