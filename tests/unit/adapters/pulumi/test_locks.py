"""Stale Pulumi locks: the S3 requests are signed as AWS documents, the backend URL is read as gocloud.dev
reads it, and clearing removes the locks of this shard's stacks only, and of those only the ones written
before this replica acquired its Lease (file backend and a minimal S3 server here; the s3:// backend against a
real S3 server in tests/integration/test_shards.py)."""

from __future__ import annotations

import datetime
import http.server
import json
import logging
import os
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

from reconciler.adapters.pulumi.locks import (
    StackLock,
    kept_after_kill,
    kept_at_start,
    kept_while_holder_lives,
    parse_lock,
)
from reconciler.adapters.pulumi.runner import PulumiStacks
from reconciler.adapters.pulumi.s3 import (
    EMPTY_PAYLOAD_SHA256,
    Credentials,
    S3Bucket,
    S3UnavailableError,
    environment_credentials,
    s3_location,
    signed_headers,
)
from reconciler.adapters.pulumi.settings import PulumiSettings

# The examples of AWS's "Signature Version 4 for Amazon S3" documentation (GET Object, ListObjects).
EXAMPLE_CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
EXAMPLE_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("url", "headers", "signature"),
    [
        pytest.param(
            "https://examplebucket.s3.amazonaws.com/test.txt",
            {"Range": "bytes=0-9", "x-amz-content-sha256": EMPTY_PAYLOAD_SHA256},
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            id="get-object",
        ),
        pytest.param(
            "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
            {"x-amz-content-sha256": EMPTY_PAYLOAD_SHA256},
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            id="list-objects",
        ),
    ],
)
def test_requests_are_signed_as_the_aws_documentation_signs_them(
    url: str, headers: dict[str, str], signature: str
) -> None:
    signed = signed_headers(
        "GET", url, credentials=EXAMPLE_CREDENTIALS, region="us-east-1", now=EXAMPLE_TIME, headers=headers
    )
    assert signed["authorization"].endswith(f"Signature={signature}")
    assert "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request" in signed["authorization"]


@pytest.mark.parametrize(
    ("backend_url", "base_url", "region", "prefix"),
    [
        pytest.param(
            "s3://state?endpoint=http://127.0.0.1:9000&use_path_style=true&region=eu-west-1",
            "http://127.0.0.1:9000/state",
            "eu-west-1",
            "",
            id="endpoint-path-style",
        ),
        pytest.param(
            "s3://state/canaryapp?endpoint=127.0.0.1:9000&disableSSL=true&s3ForcePathStyle=true",
            "http://127.0.0.1:9000/state",
            "us-east-1",
            "canaryapp/",
            id="v1-parameters-and-prefix",
        ),
        pytest.param("s3://state", "https://state.s3.us-east-1.amazonaws.com", "us-east-1", "", id="aws"),
    ],
)
def test_the_backend_url_is_read_as_gocloud_reads_it(
    backend_url: str, base_url: str, region: str, prefix: str
) -> None:
    location = s3_location(backend_url, environ={})
    assert (location.base_url, location.region, location.prefix) == (base_url, region, prefix)


def test_without_static_credentials_the_bucket_is_unavailable_not_guessed() -> None:
    with pytest.raises(S3UnavailableError, match="AWS_ACCESS_KEY_ID"):
        environment_credentials({})


ACQUIRED_AT = datetime.datetime(2026, 12, 1, 15, 0, tzinfo=datetime.UTC)


def lock_key(stack: str, lock_id: str = "0a1b") -> str:
    return f".pulumi/locks/organization/canaryapp/{stack}/{lock_id}.json"


def lock_content(timestamp: str | None = None, pid: int = 4242, hostname: str = "reconciler-0") -> bytes:
    """A lock as Pulumi writes it (Go's time.Time: RFC 3339 with nanoseconds)."""
    stamp = {} if timestamp is None else {"timestamp": timestamp}
    return json.dumps({"pid": pid, "username": "canaryapp", "hostname": hostname, **stamp}).encode()


