"""Conformance with Google's own client: the official google-api-python-client Gmail service, built from
the discovery document the package ships, pointed at the emulator. Every answer is validated against
the discovery document's schemas (converted to JSON Schema, unknown fields refused), and every field
Gmail sends as a string (ids, historyId, internalDate, expiration) must be one.

A mismatch here means the emulator and Gmail disagree, so passing against the emulator would mean less.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import googleapiclient
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError
from jsonschema import Draft7Validator

from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState, Mailbox

DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "gmail.v1.json"
MIME_SAMPLES = Path(__file__).parents[1] / "data" / "mime"
EMAIL = "conformance@mailtide.test"
CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = "conformance-client", "conformance-secret", "1//conformance-refresh"
TOPIC = "projects/mailtide-test/topics/gmail"
NUMERIC_FORMATS = {"int64", "uint64", "int32", "uint32"}


def discovery() -> dict[str, Any]:
    return json.loads(DISCOVERY.read_text())


def to_json_schema(node: Any) -> Any:
    """A discovery schema as JSON Schema: $ref by name -> #/definitions/name; objects with declared
    properties accept no other field; numeric strings (format int64/uint64) must be digits."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": f"#/definitions/{node['$ref']}"}
    schema: dict[str, Any] = {}
    if node.get("type") not in (None, "any"):
        schema["type"] = node["type"]
    if "enum" in node:
        schema["enum"] = node["enum"]
    if node.get("type") == "string" and node.get("format") in NUMERIC_FORMATS:
        schema["pattern"] = r"^-?[0-9]+$"
    if "items" in node:
        schema["items"] = to_json_schema(node["items"])
    if "properties" in node:
        schema["properties"] = {name: to_json_schema(prop) for name, prop in node["properties"].items()}
        schema["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        schema["additionalProperties"] = to_json_schema(node["additionalProperties"])
    return schema


class Schemas:
    def __init__(self) -> None:
        definitions = {name: to_json_schema(schema) for name, schema in discovery()["schemas"].items()}
        self._definitions = definitions

    def check(self, name: str, instance: Any) -> None:
        validator = Draft7Validator({"$ref": f"#/definitions/{name}", "definitions": self._definitions})
        problems = [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)
        ]
        assert not problems, f"{name} does not match the discovery document:\n" + "\n".join(problems[:10])


def strings_where_gmail_sends_strings(message: dict[str, Any]) -> None:
    for key in ("id", "threadId", "historyId", "internalDate"):
        if key in message:
            assert isinstance(message[key], str), f"{key} must be a string, got {message[key]!r}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[EmulatorState, Mailbox, EmulatorServer]]:
    state = EmulatorState(seed=99)
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    for sample in sorted(MIME_SAMPLES.glob("*.eml")):
        mailbox.add_message(sample.read_bytes(), label_ids=["INBOX", "UNREAD"])
    mailbox.create_label("Receipts")
    state.pubsub.broker.create_topic(TOPIC)
    with EmulatorServer(state) as server:
        yield state, mailbox, server


