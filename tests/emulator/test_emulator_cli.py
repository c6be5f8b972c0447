"""`mailtide emulator PATHS...`: what each path loaded, warnings for paths that are not mail, and an
empty mailbox only when asked for. The server itself is replaced by a stub that keeps the state."""

from __future__ import annotations

from pathlib import Path

import pytest
from emulator_helpers import make_message
from typer.testing import CliRunner, Result

from mailtide.cli import app
from mailtide.emulator import server
from mailtide.emulator.state import EmulatorState

ELF_HEADER = b"\x7fELF\x02\x01\x01\x00" + bytes(120)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[EmulatorState]:
    """The states the command would have served; relative paths keep Rich from wrapping them."""
    states: list[EmulatorState] = []

    async def keep_state(state: EmulatorState, **_options: object) -> None:
        states.append(state)

    monkeypatch.setattr(server, "serve_forever", keep_state)
    monkeypatch.chdir(tmp_path)
    return states


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["emulator", *args])


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_each_path_reports_its_messages_and_non_mail_files_are_warned_about(served: list[EmulatorState]) -> None:
    Path("mail.mbox").write_bytes(
        b"From a@example.org Mon Sep  2 10:00:00 2002\n" + make_message("first") + b"\n"
        b"From b@example.org Tue Sep  3 10:00:00 2002\n" + make_message("second") + b"\n"
    )
    Path("eml").mkdir()
    Path("eml/1.eml").write_bytes(make_message("third"))
    Path("README.md").write_text("# Notes\n\nNot a message.\n")
    Path("tool").write_bytes(ELF_HEADER)

    result = run("mail.mbox", "eml", "README.md", "tool")

    assert result.exit_code == 0, result.output
    output = one_line(result.output)
    for line in ("loaded 2 messages from mail.mbox", "loaded 1 message from eml",
                 "loaded 1 message from README.md", "loaded 1 message from tool"):
        assert line in output
    assert "warning: README.md loaded, but it does not look like mail" in output
    assert "warning: tool loaded, but it does not look like mail" in output
    assert "mail.mbox loaded, but" not in output and "1.eml loaded, but" not in output
    (state,) = served
    assert state.mailbox("me@mailtide.test").messages_total == 5  # warned about, still served


def test_an_empty_mailbox_is_refused_unless_allowed(served: list[EmulatorState]) -> None:
    Path("empty").mkdir()
    Path("notes").mkdir()
    Path("notes/README.md").write_text("# not mail\n")  # documentation in a mail tree is left out

    refused = run("empty", "notes")
    assert refused.exit_code == 2
    output = one_line(refused.output)
    assert "loaded 0 messages from empty" in output and "warning: empty holds no message" in output
    assert "error: no message to serve in empty, notes" in output and "--allow-empty" in output
    assert served == []

    assert run().exit_code == 2  # no path at all
    assert served == []

    allowed = run("empty", "--allow-empty")
    assert allowed.exit_code == 0, allowed.output
    assert "warning: empty holds no message" in one_line(allowed.output)
    assert run("--allow-empty").exit_code == 0
    assert [state.mailbox("me@mailtide.test").messages_total for state in served] == [0, 0]


def test_a_fault_rule_for_an_unknown_method_is_refused(served: list[EmulatorState]) -> None:
    Path("1.eml").write_bytes(make_message("one"))
    result = run("1.eml", "--fault", "messages.gett:500=1")
    assert result.exit_code == 2
    output = one_line(result.output)
    assert "unknown Gmail method 'messages.gett'" in output and "messages.get" in output
    assert served == []
    assert run("1.eml", "--fault", "messages.get:500=1", "--fault", "5xx=1%").exit_code == 0
