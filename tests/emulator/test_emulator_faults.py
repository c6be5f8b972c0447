"""Seedable faults per method: 500/503, a reset mid-body, truncated JSON, latency; set by API and CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from limits_kit import private_emulator
from typer.testing import CliRunner

from mailtide.cli import app
from mailtide.emulator.faults import FaultInjector, FaultSpecError, MethodFaults, parse_fault_spec


def test_fault_rules_from_text() -> None:
    assert parse_fault_spec("5xx=5%,reset=0.02") == ("*", MethodFaults(error500=0.025, error503=0.025, reset=0.02))
    method, rule = parse_fault_spec("messages.get: 500=0.1, truncate=1%, latency=20ms")
    assert method == "messages.get"
    assert rule == MethodFaults(error500=0.1, truncate=0.01, latency=0.02)
    assert parse_fault_spec("history.list:latency=0.5s")[1].latency == 0.5
    for bad, fragment in [
        ("boom=1", "unknown fault"),
        ("500", "key=value"),
        ("500=lots", "not a probability"),
        ("500=0.7,503=0.7", "more than 1"),
        ("latency=soon", "not a duration"),
        ("messages.get:", "names no fault"),
    ]:
        with pytest.raises(FaultSpecError, match=fragment):
            parse_fault_spec(bad)


def test_decisions_are_reproducible_with_a_seed() -> None:
    rules = {"*": MethodFaults(error500=0.3, reset=0.2), "history.list": MethodFaults(error503=1.0)}
    runs = []
    for _ in range(2):
        injector = FaultInjector(seed=42)
        injector.configure(rules)
        runs.append([injector.decide("messages.get").kind for _ in range(200)])
    assert runs[0] == runs[1]
    assert 40 < runs[0].count("error500") < 80 and 20 < runs[0].count("reset") < 60
    assert injector.decide("history.list").kind == "error503"
    assert injector.to_json()["injected"]["history.list"] == {"error503": 1}


def test_server_errors_in_gmails_shape() -> None:
    with private_emulator() as emu:
        emu.state.faults.configure(
            {"getProfile": MethodFaults(error500=1.0), "labels.list": MethodFaults(error503=1.0)}
        )
        failed = emu.api.get("/profile")
        assert failed.status_code == 500
        assert failed.json()["error"]["errors"][0]["reason"] == "backendError"
        unavailable = emu.api.get("/labels")
        assert unavailable.status_code == 503 and unavailable.json()["error"]["status"] == "UNAVAILABLE"
        assert emu.api.get("/messages").status_code == 200  # no rule, no default: untouched


def test_truncated_json_and_a_reset_mid_body() -> None:
    with private_emulator() as emu:
        emu.fill(3)
        whole = emu.api.get("/messages").content
        emu.state.faults.configure({"messages.list": MethodFaults(truncate=1.0)})
        cut = emu.api.get("/messages")
        assert cut.status_code == 200 and int(cut.headers["content-length"]) == len(cut.content)
        assert cut.content == whole[: len(whole) // 2]
        with pytest.raises(json.JSONDecodeError):
            cut.json()

        emu.state.faults.configure({"messages.list": MethodFaults(reset=1.0)})
        with pytest.raises(httpx.RemoteProtocolError):
            emu.api.get("/messages")
        emu.state.faults.configure({})
        assert emu.api.get("/messages").content == whole  # the server carries on after a reset


def test_added_latency() -> None:
    with private_emulator() as emu:
        emu.state.faults.configure({"getProfile": MethodFaults(latency=0.3)})
        started = time.monotonic()
        assert emu.api.get("/profile").status_code == 200
        assert time.monotonic() - started >= 0.3


def test_the_admin_api_sets_gmail_and_push_faults() -> None:
    with private_emulator() as emu:
        body = {
            "seed": 3,
            "methods": {"*": {"error500": 0.05, "reset": 0.02}, "messages.get": {"latencyMs": 15}},
            "notifications": {"drop_rate": 0.5, "delay_seconds": 2},
        }
        shown = emu.admin.put("/_emulator/faults", json=body).json()
        assert shown["methods"]["*"]["error500"] == 0.05
        assert shown["methods"]["messages.get"]["latencyMs"] == 15
        assert shown["notifications"]["drop_rate"] == 0.5
        assert emu.state.pubsub.notifier.faults.delay_seconds == 2
        assert emu.admin.get("/_emulator/faults").json()["methods"] == shown["methods"]

        for bad in ({"methods": {"*": {"error500": 2}}}, {"methods": {"*": {"boom": 1}}}, {"notifications": {"x": 1}}):
            refused = emu.admin.put("/_emulator/faults", json=bad)
            assert refused.status_code == 400, bad
            assert "Invalid faults" in refused.json()["error"]["message"]
        assert emu.admin.put("/_emulator/faults", json={"methods": {}}).json()["methods"] == {}


def test_the_admin_api_refuses_a_rule_for_an_unknown_method() -> None:
    with private_emulator() as emu:
        emu.admin.put("/_emulator/faults", json={"methods": {"messages.get": {"error500": 0.5}}})
        refused = emu.admin.put("/_emulator/faults", json={"methods": {"nosuch.method": {"error500": 1}}})
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert "unknown Gmail method 'nosuch.method'" in message
        for known in ("messages.get", "history.list", "batch", "watch"):
            assert known in message
        assert emu.state.faults.rules() == {"messages.get": MethodFaults(error500=0.5)}  # left as it was
        for method in ("*", "batch", "messages.attachments.get", "stop"):
            accepted = emu.admin.put("/_emulator/faults", json={"methods": {method: {"latencyMs": 1}}})
            assert accepted.status_code == 200, accepted.text


def test_the_cli_refuses_a_bad_fault_rule(tmp_path: Path) -> None:
    mailbox = tmp_path / "empty.mbox"
    mailbox.write_text("")
    result = CliRunner().invoke(app, ["emulator", str(mailbox), "--fault", "messages.get:explode=1"])
    assert result.exit_code == 2
    assert "unknown fault 'explode'" in result.output
    result = CliRunner().invoke(app, ["emulator", str(mailbox), "--quota-profile", "gmail-1999"])
    assert result.exit_code == 2