@pytest.fixture(scope="module")
def gmail(emulator: tuple[EmulatorState, Mailbox, EmulatorServer]) -> Any:
    """The official client: the bundled discovery document with the emulator as its root (which also moves
    batch requests: they go to rootUrl + batchPath), and credentials refreshed at the emulator's token URI."""
    _, _, server = emulator
    document = discovery()
    root = server.url + "/"
    document.update(rootUrl=root, baseUrl=root, mtlsRootUrl=root)
    credentials = Credentials(
        token=None,
        refresh_token=REFRESH_TOKEN,
        token_uri=server.token_url,  # passed here: from_authorized_user_info would ignore it (GMAIL_FACTS)
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    return build_from_document(document, credentials=credentials)


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas()


def test_get_profile(gmail: Any, schemas: Schemas, emulator) -> None:
    _, mailbox, _ = emulator
    profile = gmail.users().getProfile(userId="me").execute()
    schemas.check("Profile", profile)
    assert profile["emailAddress"] == EMAIL
    assert profile["historyId"] == str(mailbox.history_id)
    assert profile["messagesTotal"] == len(mailbox.message_ids())


def test_labels_list(gmail: Any, schemas: Schemas) -> None:
    listed = gmail.users().labels().list(userId="me").execute()
    schemas.check("ListLabelsResponse", listed)
    by_name = {label["name"]: label for label in listed["labels"]}
    assert by_name["INBOX"]["type"] == "system" and by_name["Receipts"]["type"] == "user"


def test_messages_list_pages(gmail: Any, schemas: Schemas, emulator) -> None:
    _, mailbox, _ = emulator
    seen: list[str] = []
    request = gmail.users().messages().list(userId="me", maxResults=7)
    while request is not None:
        page = request.execute()
        schemas.check("ListMessagesResponse", page)
        assert isinstance(page["resultSizeEstimate"], int)
        seen += [m["id"] for m in page.get("messages", [])]
        request = gmail.users().messages().list_next(request, page)
    assert sorted(seen) == sorted(mailbox.message_ids())


@pytest.mark.parametrize("fmt", ["minimal", "full", "raw", "metadata"])
def test_messages_get_in_every_format(gmail: Any, schemas: Schemas, emulator, fmt: str) -> None:
    _, mailbox, _ = emulator
    for message_id in mailbox.message_ids():
        message = gmail.users().messages().get(userId="me", id=message_id, format=fmt).execute()
        schemas.check("Message", message)
        strings_where_gmail_sends_strings(message)
        assert message["id"] == message_id
        if fmt == "raw":
            assert base64.urlsafe_b64decode(message["raw"] + "==") == mailbox.get_message(message_id).raw
        if fmt in ("full", "metadata"):
            assert any(header["name"].lower() == "from" for header in message["payload"]["headers"])
        if fmt == "minimal":
            assert "payload" not in message and "raw" not in message


def test_attachments_of_a_full_message_validate(gmail: Any, schemas: Schemas, emulator) -> None:
    _, mailbox, _ = emulator
    fetched = 0
    for message_id in mailbox.message_ids():
        stack = [gmail.users().messages().get(userId="me", id=message_id, format="full").execute()["payload"]]
        while stack:
            part = stack.pop()
            stack += part.get("parts", [])
            attachment_id = part["body"].get("attachmentId")
            if attachment_id:
                body = gmail.users().messages().attachments().get(userId="me", messageId=message_id, id=attachment_id)
                answer = body.execute()
                schemas.check("MessagePartBody", answer)
                assert answer["size"] == part["body"]["size"]
                fetched += 1
    assert fetched > 0


def test_history_list(gmail: Any, schemas: Schemas, emulator) -> None:
    _, mailbox, _ = emulator
    start = mailbox.history_id
    ids = sorted(mailbox.message_ids())
    mailbox.modify_labels(ids[0], add=["STARRED"])
    mailbox.delete_message(ids[1])
    added = mailbox.add_message((MIME_SAMPLES / "nodemailer--nested.eml").read_bytes())
    history = gmail.users().history().list(userId="me", startHistoryId=str(start)).execute()
    schemas.check("ListHistoryResponse", history)
    assert history["historyId"] == str(mailbox.history_id)
    kinds = {kind for record in history["history"] for kind in record if kind not in ("id", "messages")}
    assert kinds == {"labelsAdded", "messagesDeleted", "messagesAdded"}
    assert all(isinstance(record["id"], str) for record in history["history"])
    assert added in {m["message"]["id"] for r in history["history"] for m in r.get("messagesAdded", [])}
    quiet = gmail.users().history().list(userId="me", startHistoryId=history["historyId"]).execute()
    assert quiet == {"historyId": history["historyId"]}
    with pytest.raises(HttpError) as expired:
        mailbox.expire_history()
        gmail.users().history().list(userId="me", startHistoryId=str(start)).execute()
    assert expired.value.status_code == 404


def test_threads_get(gmail: Any, schemas: Schemas, emulator) -> None:
    _, mailbox, _ = emulator
    message = mailbox.get_message(sorted(mailbox.message_ids())[0])
    thread = gmail.users().threads().get(userId="me", id=message.thread_id).execute()
    schemas.check("Thread", thread)
    assert isinstance(thread["historyId"], str)
    for item in thread["messages"]:
        strings_where_gmail_sends_strings(item)


def test_watch_and_stop(gmail: Any, schemas: Schemas, emulator) -> None:
    _, mailbox, _ = emulator
    watched = gmail.users().watch(userId="me", body={"topicName": TOPIC, "labelIds": ["INBOX"]}).execute()
    schemas.check("WatchResponse", watched)
    assert watched["historyId"] == str(mailbox.history_id) and watched["expiration"].isdigit()
    assert gmail.users().stop(userId="me").execute() in ("", {}, None)


def test_a_batch_request(gmail: Any, schemas: Schemas, emulator) -> None:
    state, mailbox, _ = emulator
    ids = sorted(mailbox.message_ids())[:5]
    answers: dict[str, Any] = {}
    errors: dict[str, HttpError] = {}

    def remember(request_id: str, response: Any, exception: HttpError | None) -> None:
        if exception is not None:
            errors[request_id] = exception
        else:
            answers[request_id] = response

    batch = gmail.new_batch_http_request(callback=remember)
    for message_id in [*ids, "ffffffffffffffff"]:
        batch.add(gmail.users().messages().get(userId="me", id=message_id, format="metadata"), request_id=message_id)
    batches_before = state.counters.requests("batch")
    batch.execute()
    assert state.counters.requests("batch") == batches_before + 1  # one HTTP request, to {root}batch
    assert sorted(answers) == ids
    for message_id, message in answers.items():
        schemas.check("Message", message)
        assert message["id"] == message_id
    assert errors["ffffffffffffffff"].status_code == 404