def lock(root: Path, stack: str, lock_id: str = "0a1b", content: bytes = b"{}") -> Path:
    path = root / lock_key(stack, lock_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "locked_at"),
    [
        pytest.param(
            lock_content("2026-12-01T14:59:59.123456789Z"),
            datetime.datetime(2026, 12, 1, 14, 59, 59, 123456, tzinfo=datetime.UTC),
            id="go-nanoseconds-utc",
        ),
        pytest.param(
            lock_content("2026-12-01T16:59:59.5+02:00"),
            datetime.datetime(2026, 12, 1, 14, 59, 59, 500000, tzinfo=datetime.UTC),
            id="go-offset",
        ),
        pytest.param(
            lock_content("2026-12-01 14:59:59.123456+00:00"),
            datetime.datetime(2026, 12, 1, 14, 59, 59, 123456, tzinfo=datetime.UTC),
            id="python-str",
        ),
        pytest.param(lock_content("2026-12-01T14:59:59"), None, id="no-offset-is-not-guessed"),
        pytest.param(lock_content("yesterday"), None, id="not-a-time"),
        pytest.param(lock_content(), None, id="no-timestamp"),
        pytest.param(b'{"timestamp": 1764600000}', None, id="a-number"),
        pytest.param(b"[]", None, id="not-an-object"),
        pytest.param(b"\xff{", None, id="not-json"),
    ],
)
def test_a_locks_time_is_read_as_pulumi_writes_it_or_not_at_all(
    content: bytes, locked_at: datetime.datetime | None
) -> None:
    assert parse_lock(lock_key("ns.web"), content).locked_at == locked_at


def test_a_lock_names_its_stack_and_holder() -> None:
    parsed = parse_lock(lock_key("ns.web"), lock_content("2026-12-01T14:59:59Z", pid=7, hostname="r-1"))
    assert (parsed.stack, parsed.pid, parsed.hostname) == ("ns.web", 7, "r-1")
    assert parse_lock(lock_key("ns.web"), b'{"pid": true, "hostname": 3}').pid is None


BEFORE = ACQUIRED_AT - datetime.timedelta(seconds=1)
AFTER = ACQUIRED_AT + datetime.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("locked_at", "acquired_at", "kept"),
    [
        pytest.param(BEFORE, ACQUIRED_AT, False, id="written-before-the-lease"),
        pytest.param(AFTER, ACQUIRED_AT, True, id="written-after-the-lease"),
        pytest.param(ACQUIRED_AT, ACQUIRED_AT, True, id="written-at-the-same-instant"),
        pytest.param(None, ACQUIRED_AT, True, id="unreadable-time"),
        pytest.param(
            AFTER,
            ACQUIRED_AT.astimezone(datetime.timezone(datetime.timedelta(hours=-5))),
            True,
            id="other-zone",
        ),
        pytest.param(AFTER, None, False, id="no-leader-election"),
        pytest.param(None, None, False, id="no-leader-election-unreadable"),
    ],
)
def test_at_start_a_lock_is_stale_only_if_written_before_the_lease_was_acquired(
    locked_at: datetime.datetime | None, acquired_at: datetime.datetime | None, kept: bool
) -> None:
    reason = kept_at_start(StackLock(lock_key("ns.web"), locked_at), acquired_at)
    assert (reason is not None) == kept


@pytest.mark.parametrize(
    ("pid", "hostname", "kept"),
    [
        pytest.param(11, "r-0", False, id="held-by-a-killed-process"),
        pytest.param(12, "r-0", True, id="another-process-of-this-host"),
        pytest.param(11, "r-1", True, id="the-same-pid-on-another-host"),
        pytest.param(None, None, True, id="unreadable-holder"),
    ],
)
def test_after_a_kill_only_the_killed_processes_locks_are_stale(
    pid: int | None, hostname: str | None, kept: bool
) -> None:
    stack_lock = StackLock(lock_key("ns.web"), BEFORE, pid, hostname)
    assert (kept_after_kill(stack_lock, "r-0", {10, 11}) is not None) == kept


def test_clearing_removes_only_the_locks_of_this_shards_stacks(tmp_path: Path) -> None:
    mine, another_shards = lock(tmp_path, "default.web"), lock(tmp_path, "default.shop")
    stacks = PulumiStacks(PulumiSettings(f"file://{tmp_path}", str(tmp_path / "w"), str(tmp_path / "h")), 1)
    try:
        assert stacks.clear_stale_locks({"default.web", "default.api"}) == 1
        assert not mine.exists()
        assert another_shards.exists()
        assert stacks.clear_stale_locks({"default.web"}) == 0
    finally:
        stacks.close()


def test_with_leader_election_only_locks_older_than_the_lease_are_cleared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stale = lock(tmp_path, "default.web", "old", lock_content("2026-12-01T14:59:59.999999999Z"))
    live = lock(tmp_path, "default.web", "new", lock_content("2026-12-01T15:00:00.000000001Z"))
    unreadable = lock(tmp_path, "default.api", "odd", b"{not json")
    other_shards = lock(tmp_path, "default.shop", "old", lock_content("2026-12-01T14:00:00Z"))
    stacks = PulumiStacks(PulumiSettings(f"file://{tmp_path}", str(tmp_path / "w"), str(tmp_path / "h")), 1)
    caplog.set_level(logging.INFO, logger="reconciler.adapters.pulumi.locks")
    try:
        cleared = stacks.clear_stale_locks({"default.web", "default.api"}, acquired_at=ACQUIRED_AT)
    finally:
        stacks.close()
    assert cleared == 1
    assert not stale.exists()
    assert live.exists()
    assert unreadable.exists()
    assert other_shards.exists()
    kept = {
        record.__dict__["key"]: record.__dict__["reason"]
        for record in caplog.records
        if record.message == "Kept stack lock"
    }
    assert set(kept) == {lock_key("default.web", "new"), lock_key("default.api", "odd")}
    assert "cannot be read" in kept[lock_key("default.api", "odd")]
    [deleted] = [record for record in caplog.records if record.message == "Deleted stale stack lock"]
    assert deleted.__dict__["stack"] == "default.web"
    assert deleted.__dict__["locked_at"] == "2026-12-01T14:59:59.999999+00:00"


