"""`mailtide emulator PATHS...`: the Gmail-compatible emulator with a mailbox loaded from files, Gmail's
quota enforced (a profile, custom numbers, a time scale) and faults injected on request.

It says how many messages each path gave, warns about paths that gave none and files that do not
look like mail, and refuses to serve an empty mailbox unless --allow-empty asks for one (a mistyped
path must not pass for a test fixture). Quota and faults can be changed while it runs:
PUT /_emulator/quota and PUT /_emulator/faults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from mailtide.commands import err_console

if TYPE_CHECKING:
    from mailtide.emulator.loader import CollectedMessages

console = Console()

QuotaName = Literal["gmail-2026", "gmail-legacy", "unlimited"]
WARNINGS_SHOWN_PER_PATH = 5  # a directory of 10,000 binaries must not flood the terminal


def emulator(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="mbox files, .eml directories or maildirs to serve.")
    ] = None,
    email: Annotated[str, typer.Option(help="The mailbox owner's address.")] = "me@mailtide.test",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8765,
    refresh_token: Annotated[str, typer.Option(help="Refresh token the emulator accepts.")] = "emulator-refresh-token",
    seed: Annotated[int, typer.Option(help="Seed for ids, history gaps and faults.")] = 1,
    quota_profile: Annotated[QuotaName, typer.Option(help="Gmail quota profile enforced.")] = "gmail-2026",
    quota_user_units: Annotated[
        int | None, typer.Option(min=1, help="Custom units per user per quota minute.")
    ] = None,
    quota_project_units: Annotated[
        int | None, typer.Option(min=1, help="Custom units per project per quota minute.")
    ] = None,
    quota_time_scale: Annotated[
        float, typer.Option(min=0.001, help="Speed up the quota clock: a quota minute lasts 60/scale s.")
    ] = 1.0,
    max_concurrent: Annotated[int | None, typer.Option(min=1, help="Requests in flight per user.")] = None,
    rejection: Annotated[
        Literal["429", "403"], typer.Option(help="Over quota: 429 rateLimitExceeded or 403 userRateLimitExceeded.")
    ] = "429",
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Fault rule [METHOD:]key=value,... with 500, 503, 5xx, reset, truncate (0.05 or 5%) and "
            "latency (20ms); repeatable; e.g. --fault '5xx=5%,reset=2%' --fault 'messages.get:latency=30ms'.",
        ),
    ] = None,
    push_drop: Annotated[float, typer.Option(min=0, max=1, help="Share of push notifications dropped.")] = 0.0,
    push_delay: Annotated[float, typer.Option(min=0, help="Seconds every push notification is held back.")] = 0.0,
    pubsub_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Serve the Pub/Sub gRPC API here (PUBSUB_EMULATOR_HOST).")
    ] = None,
    pubsub_topic: Annotated[
        list[str] | None, typer.Option(help="Create this topic (projects/P/topics/T) for users.watch; repeatable.")
    ] = None,
    allow_empty: Annotated[
        bool, typer.Option(help="Serve an empty mailbox when the paths hold no message (or none are given).")
    ] = False,
) -> None:
    """Run the Gmail-compatible emulator with a mailbox loaded from files."""
    from mailtide.emulator.admin_limits import fault_method_names
    from mailtide.emulator.faults import FaultSpecError, MethodFaults, check_fault_methods, parse_fault_spec
    from mailtide.emulator.loader import load_collected
    from mailtide.emulator.pubsub.faults import NotificationFaults
    from mailtide.emulator.server import serve_forever
    from mailtide.emulator.state import EmulatorState
    from mailtide.gmail.quota import quota_profile as make_profile

    paths = paths or []
    for path in paths:
        if not path.exists():
            err_console.print(f"[red]error:[/] {path} does not exist")
            raise typer.Exit(2)
    try:
        profile = make_profile(
            quota_profile,
            user_units_per_minute=quota_user_units,
            project_units_per_minute=quota_project_units,
            max_concurrent_per_user=max_concurrent,
            time_scale=quota_time_scale,
        )
        rules: dict[str, MethodFaults] = dict(parse_fault_spec(spec) for spec in fault or [])
        check_fault_methods(rules, fault_method_names())
    except (FaultSpecError, ValueError) as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    state = EmulatorState(seed=seed)
    try:
        mailbox = state.add_user(email, refresh_token=refresh_token)
    except ValueError as exc:  # --email that is no address, an empty --refresh-token ...
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    collected = _collect_and_report(paths)
    if not collected.items and not allow_empty:
        where = f" in {', '.join(map(str, paths))}" if paths else ""
        err_console.print(
            f"[red]error:[/] no message to serve{escape(where)}; give mbox files, .eml directories or "
            "maildirs, or --allow-empty to serve an empty mailbox"
        )
        raise typer.Exit(2)
    load_collected(mailbox, collected)
    state.set_quota_profile(profile, rejection_style=rejection)
    state.faults.configure(rules, seed=seed)
    if push_drop or push_delay:
        state.pubsub.notifier.faults = NotificationFaults(drop_rate=push_drop, delay_seconds=push_delay)
    console.print(
        f"emulator: {email} on http://{host}:{port} (token endpoint /token, refresh token {refresh_token!r}, "
        "client id 'mailtide-demo', secret 'demo-secret'); Ctrl-C stops"
    )
    for topic in pubsub_topic or []:
        state.pubsub.broker.ensure_topic(topic)
    grpc_server = None
    if pubsub_port is not None:
        from mailtide.emulator.pubsub.grpc_server import PubSubGrpcServer

        grpc_server = PubSubGrpcServer(state.pubsub.broker, host=host, port=pubsub_port).start()
        topics = ", ".join(state.pubsub.broker.topics()) or "none yet"
        console.print(f"pubsub: gRPC on {grpc_server.address} (PUBSUB_EMULATOR_HOST); topics: {topics}")
    console.print(f"quota: {profile.describe()}, over quota {rejection}")
    for method, rule in sorted(rules.items()):
        console.print(f"faults {method}: {rule.to_json()}")
    try:
        asyncio.run(serve_forever(state, host=host, port=port))
    finally:
        if grpc_server is not None:
            grpc_server.stop()
        state.pubsub.close()


def _collect_and_report(paths: Sequence[Path]) -> CollectedMessages:
    """Read every path, saying what each gave; warn about empty paths and files that are not mail."""
    from mailtide.emulator.loader import CollectedMessages, collect_path

    collected = CollectedMessages()
    for path in paths:
        found = collect_path(path)
        count = len(found.items)
        console.print(f"loaded {count} message{'' if count == 1 else 's'} from {escape(str(path))}")
        if not count:
            _warn(f"{path} holds no message")
        _warn_each(found.skipped, "left out")
        _warn_each(found.doubtful, "loaded, but it does not look like mail")
        collected.extend(found)
    return collected


def _warn_each(problems: Sequence[tuple[str, str]], what: str) -> None:
    for file_path, reason in problems[:WARNINGS_SHOWN_PER_PATH]:
        _warn(f"{file_path} {what}: {reason}")
    if len(problems) > WARNINGS_SHOWN_PER_PATH:
        _warn(f"... and {len(problems) - WARNINGS_SHOWN_PER_PATH} more files {what}")


def _warn(text: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(text)}")
