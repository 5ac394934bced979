"""The examples run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_resolve_example_against_the_lab() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "resolve.py"), "--lab"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        line.startswith("database") and "mydb.abc123.us-east-1.rds.amazonaws.com" in line
        for line in lines
    )
    assert any("api.stripe.com" in line and "client resolves it itself" in line for line in lines)
