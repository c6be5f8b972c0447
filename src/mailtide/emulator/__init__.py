"""mailtide's Gmail-compatible emulator: mailbox model with history, search, REST app, server.

It shares no code with the client side (no sync/store/queue/gmail.client imports).
"""

from mailtide.emulator.app import create_app
from mailtide.emulator.counters import QUOTA_PROFILES, RequestCounters
from mailtide.emulator.errors import (
    DuplicateUser,
    EmulatorError,
    HistoryExpired,
    InvalidAccessToken,
    LabelExists,
    OAuthError,
    UnknownLabel,
    UnknownMessage,
    UnknownUser,
)
from mailtide.emulator.faults import FaultInjector, MethodFaults, parse_fault_spec
from mailtide.emulator.history import HistoryRecord, HistoryRetention
from mailtide.emulator.labels import SYSTEM_LABEL_IDS, Label
from mailtide.emulator.loader import LoadReport
from mailtide.emulator.mailbox import Mailbox, NewMessage
from mailtide.emulator.message import MessageSnapshot
from mailtide.emulator.quota import QuotaEnforcer
from mailtide.emulator.search import Query, QueryError, parse_query
from mailtide.emulator.server import (
    DEFAULT_EMAIL,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EmulatorServer,
    build_state_from_paths,
    serve_forever,
)
from mailtide.emulator.state import EmulatorState, UserCredentials

__all__ = [
    "DEFAULT_EMAIL",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "QUOTA_PROFILES",
    "SYSTEM_LABEL_IDS",
    "DuplicateUser",
    "EmulatorError",
    "EmulatorServer",
    "EmulatorState",
    "FaultInjector",
    "HistoryExpired",
    "HistoryRecord",
    "HistoryRetention",
    "InvalidAccessToken",
    "Label",
    "LabelExists",
    "LoadReport",
    "Mailbox",
    "MessageSnapshot",
    "MethodFaults",
    "NewMessage",
    "OAuthError",
    "Query",
    "QueryError",
    "QuotaEnforcer",
    "RequestCounters",
    "UnknownLabel",
    "UnknownMessage",
    "UnknownUser",
    "UserCredentials",
    "build_state_from_paths",
    "create_app",
    "parse_fault_spec",
    "parse_query",
    "serve_forever",
]
