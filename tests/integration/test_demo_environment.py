"""`make demo-up` / `make demo-down` twice in a row: the second environment starts from a clean slate (the
first one's cluster data must not leak into it) and answers like the first."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from devenv import demo

pytestmark = pytest.mark.integration


def test_demo_up_and_down_work_twice_in_a_row() -> None:
    if demo.STATE_FILE.exists():
        pytest.fail(f"{demo.STATE_FILE} exists: a demo environment is running; `make demo-down` first")
    pids = []
    try:
        for _ in range(2):
            assert demo.demo_up() == 0
            state = json.loads(demo.STATE_FILE.read_text())
            pids.append(state["pid"])
            answer = httpx.get(f"{state['MESH_URL']}/hello", timeout=10)
            assert answer.status_code == 503  # no CanaryApp applied yet: the traffic layer has no route
            ready = httpx.get(f"{state['PROMETHEUS_URL']}/-/ready", timeout=10)
            assert ready.status_code == 200
            assert demo.demo_down() == 0
            assert not demo.STATE_FILE.exists()
    finally:
        if demo.STATE_FILE.exists():
            os.kill(json.loads(demo.STATE_FILE.read_text())["pid"], signal.SIGTERM)
    assert len(set(pids)) == 2
