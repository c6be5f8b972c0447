"""Gmail notification payloads and Pub/Sub push envelopes, as Gmail and Pub/Sub actually send them."""

from __future__ import annotations

import base64
import json

import pytest

from mailtide.pubsub.notification import (
    GmailNotification,
    MalformedNotification,
    decode_base64,
    parse_notification,
    parse_push_body,
)

EMAIL = "user@example.com"


def encodings(data: bytes) -> list[str]:
    standard = base64.b64encode(data).decode()
    urlsafe = base64.urlsafe_b64encode(data).decode()
    return [standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")]


@pytest.mark.parametrize("history_id", [1234567, "1234567"])
def test_history_id_as_number_or_string(history_id: object) -> None:
    data = json.dumps({"emailAddress": EMAIL, "historyId": history_id}).encode()
    assert parse_notification(data) == GmailNotification(EMAIL, 1234567)


def test_every_base64_flavour_decodes_to_the_same_bytes() -> None:
    # Bytes chosen so the standard and URL-safe alphabets differ (+/ versus -_) and padding is needed.
    data = b'{"emailAddress":"a>b?@example.com","historyId":9}\xfb\xff\xfe'
    flavours = encodings(data)
    assert len(set(flavours)) == 4
    for text in flavours:
        assert decode_base64(text) == data


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"historyId": 5}).encode(), "emailAddress"),
        (json.dumps({"emailAddress": "nobody", "historyId": 5}).encode(), "emailAddress"),
        (json.dumps({"emailAddress": EMAIL}).encode(), "historyId"),
        (json.dumps({"emailAddress": EMAIL, "historyId": "12a"}).encode(), "historyId"),
        (json.dumps({"emailAddress": EMAIL, "historyId": -4}).encode(), "out of range"),
        (json.dumps({"emailAddress": EMAIL, "historyId": 0}).encode(), "out of range"),
        (json.dumps({"emailAddress": EMAIL, "historyId": 2**64}).encode(), "out of range"),
        (json.dumps({"emailAddress": EMAIL, "historyId": 1.5}).encode(), "historyId"),
        (json.dumps({"emailAddress": EMAIL, "historyId": True}).encode(), "historyId"),
        (b" " * 70_000, "tiny"),
    ],
)
def test_malformed_payloads_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedNotification, match=reason):
        parse_notification(payload)


@pytest.mark.parametrize("text", ["not base64!", "abcde", "ab=cd"])
def test_invalid_base64_is_malformed(text: str) -> None:
    with pytest.raises(MalformedNotification, match="base64"):
        decode_base64(text)


def test_push_envelope_in_both_spellings() -> None:
    data = json.dumps({"emailAddress": EMAIL, "historyId": 77}).encode()
    camel = {
        "message": {"data": base64.b64encode(data).decode(), "messageId": "m1", "publishTime": "2026-05-01T00:00:00Z",
                    "attributes": {"k": "v"}},
        "subscription": "projects/p/subscriptions/s",
    }
    snake = {"message": {"data": base64.urlsafe_b64encode(data).decode().rstrip("="), "message_id": "m1",
                         "publish_time": "2026-05-01T00:00:00Z"}}
    first = parse_push_body(json.dumps(camel).encode())
    second = parse_push_body(json.dumps(snake).encode())
    assert first.data == second.data == data
    assert first.message_id == second.message_id == "m1"
    assert first.publish_time == second.publish_time == "2026-05-01T00:00:00Z"
    assert first.subscription == "projects/p/subscriptions/s" and second.subscription is None
    assert first.attributes == {"k": "v"} and second.attributes == {}
    assert parse_notification(first.data) == GmailNotification(EMAIL, 77)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"message": "x"}', b'{"message": {}}', b'{"message": {"data": 5}}',
     b'{"message": {"data": "%%%"}}'],
)
def test_malformed_envelopes(body: bytes) -> None:
    with pytest.raises(MalformedNotification):
        parse_push_body(body)
