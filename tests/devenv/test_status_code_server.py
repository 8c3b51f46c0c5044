"""The demo application as a real process: paths, status codes, the version it reports, and its exits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from devenv.processes import REPO_ROOT

SERVER = REPO_ROOT / "examples" / "status-code-server" / "server.py"
LISTENING = re.compile(r"^listening on 127\.0\.0\.1:(\d+) version=(\S+)$")


def start_server(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--host", "127.0.0.1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    match = LISTENING.match(line)
    if match is None:
        process.kill()
        _, errors = process.communicate(timeout=10)
        pytest.fail(f"no listening line, got {line!r}; stderr: {errors}")
    return process, f"http://127.0.0.1:{match.group(1)}"


def stop_server(process: subprocess.Popen[str]) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    return process.returncode, output


@pytest.fixture
def server_v2() -> Iterator[str]:
    process, url = start_server("--version", "v2")
    yield url
    stop_server(process)


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        pytest.param("/hello", 200, "Hello! v2", id="hello"),
        pytest.param("/nothello", 500, "NotHello! v2", id="nothello"),
        pytest.param("/healthz", 200, "ok", id="healthz"),
        pytest.param("/hello?from=test", 200, "Hello! v2", id="query-string-ignored"),
        pytest.param("/", 404, "not found", id="root-404"),
        pytest.param("/hello/extra", 404, "not found", id="unknown-path-404"),
    ],
)
def test_answers_by_path(server_v2: str, path: str, status: int, body: str) -> None:
    response = httpx.get(server_v2 + path, timeout=5)
    assert (response.status_code, response.text) == (status, body)


def test_version_comes_from_the_environment_without_the_flag() -> None:
    process, url = start_server(env={**os.environ, "VERSION": "v3"})
    try:
        assert httpx.get(url + "/hello", timeout=5).text == "Hello! v3"
    finally:
        stop_server(process)


def test_flag_wins_over_the_environment() -> None:
    process, url = start_server("--version", "v1", env={**os.environ, "VERSION": "v3"})
    try:
        assert httpx.get(url + "/nothello", timeout=5).text == "NotHello! v1"
    finally:
        stop_server(process)


def test_missing_version_fails_with_a_clear_message() -> None:
    env = {key: value for key, value in os.environ.items() if key != "VERSION"}
    result = subprocess.run(
        [sys.executable, str(SERVER), "--port", "0"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no version given" in result.stderr
    assert "--version" in result.stderr
    assert "VERSION environment variable" in result.stderr


def test_sigterm_stops_it_cleanly() -> None:
    process, url = start_server("--version", "v2")
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    code, output = stop_server(process)
    assert code == 0
    assert "stopped version=v2" in output
