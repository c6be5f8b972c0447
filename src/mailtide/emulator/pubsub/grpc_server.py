"""The Pub/Sub gRPC API subset the emulator serves, so google-cloud-pubsub works against it
(PUBSUB_EMULATOR_HOST=host:port): topics, subscriptions, publish, pull, streaming pull, acknowledge
and modify ack deadline. Built from grpcio generic handlers and the google.pubsub_v1 message types.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2
from google.pubsub_v1 import types as pubsub_types

from mailtide.emulator.pubsub.broker import Broker, BrokerError, Delivery, PushTarget, Subscription

logger = logging.getLogger(__name__)

PUBLISHER = "google.pubsub.v1.Publisher"
SUBSCRIBER = "google.pubsub.v1.Subscriber"
UNARY_PULL_WAIT = 2.0  # seconds a unary Pull waits for the first message
STREAM_PULL_WAIT = 0.25  # how often a streaming pull re-checks that its client is still there
DEFAULT_MAX_OUTSTANDING = 1000
MAX_MESSAGES_PER_RESPONSE = 1000

# The raw protobuf classes behind the proto-plus types (FromString / SerializeToString).
Topic = pubsub_types.Topic.pb()
Subscription_ = pubsub_types.Subscription.pb()
PushConfig = pubsub_types.PushConfig.pb()
PubsubMessage = pubsub_types.PubsubMessage.pb()
ReceivedMessage = pubsub_types.ReceivedMessage.pb()
Empty = empty_pb2.Empty


def _pb(name: str) -> Any:
    return getattr(pubsub_types, name).pb()


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _status(exc: BrokerError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL)


def _unary(function: Callable[[Any], Any], request: str, response: Any) -> grpc.RpcMethodHandler:
    def handle(message: Any, context: grpc.ServicerContext) -> Any:
        try:
            return function(message)
        except BrokerError as exc:
            context.abort(_status(exc), str(exc))
        except _Abort as exc:
            context.abort(exc.code, exc.message)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=_pb(request).FromString, response_serializer=response.SerializeToString
    )


def _timestamp(epoch: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


def _seconds(message: Any, field: str) -> float | None:
    """A Duration field in seconds, or None when it is not set."""
    return getattr(message, field).ToTimedelta().total_seconds() if message.HasField(field) else None


def _received(delivery: Delivery) -> Any:
    message = delivery.message
    return ReceivedMessage(
        ack_id=delivery.ack_id,
        message=PubsubMessage(
            data=message.data,
            attributes=dict(message.attributes),
            message_id=message.message_id,
            publish_time=_timestamp(message.publish_time),
        ),
    )


def _subscription_json(subscription: Subscription) -> Any:
    result = Subscription_(
        name=subscription.name, topic=subscription.topic, ack_deadline_seconds=int(subscription.ack_deadline_seconds)
    )
    if subscription.push is not None:
        result.push_config.push_endpoint = subscription.push.endpoint
        if subscription.push.service_account_email:
            result.push_config.oidc_token.service_account_email = subscription.push.service_account_email
            result.push_config.oidc_token.audience = subscription.push.audience or ""
    return result


class _Stream:
    """What one streaming pull has leased and not yet settled, for its flow control."""

    def __init__(self, ack_deadline: float, max_outstanding: int) -> None:
        self.ack_deadline = ack_deadline
        self.max_outstanding = max_outstanding
        self.ack_ids: set[str] = set()
        self.lock = threading.Lock()


class PubSubService:
    """The RPC implementations over a Broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        publisher = {
            "CreateTopic": _unary(self.create_topic, "Topic", Topic),
            "GetTopic": _unary(self.get_topic, "GetTopicRequest", Topic),
            "DeleteTopic": _unary(self.delete_topic, "DeleteTopicRequest", Empty),
            "ListTopics": _unary(self.list_topics, "ListTopicsRequest", _pb("ListTopicsResponse")),
            "Publish": _unary(self.publish, "PublishRequest", _pb("PublishResponse")),
        }
        subscriber = {
            "CreateSubscription": _unary(self.create_subscription, "Subscription", Subscription_),
            "GetSubscription": _unary(self.get_subscription, "GetSubscriptionRequest", Subscription_),
            "DeleteSubscription": _unary(self.delete_subscription, "DeleteSubscriptionRequest", Empty),
            "ListSubscriptions": _unary(
                self.list_subscriptions, "ListSubscriptionsRequest", _pb("ListSubscriptionsResponse")
            ),
            "Pull": _unary(self.pull, "PullRequest", _pb("PullResponse")),
            "Acknowledge": _unary(self.acknowledge, "AcknowledgeRequest", Empty),
            "ModifyAckDeadline": _unary(self.modify_ack_deadline, "ModifyAckDeadlineRequest", Empty),
            "StreamingPull": grpc.stream_stream_rpc_method_handler(
                self.streaming_pull,
                request_deserializer=_pb("StreamingPullRequest").FromString,
                response_serializer=_pb("StreamingPullResponse").SerializeToString,
            ),
        }
        return [
            grpc.method_handlers_generic_handler(PUBLISHER, publisher),
            grpc.method_handlers_generic_handler(SUBSCRIBER, subscriber),
        ]

    # ------------------------------------------------------------------ topics
    def create_topic(self, request: Any) -> Any:
        self.broker.create_topic(request.name)
        return Topic(name=request.name)

    def get_topic(self, request: Any) -> Any:
        if not self.broker.has_topic(request.topic):
            raise _Abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
        return Topic(name=request.topic)

    def delete_topic(self, request: Any) -> Any:
        self.broker.delete_topic(request.topic)
        return Empty()

    def list_topics(self, request: Any) -> Any:
        prefix = f"{request.project}/topics/"
        names = [name for name in self.broker.topics() if name.startswith(prefix)]
        return _pb("ListTopicsResponse")(topics=[Topic(name=name) for name in names])

    def publish(self, request: Any) -> Any:
        if not request.messages:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "No messages to publish")
        ids = self.broker.publish(request.topic, [(m.data, dict(m.attributes)) for m in request.messages])
        return _pb("PublishResponse")(message_ids=ids)

    # ----------------------------------------------------------- subscriptions
    def create_subscription(self, request: Any) -> Any:
        push = None
        if request.push_config.push_endpoint:
            oidc = request.push_config.oidc_token
            push = PushTarget(
                request.push_config.push_endpoint,
                service_account_email=oidc.service_account_email or None,
                audience=oidc.audience or None,
            )
        retry = request.retry_policy
        subscription = self.broker.create_subscription(
            request.name,
            request.topic,
            ack_deadline_seconds=request.ack_deadline_seconds or None,
            push=push,
            min_backoff=_seconds(retry, "minimum_backoff"),
            max_backoff=_seconds(retry, "maximum_backoff"),
        )
        return _subscription_json(subscription)

    def get_subscription(self, request: Any) -> Any:
        return _subscription_json(self.broker.subscription(request.subscription))

    def delete_subscription(self, request: Any) -> Any:
        self.broker.delete_subscription(request.subscription)
        return Empty()

    def list_subscriptions(self, request: Any) -> Any:
        prefix = f"{request.project}/subscriptions/"
        found = [_subscription_json(s) for s in self.broker.subscriptions() if s.name.startswith(prefix)]
        return _pb("ListSubscriptionsResponse")(subscriptions=found)

    # -------------------------------------------------------------------- pull
    def pull(self, request: Any) -> Any:
        self._check_pullable(request.subscription)
        deliveries = self.broker.pull(request.subscription, request.max_messages or 1, wait=UNARY_PULL_WAIT)
        return _pb("PullResponse")(received_messages=[_received(d) for d in deliveries])

    def acknowledge(self, request: Any) -> Any:
        self.broker.acknowledge(request.subscription, request.ack_ids)
        return Empty()

    def modify_ack_deadline(self, request: Any) -> Any:
        self.broker.modify_ack_deadline(request.subscription, request.ack_ids, request.ack_deadline_seconds)
        return Empty()

    def streaming_pull(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            first = next(requests)
        except StopIteration:
            return
        name = first.subscription
        try:
            subscription = self._check_pullable(name)
        except BrokerError as exc:
            context.abort(_status(exc), str(exc))
        except _Abort as exc:
            context.abort(exc.code, exc.message)
        stream = _Stream(
            float(first.stream_ack_deadline_seconds or subscription.ack_deadline_seconds),
            first.max_outstanding_messages or DEFAULT_MAX_OUTSTANDING,
        )
        closed = threading.Event()

        def close() -> None:
            closed.set()
            self.broker.wake_all()

        def read_requests() -> None:
            try:
                self._apply_stream_request(name, first, stream)
                for request in requests:
                    self._apply_stream_request(name, request, stream)
            except Exception as exc:  # the client went away (grpc raises on cancel) or sent nonsense
                logger.debug("emulator.pubsub.stream_reader_ended subscription=%s error=%s", name, exc)
            finally:
                close()

        context.add_callback(close)
        threading.Thread(target=read_requests, name="mailtide-emulator-pull-reader", daemon=True).start()
        logger.info("emulator.pubsub.stream_opened subscription=%s client=%s", name, first.client_id)
        while not closed.is_set() and context.is_active():
            room = self._room(name, stream)
            if room <= 0:
                closed.wait(0.05)
                continue
            try:
                deliveries = self.broker.pull(
                    name, min(room, MAX_MESSAGES_PER_RESPONSE), wait=STREAM_PULL_WAIT, ack_deadline=stream.ack_deadline
                )
            except BrokerError as exc:
                context.abort(_status(exc), str(exc))
            if not deliveries:
                continue
            with stream.lock:
                stream.ack_ids.update(d.ack_id for d in deliveries)
            yield _pb("StreamingPullResponse")(received_messages=[_received(d) for d in deliveries])
        logger.info("emulator.pubsub.stream_closed subscription=%s", name)

    def _apply_stream_request(self, name: str, request: Any, stream: _Stream) -> None:
        if request.ack_ids:
            self.broker.acknowledge(name, request.ack_ids)
        if request.modify_deadline_ack_ids:
            for ack_id, seconds in zip(request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=False):
                self.broker.modify_ack_deadline(name, [ack_id], seconds)
        if request.stream_ack_deadline_seconds:
            stream.ack_deadline = float(request.stream_ack_deadline_seconds)

    def _room(self, name: str, stream: _Stream) -> int:
        with stream.lock:
            stream.ack_ids = self.broker.still_leased(name, stream.ack_ids)
            return stream.max_outstanding - len(stream.ack_ids)

    def _check_pullable(self, name: str) -> Subscription:
        subscription = self.broker.subscription(name)
        if subscription.push is not None:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} is a push subscription")
        return subscription


class PubSubGrpcServer:
    """The gRPC server on a loopback port (0 = any free port); `address` is what PUBSUB_EMULATOR_HOST takes."""

    def __init__(self, broker: Broker, host: str = "127.0.0.1", port: int = 0, *, max_workers: int = 32) -> None:
        self.service = PubSubService(broker)
        self._host = host
        self._port = port
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("the Pub/Sub gRPC server is not started")
        return f"{self._host}:{self.port}"

    def start(self) -> PubSubGrpcServer:
        server = grpc.server(
            futures.ThreadPoolExecutor(self._max_workers, thread_name_prefix="mailtide-emulator-grpc"),
            handlers=self.service.handlers(),
        )
        port = server.add_insecure_port(f"{self._host}:{self._port}")
        if port == 0:
            raise RuntimeError(f"cannot bind the Pub/Sub gRPC server to {self._host}:{self._port}")
        server.start()
        self._server, self.port = server, port
        logger.info("emulator.pubsub.grpc_started address=%s", self.address)
        return self

    def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            self.service.broker.wake_all()
            self._server.stop(grace).wait(grace + 5)
            self._server = None

    def __enter__(self) -> PubSubGrpcServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
