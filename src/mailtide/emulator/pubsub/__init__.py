"""The emulator's Pub/Sub: Gmail watch notifications, a broker with push and pull delivery, the
Pub/Sub gRPC API subset for google-cloud-pubsub (grpc_server, imported on demand: grpc is heavy) and an
OIDC signing key for push tokens."""

from mailtide.emulator.pubsub.broker import Broker, BrokerError, Delivery, PubSubMessage, PushTarget, Subscription
from mailtide.emulator.pubsub.faults import NotificationFaults
from mailtide.emulator.pubsub.gmail_watch import GmailNotifier, GmailWatch
from mailtide.emulator.pubsub.push import PushDeliverer, push_envelope
from mailtide.emulator.pubsub.service import EmulatorPubSub
from mailtide.emulator.pubsub.signing import GOOGLE_ISSUER, SigningKey

__all__ = [
    "GOOGLE_ISSUER",
    "Broker",
    "BrokerError",
    "Delivery",
    "EmulatorPubSub",
    "GmailNotifier",
    "GmailWatch",
    "NotificationFaults",
    "PubSubMessage",
    "PushDeliverer",
    "PushTarget",
    "SigningKey",
    "Subscription",
    "push_envelope",
]
