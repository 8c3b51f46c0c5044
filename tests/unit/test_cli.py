"""`canaryapp run` (reconciler/cli.py) refuses to start without the binaries every step needs, saying what to
do."""

from __future__ import annotations

import datetime
import subprocess
import sys

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_run_names_missing_binaries_and_the_fix() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from reconciler.cli import main; raise SystemExit(main())", "run"],
        env={"PATH": "/nonexistent", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "pulumi, pulumi-resource-kubernetes not found on PATH" in result.stderr
    assert "make tools" in result.stderr
