"""`mailtide emulator PATHS...`: the Gmail-compatible emulator with a mailbox loaded from files, Gmail's
quota enforced (a profile, custom numbers, a time scale) and faults injected on request.

Everything set here can be changed while it runs: PUT /_emulator/quota and PUT /_emulator/faults.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from mailtide.commands import err_console

console = Console()

QuotaName = Literal["gmail-2026", "gmail-legacy", "unlimited"]


def emulator(
    paths: Annotated[list[Path], typer.Argument(help="mbox files, .eml directories or maildirs to serve.")],
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
) -> None:
    """Run the Gmail-compatible emulator with a mailbox loaded from files."""
    from mailtide.emulator.faults import FaultSpecError, MethodFaults, parse_fault_spec
    from mailtide.emulator.pubsub.faults import NotificationFaults
    from mailtide.emulator.server import build_state_from_paths, serve_forever
    from mailtide.gmail.quota import quota_profile as make_profile

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
    except (FaultSpecError, ValueError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    state = build_state_from_paths(paths, email=email, seed=seed, refresh_token=refresh_token)
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