class MemoryS3(http.server.ThreadingHTTPServer):
    """Enough of S3 for the lock calls (ListObjectsV2, GET, DELETE), path style, one bucket; no signatures."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MemoryS3Handler)
        self.objects: dict[str, bytes] = {}

    @property
    def backend_url(self) -> str:
        return f"s3://state?endpoint=http://127.0.0.1:{self.server_address[1]}&use_path_style=true"


class _MemoryS3Handler(http.server.BaseHTTPRequestHandler):
    server: MemoryS3

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        key = urllib.parse.unquote(path.removeprefix("/state").removeprefix("/"))
        if key:
            self._answer(*((200, self.server.objects[key]) if key in self.server.objects else (404, b"")))
            return
        prefix = urllib.parse.parse_qs(query).get("prefix", [""])[0]
        contents = "".join(
            f"<Contents><Key>{escape(name)}</Key></Contents>"
            for name in self.server.objects
            if name.startswith(prefix)
        )
        page = f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{contents}<IsTruncated>false</IsTruncated></ListBucketResult>'
        self._answer(200, page.encode())

    def do_DELETE(self) -> None:
        self.server.objects.pop(urllib.parse.unquote(self.path.removeprefix("/state/")), None)
        self._answer(204, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def memory_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryS3]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    server = MemoryS3()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_s3_backends_locks_are_selected_by_time_as_a_folders_are(
    memory_s3: MemoryS3, tmp_path: Path
) -> None:
    memory_s3.objects = {
        lock_key("default.web", "old"): lock_content("2026-12-01T14:59:59Z"),
        lock_key("default.web", "new"): lock_content("2026-12-01T15:00:01Z"),
        lock_key("default.shop", "old"): lock_content("2026-12-01T14:00:00Z"),
    }
    stacks = PulumiStacks(PulumiSettings(memory_s3.backend_url, str(tmp_path / "w"), str(tmp_path / "h")), 1)
    try:
        assert stacks.clear_stale_locks({"default.web"}, acquired_at=ACQUIRED_AT) == 1
    finally:
        stacks.close()
    assert set(memory_s3.objects) == {lock_key("default.web", "new"), lock_key("default.shop", "old")}


def test_an_s3_object_is_read_whole_or_refused_when_too_large(memory_s3: MemoryS3) -> None:
    memory_s3.objects = {"small": b"x" * 10, "large": b"x" * 11}
    bucket = S3Bucket(memory_s3.backend_url)
    try:
        assert bucket.get("small", max_bytes=10) == b"x" * 10
        with pytest.raises(S3UnavailableError, match="more than 10 bytes"):
            bucket.get("large", max_bytes=10)
        with pytest.raises(S3UnavailableError, match="HTTP 404"):
            bucket.get("missing")
    finally:
        bucket.close()


def test_a_backend_whose_locks_cannot_be_reached_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    stacks = PulumiStacks(PulumiSettings("gs://state", "/nonexistent/w", "/nonexistent/h"), 1)
    try:
        assert stacks.clear_stale_locks({"default.web"}) == 0
    finally:
        stacks.close()
    assert "Left stale stack locks alone" in caplog.text


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(
    ("holder", "kept"),
    [
        pytest.param(lambda: (socket.gethostname(), dead_pid()), False, id="a dead process of this host"),
        pytest.param(lambda: (socket.gethostname(), os.getpid()), True, id="a live process of this host"),
        pytest.param(lambda: ("another-pod", dead_pid()), True, id="a process of another host"),
        pytest.param(lambda: (socket.gethostname(), None), True, id="no pid"),
    ],
)
def test_a_busy_stacks_lock_is_stale_only_when_its_holder_on_this_host_is_gone(
    holder: Any, kept: bool
) -> None:
    hostname, pid = holder()
    stack_lock = StackLock(lock_key("ns.web"), BEFORE, pid, hostname)
    assert (kept_while_holder_lives(stack_lock, socket.gethostname()) is not None) == kept
