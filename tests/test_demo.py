"""The demo end to end, in-process (the same code `make demo` runs), and the CLI around it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from mailtide.demo import DemoSources, run_demo

DEMO_DATA = Path(__file__).parents[1] / "src" / "mailtide" / "demo_data"


async def test_demo_converges_on_the_bundled_mailbox(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=120)
    result = await run_demo(DemoSources(), database_url=f"sqlite:///{tmp_path / 'demo.db'}", console=console)
    assert result.converged, result.drift.by_kind()
    assert result.messages > 300
    assert result.changes == {"added": 20, "deleted": 20, "relabelled": 55}
    assert (tmp_path / "demo.db").exists()


def test_demo_cli_runs_another_mailbox_and_exits_zero(tmp_path: Path) -> None:
    """`mailtide demo --mbox FILE` through the console script's module entry point."""
    proc = subprocess.run(
        [sys.executable, "-m", "mailtide", "demo", "--mbox", str(DEMO_DATA / "takeout" / "takeout.mbox")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "converged" in proc.stdout


def test_demo_cli_rejects_a_missing_mailbox(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mailtide", "demo", "--mbox", str(tmp_path / "nope.mbox")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
