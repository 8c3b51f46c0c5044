"""The demo application as a real process: paths, status codes, the version it reports, its behaviour from
the environment, and its exits."""

from __future__ import annotations

import os
import re
import runpy
import signal
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction

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


# Behaviour from the environment -------------------------------------------------------------------------

SERVER_MODULE = runpy.run_path(str(SERVER), run_name="status_code_server")
in_share = SERVER_MODULE["in_share"]
behaviour_from_env = SERVER_MODULE["behaviour_from_env"]


@pytest.mark.parametrize(
    ("share", "requests", "chosen"),
    [
        pytest.param(Fraction(1, 10), 30, [9, 19, 29], id="every-tenth"),
        pytest.param(Fraction(3, 20), 20, [6, 13, 19], id="three-in-twenty"),
        pytest.param(Fraction(0), 50, [], id="none"),
        pytest.param(Fraction(1), 3, [0, 1, 2], id="all"),
    ],
)
def test_a_share_picks_exactly_and_evenly_spread_requests(
    share: Fraction, requests: int, chosen: list[int]
) -> None:
    assert [sequence for sequence in range(requests) if in_share(sequence, share)] == chosen


def test_behaviour_reads_its_variables_and_keeps_defaults_for_unset_or_empty_ones() -> None:
    behaviour = behaviour_from_env(
        {"LATENCY_MS": "200", "SLOW_SHARE": "0.1", "SLOW_FACTOR": "1.3", "ERROR_SHARE": "", "PATH": "/bin"}
    )
    assert behaviour.latency_ms == 200
    assert behaviour.slow_share == Fraction(1, 10)
    assert behaviour.slow_factor == 1.3
    assert behaviour.error_share == 0
    assert behaviour.heavy_latency_ms == 1000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"LATENCY_MS": "fast"}, "LATENCY_MS must be milliseconds from 0 to 60000, got 'fast'"),
        pytest.param({"LATENCY_MS": "-1"}, "LATENCY_MS must be milliseconds from 0 to 60000, got '-1'"),
        pytest.param({"SLOW_SHARE": "10%"}, "SLOW_SHARE must be a share from 0 to 1, got '10%'"),
        pytest.param({"ERROR_SHARE": "1.5"}, "ERROR_SHARE must be a share from 0 to 1, got '1.5'"),
        pytest.param({"SLOW_FACTOR": "nan"}, "SLOW_FACTOR must be a factor from 0 to 100, got 'nan'"),
        pytest.param({"HEAVY_LATENCY_MS": "inf"}, "HEAVY_LATENCY_MS must be milliseconds from 0 to 60000"),
    ],
)
def test_behaviour_refuses_a_value_out_of_range_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        behaviour_from_env(env)


def test_a_process_with_a_bad_behaviour_variable_exits_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, str(SERVER), "--version", "v2", "--port", "0"],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "ERROR_SHARE": "3 in 20"},
        timeout=30,
    )
    assert result.returncode == 2
    assert "ERROR_SHARE must be a share from 0 to 1, got '3 in 20'" in result.stderr


def test_a_process_answers_with_the_behaviour_of_its_environment() -> None:
    """Every 4th timed request is slow (3 x 40 ms), 1 in 5 /hello answers fail, /heavy takes its own
    latency; /healthz is neither numbered nor delayed. Only lower bounds of the time: a sleep is at least
    as long as asked."""
    env = {
        **os.environ,
        "LATENCY_MS": "40",
        "SLOW_SHARE": "0.25",
        "SLOW_FACTOR": "3",
        "ERROR_SHARE": "0.2",
        "HEAVY_LATENCY_MS": "150",
    }
    process, url = start_server("--version", "v2", env=env)
    assert process.stdout is not None
    described = process.stdout.readline().strip()
    try:
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            hello = [client.get("/hello") for _ in range(8)]
            assert client.get("/healthz").text == "ok"
            heavy = client.get("/heavy")
    finally:
        code, output = stop_server(process)
    assert [answer.status_code for answer in hello] == [200, 200, 200, 200, 500, 200, 200, 200]
    assert hello[4].text == "Hello failed! v2"
    slow = [3, 7]
    for index, answer in enumerate(hello):
        assert answer.elapsed.total_seconds() >= (0.12 if index in slow else 0.04), index
    assert (heavy.status_code, heavy.text) == (200, "Heavy! v2")
    assert heavy.elapsed.total_seconds() >= 0.15
    assert code == 0
    assert described == (
        "behaviour LATENCY_MS=40 SLOW_SHARE=0.25 SLOW_FACTOR=3 ERROR_SHARE=0.2 HEAVY_LATENCY_MS=150"
    )
    assert "stopped version=v2" in output
